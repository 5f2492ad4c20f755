/* Just enough JSON reading for iperf3's flat parameter object (internal). */
#ifndef HIL_MINI_JSON_H
#define HIL_MINI_JSON_H

#include <stdint.h>

/* Value of the top-level member `key` of the object in `json` (NUL-terminated), or NULL. */
const char *hil_json_member(const char *json, const char *key);
/* Integer member (numbers are truncated; true is 1, false/null 0); `fallback` when absent or not a number. */
int64_t hil_json_int(const char *json, const char *key, int64_t fallback);
/* True when the member is `true` or a non-zero number. */
int hil_json_bool(const char *json, const char *key);

#endif /* HIL_MINI_JSON_H */
