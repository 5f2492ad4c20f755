/* SHA-1 and base64, just enough for the WebSocket handshake (internal). Written here so the plain
 * HTTP server needs no TLS library. */
#ifndef HIL_DIGEST_H
#define HIL_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#define HIL_SHA1_BYTES 20

void hil_sha1(const void *data, size_t len, uint8_t out[HIL_SHA1_BYTES]);
/* Standard base64 with padding, NUL-terminated. Returns the length, or -1 when out is too small. */
int hil_base64_encode(const uint8_t *in, size_t len, char *out, size_t out_len);

#endif /* HIL_DIGEST_H */
