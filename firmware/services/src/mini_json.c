/* Just enough JSON reading for iperf3's flat parameter object: top-level members of an object,
 * with strings, nested objects and arrays skipped correctly. */
#include "mini_json.h"

#include <stdlib.h>
#include <string.h>

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
        p++;
    }
    return p;
}

/* p at the opening quote; returns the character after the closing quote, or NULL. */
static const char *skip_string(const char *p)
{
    for (p++; *p != '\0'; p++) {
        if (*p == '\\') {
            if (*++p == '\0') {
                return NULL;
            }
        } else if (*p == '"') {
            return p + 1;
        }
    }
    return NULL;
}

static const char *skip_value(const char *p)
{
    if (*p == '"') {
        return skip_string(p);
    }
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (*p != '\0') {
            if (*p == '"') {
                p = skip_string(p);
                if (p == NULL) {
                    return NULL;
                }
                continue;
            }
            if (*p == '{' || *p == '[') {
                depth++;
            } else if (*p == '}' || *p == ']') {
                if (--depth == 0) {
                    return p + 1;
                }
            }
            p++;
        }
        return NULL;
    }
    while (*p != '\0' && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' && *p != '\r' &&
           *p != '\n') {
        p++;
    }
    return p;
}

const char *hil_json_member(const char *json, const char *key)
{
    size_t key_len = strlen(key);
    const char *p = skip_ws(json);
    if (*p != '{') {
        return NULL;
    }
    p = skip_ws(p + 1);
    while (*p == '"') {
        const char *name = p + 1;
        const char *after = skip_string(p);
        if (after == NULL) {
            return NULL;
        }
        size_t name_len = (size_t)(after - 1 - name);
        p = skip_ws(after);
        if (*p != ':') {
            return NULL;
        }
        p = skip_ws(p + 1);
        if (name_len == key_len && memcmp(name, key, key_len) == 0) {
            return p;
        }
        p = skip_value(p);
        if (p == NULL) {
            return NULL;
        }
        p = skip_ws(p);
        if (*p != ',') {
            return NULL;
        }
        p = skip_ws(p + 1);
    }
    return NULL;
}

int64_t hil_json_int(const char *json, const char *key, int64_t fallback)
{
    const char *v = hil_json_member(json, key);
    if (v == NULL) {
        return fallback;
    }
    if (strncmp(v, "true", 4) == 0) {
        return 1;
    }
    if (strncmp(v, "false", 5) == 0 || strncmp(v, "null", 4) == 0) {
        return 0;
    }
    char *end = NULL;
    double d = strtod(v, &end);
    if (end == v) {
        return fallback;
    }
    return (int64_t)d;
}

int hil_json_bool(const char *json, const char *key)
{
    return hil_json_int(json, key, 0) != 0;
}
