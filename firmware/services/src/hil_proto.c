/* HIL_* machine-line formatting and command splitting (firmware/PROTOCOL.md). */
#include "hil_proto.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* snprintf that reports truncation as -1 and keeps a running offset. */
static int append(char *buf, size_t len, size_t *off, const char *fmt, ...)
{
    if (*off >= len) {
        return -1;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *off, len - *off, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= len - *off) {
        *off = len;
        return -1;
    }
    *off += (size_t)n;
    return 0;
}

int hil_proto_format_level(char *buf, size_t len, char level, const char *keyword, uint32_t ms,
                           const char *json_fields)
{
    if (buf == NULL || len == 0 || keyword == NULL) {
        return -1;
    }
    size_t off = 0;
    int has_fields = json_fields != NULL && json_fields[0] != '\0';
    if (append(buf, len, &off, "%c (%" PRIu32 ") " HIL_PROTO_TAG ": %s {\"proto\":%d%s%s}", level, ms, keyword,
               HIL_PROTO_VERSION, has_fields ? "," : "", has_fields ? json_fields : "") != 0) {
        return -1;
    }
    return (int)off;
}

int hil_proto_format(char *buf, size_t len, const char *keyword, uint32_t ms, const char *json_fields)
{
    return hil_proto_format_level(buf, len, 'I', keyword, ms, json_fields);
}

int hil_proto_json_string(char *buf, size_t len, const char *s)
{
    size_t off = 0;
    if (append(buf, len, &off, "\"") != 0) {
        return -1;
    }
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        int rc;
        switch (*p) {
        case '"':
            rc = append(buf, len, &off, "\\\"");
            break;
        case '\\':
            rc = append(buf, len, &off, "\\\\");
            break;
        case '\n':
            rc = append(buf, len, &off, "\\n");
            break;
        case '\r':
            rc = append(buf, len, &off, "\\r");
            break;
        case '\t':
            rc = append(buf, len, &off, "\\t");
            break;
        default:
            rc = *p < 0x20 ? append(buf, len, &off, "\\u%04x", *p) : append(buf, len, &off, "%c", *p);
            break;
        }
        if (rc != 0) {
            return -1;
        }
    }
    if (append(buf, len, &off, "\"") != 0) {
        return -1;
    }
    return (int)off;
}

/* The HIL_STATS members after "proto": "trigger", "iface" and the counters, in protocol order. */
static int stats_members(char *buf, size_t len, const char *trigger, const hil_stats_t *s)
{
    char trig[32];
    char iface[32];
    if (s == NULL || hil_proto_json_string(trig, sizeof trig, trigger) < 0 ||
        hil_proto_json_string(iface, sizeof iface, s->iface) < 0) {
        return -1;
    }
    size_t off = 0;
    return append(buf, len, &off,
                  "\"trigger\":%s,\"iface\":%s,\"rx_frames\":%" PRIu64 ",\"rx_bytes\":%" PRIu64 ",\"rx_drops\":%" PRIu64
                  ",\"tx_frames\":%" PRIu64 ",\"tx_bytes\":%" PRIu64 ",\"tx_fails\":%" PRIu64 ",\"link_ups\":%" PRIu64
                  ",\"link_downs\":%" PRIu64 ",\"active_sockets\":%" PRIu64 ",\"frame_pool_drops\":%" PRIu64
                  ",\"heap_free\":%" PRIu64 ",\"heap_min_free\":%" PRIu64 ",\"uptime_ms\":%" PRIu64,
                  trig, iface, s->rx_frames, s->rx_bytes, s->rx_drops, s->tx_frames, s->tx_bytes, s->tx_fails,
                  s->link_ups, s->link_downs, s->active_sockets, s->frame_pool_drops, s->heap_free,
                  s->heap_min_free, s->uptime_ms) == 0
               ? (int)off
               : -1;
}

int hil_proto_format_stats(char *buf, size_t len, uint32_t ms, const char *trigger, const hil_stats_t *s)
{
    char fields[512];
    if (stats_members(fields, sizeof fields, trigger, s) < 0) {
        return -1;
    }
    return hil_proto_format(buf, len, "HIL_STATS", ms, fields);
}

int hil_proto_format_stats_object(char *buf, size_t len, const char *trigger, const hil_stats_t *s)
{
    char fields[512];
    size_t off = 0;
    if (buf == NULL || stats_members(fields, sizeof fields, trigger, s) < 0 ||
        append(buf, len, &off, "{\"proto\":%d,%s}", HIL_PROTO_VERSION, fields) != 0) {
        return -1;
    }
    return (int)off;
}

void hil_members_init(hil_members_t *m, char *buf, size_t cap)
{
    m->buf = buf;
    m->cap = cap;
    m->len = 0;
    m->overflow = cap == 0;
    if (cap > 0) {
        buf[0] = '\0';
    }
}

/* Writes <separator>"key": (the key escaped); -1 and sticky overflow when it does not fit. */
static int members_key(hil_members_t *m, const char *key)
{
    if (m->overflow) {
        return -1;
    }
    if (m->len > 0 && append(m->buf, m->cap, &m->len, ",") != 0) {
        m->overflow = 1;
        return -1;
    }
    int n = hil_proto_json_string(m->buf + m->len, m->cap - m->len, key);
    if (n < 0) {
        m->overflow = 1;
        return -1;
    }
    m->len += (size_t)n;
    if (append(m->buf, m->cap, &m->len, ":") != 0) {
        m->overflow = 1;
        return -1;
    }
    return 0;
}

void hil_members_str(hil_members_t *m, const char *key, const char *value)
{
    if (members_key(m, key) != 0) {
        return;
    }
    int n = hil_proto_json_string(m->buf + m->len, m->cap - m->len, value);
    if (n < 0) {
        m->overflow = 1;
        return;
    }
    m->len += (size_t)n;
}

void hil_members_u64(hil_members_t *m, const char *key, uint64_t value)
{
    if (members_key(m, key) == 0 && append(m->buf, m->cap, &m->len, "%" PRIu64, value) != 0) {
        m->overflow = 1;
    }
}

void hil_members_i64(hil_members_t *m, const char *key, int64_t value)
{
    if (members_key(m, key) == 0 && append(m->buf, m->cap, &m->len, "%" PRId64, value) != 0) {
        m->overflow = 1;
    }
}

void hil_members_bool(hil_members_t *m, const char *key, int value)
{
    hil_members_raw(m, key, value ? "true" : "false");
}

void hil_members_raw(hil_members_t *m, const char *key, const char *raw)
{
    if (members_key(m, key) == 0 && append(m->buf, m->cap, &m->len, "%s", raw) != 0) {
        m->overflow = 1;
    }
}

int hil_members_ok(const hil_members_t *m)
{
    return !m->overflow;
}

static int is_separator(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

int hil_proto_split_args(char *line, char **argv, int max_args)
{
    int argc = 0;
    char *p = line;
    while (p != NULL && *p != '\0') {
        while (is_separator(*p)) {
            p++;
        }
        if (*p == '\0') {
            break;
        }
        if (argc == max_args) {
            return -1;
        }
        argv[argc++] = p;
        while (*p != '\0' && !is_separator(*p)) {
            p++;
        }
        if (*p != '\0') {
            *p++ = '\0';
        }
    }
    return argc;
}
