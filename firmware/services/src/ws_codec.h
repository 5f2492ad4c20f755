/* WebSocket (RFC 6455) framing for a server: frame headers, unmasking, the handshake's accept key
 * (internal; pure functions, unit-tested). */
#ifndef HIL_WS_CODEC_H
#define HIL_WS_CODEC_H

#include <stddef.h>
#include <stdint.h>

#define HIL_WS_MAX_HEADER 14 /* 2 + 8 (64-bit length) + 4 (mask) */
#define HIL_WS_ACCEPT_KEY_LEN 28

enum {
    HIL_WS_CONTINUATION = 0x0,
    HIL_WS_TEXT = 0x1,
    HIL_WS_BINARY = 0x2,
    HIL_WS_CLOSE = 0x8,
    HIL_WS_PING = 0x9,
    HIL_WS_PONG = 0xA,
};

/* Close status codes (RFC 6455 7.4.1). */
#define HIL_WS_CLOSE_PROTOCOL_ERROR 1002
#define HIL_WS_CLOSE_TOO_BIG 1009

typedef struct {
    int fin;
    int opcode;
    int masked;
    uint64_t length;
    uint8_t mask[4];
} hil_ws_frame_t;

/* Parse a frame header from buf[0..len). Returns the header length (> 0), 0 when more bytes are
 * needed, or -1 for a frame RFC 6455 forbids (reserved bits or opcodes, a fragmented or > 125 byte
 * control frame, a 64-bit length with the top bit set). */
int hil_ws_parse_header(const uint8_t *buf, size_t len, hil_ws_frame_t *frame);
/* An unmasked (server) frame header for a payload of len bytes. Returns its length. */
size_t hil_ws_format_header(uint8_t out[HIL_WS_MAX_HEADER], int fin, int opcode, uint64_t len);
/* XOR data with the mask; offset is the position of data[0] within the frame's payload. */
void hil_ws_unmask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset);
/* Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + GUID)), NUL-terminated. */
void hil_ws_accept_key(const char *client_key, char out[HIL_WS_ACCEPT_KEY_LEN + 1]);

#endif /* HIL_WS_CODEC_H */
