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
/* Write s as a JSON string literal (quotes included, escaped). Returns length or -1 if too small. */
int hil_proto_json_string(char *buf, size_t len, const char *s);

/* Split a command line in place into words separated by spaces, tabs, CR or LF. Stores at most
 * max_args pointers into argv. Returns the number of words, or -1 if there are more than max_args. */
int hil_proto_split_args(char *line, char **argv, int max_args);

#ifdef __cplusplus
}
#endif

#endif /* HIL_PROTO_H */
