/*
 * HIL_* machine lines and console command splitting, per firmware/PROTOCOL.md (protocol v1).
 */
#ifndef HIL_PROTO_H
#define HIL_PROTO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HIL_PROTO_VERSION 1
#define HIL_PROTO_TAG "hil"

/* Fields of HIL_STATS after "proto" and "trigger", in protocol order. */
typedef struct {
    const char *iface;
    uint64_t rx_frames;
    uint64_t rx_bytes;
    uint64_t rx_drops;
    uint64_t tx_frames;
    uint64_t tx_bytes;
    uint64_t tx_fails;
    uint64_t link_ups;
    uint64_t link_downs;
    uint64_t active_sockets;
    uint64_t frame_pool_drops;
    uint64_t heap_free;
    uint64_t heap_min_free;
    uint64_t uptime_ms;
} hil_stats_t;

/* "I (ms) hil: KEYWORD {\"proto\":1,<json_fields>}". json_fields are JSON object members without
 * braces (NULL or "" for none). Returns the line length (no line ending), or -1 if buf is too small
 * (buf then holds a truncated, NUL-terminated line). */
int hil_proto_format(char *buf, size_t len, const char *keyword, uint32_t ms, const char *json_fields);
/* Same with an explicit log level letter (E W I D V). */
int hil_proto_format_level(char *buf, size_t len, char level, const char *keyword, uint32_t ms,
                           const char *json_fields);
/* A HIL_STATS line; trigger is "period" or "cmd". */
int hil_proto_format_stats(char *buf, size_t len, uint32_t ms, const char *trigger, const hil_stats_t *s);
/* The HIL_STATS object alone, braces included: {"proto":1,"trigger":...} (the body of GET /stats,
 * trigger "http"). Returns its length, or -1 if buf is too small. */
int hil_proto_format_stats_object(char *buf, size_t len, const char *trigger, const hil_stats_t *s);
/* Write s as a JSON string literal (quotes included, escaped). Returns length or -1 if too small. */
int hil_proto_json_string(char *buf, size_t len, const char *s);

/* Builder of JSON object members without braces ("a":1,"b":"x"), the form hil_proto_format takes.
 * Overflow is sticky: every later call does nothing and hil_members_ok() is false. */
typedef struct {
    char *buf;
    size_t cap;
    size_t len;
    int overflow;
} hil_members_t;

void hil_members_init(hil_members_t *m, char *buf, size_t cap);
void hil_members_str(hil_members_t *m, const char *key, const char *value);
void hil_members_u64(hil_members_t *m, const char *key, uint64_t value);
void hil_members_i64(hil_members_t *m, const char *key, int64_t value);
void hil_members_bool(hil_members_t *m, const char *key, int value);
/* raw is already valid JSON (an object, array or number). */
void hil_members_raw(hil_members_t *m, const char *key, const char *raw);
int hil_members_ok(const hil_members_t *m);

/* Split a command line in place into words separated by spaces, tabs, CR or LF. Stores at most
 * max_args pointers into argv. Returns the number of words, or -1 if there are more than max_args. */
int hil_proto_split_args(char *line, char **argv, int max_args);

#ifdef __cplusplus
}
#endif

#endif /* HIL_PROTO_H */
