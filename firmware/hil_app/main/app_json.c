/* A tiny JSON object-member writer: enough for HIL_* lines, no allocation. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "hil_app.h"
#include "hil_proto.h"

void app_json_init(app_json_t *j, char *buf, size_t cap)
{
    j->buf = buf;
    j->cap = cap;
    j->len = 0;
    j->overflow = cap == 0;
    if (cap) {
        buf[0] = '\0';
    }
}

static void append(app_json_t *j, const char *text)
{
    size_t n = strlen(text);
    if (j->overflow || j->len + n + 1 > j->cap) {
        j->overflow = true;
        return;
    }
    memcpy(j->buf + j->len, text, n + 1);
    j->len += n;
}

static void key(app_json_t *j, const char *name)
{
    char quoted[64];
    if (j->len) {
        append(j, ",");
    }
    if (hil_proto_json_string(quoted, sizeof quoted, name) < 0) {
        j->overflow = true;
        return;
    }
    append(j, quoted);
    append(j, ":");
}

void app_json_str(app_json_t *j, const char *name, const char *value)
{
    key(j, name);
    if (j->overflow) {
        return;
    }
    int n = hil_proto_json_string(j->buf + j->len, j->cap - j->len, value ? value : "");
    if (n < 0) {
        j->overflow = true;
        return;
    }
    j->len += (size_t)n;
}

void app_json_u64(app_json_t *j, const char *name, uint64_t value)
{
    char text[24];
    snprintf(text, sizeof text, "%" PRIu64, value);
    key(j, name);
    append(j, text);
}

void app_json_i64(app_json_t *j, const char *name, int64_t value)
{
    char text[24];
    snprintf(text, sizeof text, "%" PRId64, value);
    key(j, name);
    append(j, text);
}

void app_json_bool(app_json_t *j, const char *name, bool value)
{
    key(j, name);
    append(j, value ? "true" : "false");
}

void app_json_raw(app_json_t *j, const char *name, const char *raw)
{
    key(j, name);
    append(j, raw);
}

const char *app_json_members(const app_json_t *j)
{
    return j->overflow ? "" : j->buf;
}

bool app_json_ok(const app_json_t *j)
{
    return !j->overflow;
}
