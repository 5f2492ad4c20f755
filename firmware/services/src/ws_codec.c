/* WebSocket framing (RFC 6455 section 5) and the opening handshake's accept key (section 4.2.2). */
#include "ws_codec.h"

#include <stdio.h>
#include <string.h>

#include "digest.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

static int known_opcode(int opcode)
{
    return opcode == HIL_WS_CONTINUATION || opcode == HIL_WS_TEXT || opcode == HIL_WS_BINARY ||
           opcode == HIL_WS_CLOSE || opcode == HIL_WS_PING || opcode == HIL_WS_PONG;
}

int hil_ws_parse_header(const uint8_t *buf, size_t len, hil_ws_frame_t *frame)
{
    if (len < 2) {
        return 0;
    }
    frame->fin = (buf[0] & 0x80) != 0;
    frame->opcode = buf[0] & 0x0F;
    frame->masked = (buf[1] & 0x80) != 0;
    if ((buf[0] & 0x70) != 0 || !known_opcode(frame->opcode)) {
        return -1;
    }
    size_t need = 2;
    uint64_t length = buf[1] & 0x7F;
    if (length == 126) {
        need += 2;
    } else if (length == 127) {
        need += 8;
    }
    if (frame->masked) {
        need += 4;
    }
    if (len < need) {
        return 0;
    }
    size_t pos = 2;
    if (length == 126) {
        length = (uint64_t)buf[2] << 8 | buf[3];
        pos = 4;
    } else if (length == 127) {
        length = 0;
        for (int i = 0; i < 8; i++) {
            length = length << 8 | buf[2 + i];
        }
        pos = 10;
        if (length >> 63) {
            return -1;
        }
    }
    /* Control frames are never fragmented and carry at most 125 bytes (5.5). */
    if (frame->opcode >= HIL_WS_CLOSE && (!frame->fin || length > 125)) {
        return -1;
    }
    frame->length = length;
    memset(frame->mask, 0, sizeof frame->mask);
    if (frame->masked) {
        memcpy(frame->mask, buf + pos, 4);
        pos += 4;
    }
    return (int)pos;
}

size_t hil_ws_format_header(uint8_t out[HIL_WS_MAX_HEADER], int fin, int opcode, uint64_t len)
{
    out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0F));
    if (len < 126) {
        out[1] = (uint8_t)len;
        return 2;
    }
    if (len < 65536) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++) {
        out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    }
    return 10;
}

void hil_ws_unmask(uint8_t *data, size_t len, const uint8_t mask[4], uint64_t offset)
{
    for (size_t i = 0; i < len; i++) {
        data[i] ^= mask[(offset + i) & 3];
    }
}

void hil_ws_accept_key(const char *client_key, char out[HIL_WS_ACCEPT_KEY_LEN + 1])
{
    char joined[128];
    uint8_t digest[HIL_SHA1_BYTES];
    int n = snprintf(joined, sizeof joined, "%s%s", client_key, WS_GUID);
    hil_sha1(joined, n < 0 ? 0 : ((size_t)n < sizeof joined ? (size_t)n : sizeof joined - 1), digest);
    hil_base64_encode(digest, sizeof digest, out, HIL_WS_ACCEPT_KEY_LEN + 1);
}
