/* C unit tests of the services' pure logic: SHA-1 and base64, WebSocket framing, HTTP heads, chunked
 * bodies, URLs and MQTT packets, against published test vectors where there are some (FIPS 180, RFC
 * 4648, RFC 6455, the MQTT 3.1.1 standard's encodings). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "digest.h"
#include "http_codec.h"
#include "mqtt_codec.h"
#include "ws_codec.h"

static void hex(const uint8_t *data, size_t len, char *out)
{
    for (size_t i = 0; i < len; i++) {
        snprintf(out + 2 * i, 3, "%02x", data[i]);
    }
}

static void test_sha1(void)
{
    static const struct {
        const char *input;
        const char *digest;
    } vectors[] = {
        {"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
        {"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"},
        /* 56 bytes: the length no longer fits the first block (two-block padding). */
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "84983e441c3bd26ebaae4aa1f95129e5e54670f1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrst"
         "nopqrstu",
         "a49b2446a02c645bf419f995b67091253a04a259"},
    };
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        uint8_t digest[HIL_SHA1_BYTES];
        char text[41];
        hil_sha1(vectors[i].input, strlen(vectors[i].input), digest);
        hex(digest, sizeof digest, text);
        CHECK(strcmp(text, vectors[i].digest) == 0, "sha1(%zu bytes) = %s, want %s", strlen(vectors[i].input), text,
              vectors[i].digest);
    }
    static uint8_t million[1000000];
    memset(million, 'a', sizeof million);
    uint8_t digest[HIL_SHA1_BYTES];
    char text[41];
    hil_sha1(million, sizeof million, digest);
    hex(digest, sizeof digest, text);
    CHECK(strcmp(text, "34aa973cd4c4daa4f61eeb2bdbad27316534016f") == 0, "sha1(a x 10^6) = %s", text);
}

static void test_base64(void)
{
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const encoded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
        char out[16];
        int n = hil_base64_encode((const uint8_t *)plain[i], strlen(plain[i]), out, sizeof out);
        CHECK(n == (int)strlen(encoded[i]) && strcmp(out, encoded[i]) == 0, "base64(%s) = %s", plain[i], out);
    }
    char tiny[4];
    CHECK(hil_base64_encode((const uint8_t *)"foo", 3, tiny, sizeof tiny) == -1, "base64 overflow not reported");
}

static void test_websocket(void)
{
    char accept[HIL_WS_ACCEPT_KEY_LEN + 1];
    hil_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", accept); /* RFC 6455 section 1.3 */
    CHECK(strcmp(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0, "accept key %s", accept);

    /* RFC 6455 5.7: a masked "Hello" from a client. */
    uint8_t hello[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    hil_ws_frame_t f;
    int n = hil_ws_parse_header(hello, sizeof hello, &f);
    CHECK(n == 6 && f.fin && f.opcode == HIL_WS_TEXT && f.masked && f.length == 5, "masked hello: %d", n);
    hil_ws_unmask(hello + n, 5, f.mask, 0);
    CHECK(memcmp(hello + n, "Hello", 5) == 0, "unmasked hello");
    uint8_t again[] = {0x7f, 0x9f, 0x4d, 0x51, 0x58};
    hil_ws_unmask(again + 2, 3, f.mask, 2); /* a piece further into the payload */
    CHECK(memcmp(again + 2, "llo", 3) == 0, "unmask with an offset");
    for (size_t cut = 0; cut < 6; cut++) {
        CHECK(hil_ws_parse_header(hello, cut, &f) == 0, "incomplete header of %zu bytes", cut);
    }

    uint8_t mid[] = {0x82, 0xFE, 0x01, 0x00, 1, 2, 3, 4};
    CHECK(hil_ws_parse_header(mid, sizeof mid, &f) == 8 && f.length == 256 && f.opcode == HIL_WS_BINARY,
          "16-bit length");
    uint8_t big[] = {0x02, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4};
    CHECK(hil_ws_parse_header(big, sizeof big, &f) == 14 && f.length == 65536 && !f.fin, "64-bit length");
    big[2] = 0x80;
    CHECK(hil_ws_parse_header(big, sizeof big, &f) == -1, "64-bit length with the top bit set");

    static const uint8_t invalid[][2] = {
        {0xC1, 0x80}, /* RSV1 */
        {0x83, 0x80}, /* reserved opcode 3 */
        {0x8B, 0x80}, /* reserved control opcode 0xB */
        {0x09, 0x80}, /* fragmented ping */
        {0x89, 0xFE}, /* ping longer than 125 bytes */
    };
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        uint8_t frame[16] = {invalid[i][0], invalid[i][1], 0, 200};
        CHECK(hil_ws_parse_header(frame, sizeof frame, &f) == -1, "invalid frame %zu accepted", i);
    }

    static const struct {
        uint64_t len;
        size_t header;
        uint8_t second;
    } sizes[] = {{0, 2, 0}, {125, 2, 125}, {126, 4, 126}, {65535, 4, 126}, {65536, 10, 127}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint8_t head[HIL_WS_MAX_HEADER];
        size_t len = hil_ws_format_header(head, 1, HIL_WS_BINARY, sizes[i].len);
        hil_ws_frame_t back;
        CHECK(len == sizes[i].header && head[0] == 0x82 && head[1] == sizes[i].second &&
                  hil_ws_parse_header(head, len, &back) == (int)len && back.length == sizes[i].len && !back.masked,
              "server header for %llu bytes", (unsigned long long)sizes[i].len);
    }
}

static int parse(const char *text, hil_http_request_t *req)
{
    return hil_http_parse_request(text, strlen(text), 2048, req);
}

static void test_http_requests(void)
{
    hil_http_request_t req;
    const char *get = "GET /dl/1024?chunked=1&x=2 HTTP/1.1\r\nHost: dut\r\nConnection: keep-alive\r\n\r\nNEXT";
    int n = parse(get, &req);
    CHECK(n == (int)strlen(get) - 4 && req.method == HIL_HTTP_GET && strcmp(req.path, "/dl/1024") == 0 &&
              strcmp(req.query, "chunked=1&x=2") == 0 && req.keep_alive && req.content_length == 0,
          "GET: %d %s %s", n, req.path, req.query);
    CHECK(hil_http_query_has(req.query, "chunked", "1") && !hil_http_query_has(req.query, "chunked", "2") &&
              hil_http_query_has(req.query, "x", "2") && !hil_http_query_has("xchunked=1", "chunked", "1"),
          "query lookup");
    for (size_t cut = 0; cut < strlen(get) - 4; cut++) {
        CHECK(hil_http_parse_request(get, cut, 2048, &req) == 0, "incomplete head of %zu bytes parsed", cut);
    }
    CHECK(parse("POST /ul HTTP/1.1\nContent-Length: 18446744073709551615\n\n", &req) > 0 &&
              req.method == HIL_HTTP_POST && req.content_length == UINT64_MAX,
          "bare LF lines and the largest Content-Length");
    CHECK(parse("\r\nGET /stats HTTP/1.0\r\n\r\n", &req) > 0 && !req.keep_alive, "HTTP/1.0 closes by default");
    CHECK(parse("GET /stats HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &req) > 0 && req.keep_alive,
          "HTTP/1.0 keep-alive");
    CHECK(parse("GET /stats HTTP/1.1\r\nconnection: foo, close\r\n\r\n", &req) > 0 && !req.keep_alive,
          "Connection: close in a list");
    CHECK(parse("GET /ws HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==  \r\n\r\n",
                &req) > 0 &&
              req.upgrade_websocket && req.websocket_version_13 &&
              strcmp(req.websocket_key, "dGhlIHNhbXBsZSBub25jZQ==") == 0,
          "WebSocket handshake headers");

    static const struct {
        const char *request;
        int status;
    } refused[] = {
        /* tests/scenarios/test_httpd.py's MALFORMED table, and more */
        {"FROB /stats HTTP/1.1\r\nHost: dut\r\n\r\n", 501},
        {"GET /stats HTTP/9.9\r\nHost: dut\r\n\r\n", 505},
        {"GET /stats HXXP/1.1\r\nHost: dut\r\n\r\n", 400},
        {"POST /ul HTTP/1.1\r\nHost: dut\r\nContent-Length: -5\r\n\r\n", 400},
        {"POST /ul HTTP/1.1\r\nHost: dut\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400},
        {"POST /ul HTTP/1.1\r\nHost: dut\r\nContent-Length: 18446744073709551616\r\n\r\n", 400},
        {"POST /ul HTTP/1.1\r\nHost: dut\r\nContent-Length: lots\r\n\r\n", 400},
        {"POST /ul HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400},
        {"POST /ul HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
        {"GET stats HTTP/1.1\r\n\r\n", 400},
        {"GET /sta ts HTTP/1.1\r\n\r\n", 400},
        {"GET /stats HTTP/1.1\r\nNo colon here\r\n\r\n", 400},
        {"GET /stats HTTP/1.1\r\nBad Name: x\r\n\r\n", 400},
        {"GET /stats HTTP/1.1\r\nHost: dut\r\n folded: x\r\n\r\n", 400},
        {"GET /" "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"
         "0123456789012345678901234567 HTTP/1.1\r\n\r\n",
         414},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        n = parse(refused[i].request, &req);
        CHECK(n == -refused[i].status, "request %zu answered %d, want %d", i, -n, refused[i].status);
    }
    char long_head[3000];
    snprintf(long_head, sizeof long_head, "GET /dl/1 HTTP/1.1\r\nX-Hil-Long: %02048d\r\n\r\n", 0);
    CHECK(parse(long_head, &req) == -431, "a 2 KiB header line");
    CHECK(hil_http_parse_request(long_head, 2048, 2048, &req) == -431, "2048 bytes without the end of the head");
    CHECK(hil_http_parse_request(long_head, 2047, 2048, &req) == 0, "2047 bytes: still incomplete");
}

static void test_http_paths_and_heads(void)
{
    static const struct {
        const char *path;
        int ok;
        uint64_t n;
    } paths[] = {
        {"/dl/0", 1, 0},       {"/dl/1000000000000", 1, 1000000000000ULL}, {"/dl/0001", 1, 1},
        {"/dl/1000000000001", 0, 0}, {"/dl/99999999999999", 0, 0}, {"/dl/", 0, 0},
        {"/dl/12a", 0, 0},     {"/dl/-1", 0, 0},                           {"/dlx/1", 0, 0},
    };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        uint64_t n = 42;
        int rc = hil_http_parse_dl_path(paths[i].path, &n);
        CHECK((rc == 0) == paths[i].ok && (!paths[i].ok || n == paths[i].n), "%s: rc %d n %llu", paths[i].path, rc,
              (unsigned long long)n);
    }
    char head[256];
    int n = hil_http_format_head(head, sizeof head, 200, "application/json", 17, 1);
    CHECK(n > 0 && strcmp(head, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n\r\n") == 0,
          "200 head: %s", head);
    n = hil_http_format_head(head, sizeof head, 404, NULL, -1, 0);
    CHECK(n > 0 && strcmp(head, "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n") == 0,
          "404 head: %s", head);
    CHECK(hil_http_format_head(head, 20, 200, NULL, 0, 1) == -1, "head truncation not reported");

    hil_http_response_t resp;
    const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nConnection: close\r\n\r\nbody";
    CHECK(hil_http_parse_response(ok, strlen(ok), 4096, &resp) == (int)strlen(ok) - 4 && resp.status == 200 &&
              resp.has_content_length && resp.content_length == 100000 && resp.close && !resp.chunked,
          "response head");
    const char *chunked = "HTTP/1.0 404\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
    CHECK(hil_http_parse_response(chunked, strlen(chunked), 4096, &resp) > 0 && resp.status == 404 && resp.chunked &&
              !resp.has_content_length,
          "chunked response without a reason phrase");
    CHECK(hil_http_parse_response("HTTP/1.1 20 OK\r\n\r\n", 18, 4096, &resp) == -1, "two-digit status");
    CHECK(hil_http_parse_response("SSH-2.0-x\r\n\r\n", 13, 4096, &resp) == -1, "not HTTP");
}

/* Decode text fed in pieces of step bytes; returns the payload, or "ERROR"/"INCOMPLETE". */
static const char *dechunk(const char *text, size_t step, char *out, size_t out_len)
{
    hil_http_chunked_t d;
    hil_http_chunked_init(&d);
    size_t used = 0;
    size_t total = strlen(text);
    for (size_t off = 0; off < total; off += step) {
        const uint8_t *in = (const uint8_t *)text + off;
        size_t piece = total - off < step ? total - off : step;
        size_t len = piece;
        while (len > 0) {
            const uint8_t *data;
            size_t data_len;
            int rc = hil_http_chunked_step(&d, &in, &len, &data, &data_len);
            if (rc < 0) {
                return "ERROR";
            }
            if (data_len > 0 && used + data_len < out_len) {
                memcpy(out + used, data, data_len);
                used += data_len;
            }
            out[used] = '\0';
            if (rc == 1) {
                return len == 0 && off + piece == total ? out : "TRAILING";
            }
        }
    }
    return "INCOMPLETE";
}

static void test_chunked(void)
{
    const char *body = "5\r\nhello\r\n6;ext=1\r\n world\r\nA\r\n0123456789\r\n0\r\nX-Trailer: y\r\n\r\n";
    char out[64];
    for (size_t step = 1; step <= strlen(body); step++) {
        const char *got = dechunk(body, step, out, sizeof out);
        CHECK(strcmp(got, "hello world0123456789") == 0, "fed %zu at a time: %s", step, got);
    }
    CHECK(strcmp(dechunk("0\n\n", 3, out, sizeof out), "") == 0, "bare LF chunk framing");
    CHECK(strcmp(dechunk("3\r\nabc\r\n", 64, out, sizeof out), "INCOMPLETE") == 0, "no last chunk");
    static const char *const broken[] = {"zz\r\n", "\r\n", "3\r\nabcXY", "3\r\nabc\rX", "1000000000000000\r\n"};
    for (size_t i = 0; i < sizeof broken / sizeof broken[0]; i++) {
        CHECK(strcmp(dechunk(broken[i], 64, out, sizeof out), "ERROR") == 0, "broken chunking %zu accepted", i);
    }
}

static void test_urls(void)
{
    hil_url_t url;
    CHECK(hil_url_parse("https://10.77.0.1:4443/dl/100000?x=1", &url) == 0 && strcmp(url.scheme, "https") == 0 &&
              strcmp(url.host, "10.77.0.1") == 0 && url.port == 4443 && strcmp(url.path, "/dl/100000?x=1") == 0,
          "https URL");
    CHECK(hil_url_parse("mqtt://hil-lab", &url) == 0 && url.port == 0 && strcmp(url.path, "/") == 0 &&
              strcmp(url.host, "hil-lab") == 0,
          "URL without port and path");
    static const char *const bad[] = {"10.77.0.1:80", "https://", "https://:80/", "https://h:0/", "https://h:65536/",
                                      "https://h:8x/", "https://user@h/", "://h/", "verylongscheme://h/"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(hil_url_parse(bad[i], &url) == -1, "bad URL accepted: %s", bad[i]);
    }
}

static void test_mqtt(void)
{
    static const struct {
        uint32_t value;
        uint8_t bytes[4];
        size_t size;
    } lengths[] = {
        /* MQTT 3.1.1 section 2.2.3, table 2.4 */
        {0, {0x00}, 1},
        {127, {0x7F}, 1},
        {128, {0x80, 0x01}, 2},
        {16383, {0xFF, 0x7F}, 2},
        {16384, {0x80, 0x80, 0x01}, 3},
        {2097151, {0xFF, 0xFF, 0x7F}, 3},
        {2097152, {0x80, 0x80, 0x80, 0x01}, 4},
        {268435455, {0xFF, 0xFF, 0xFF, 0x7F}, 4},
    };
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        uint8_t head[HIL_MQTT_MAX_FIXED_HEADER];
        size_t n = hil_mqtt_fixed_header(head, HIL_MQTT_PUBLISH, 0x2, lengths[i].value);
        int type = 0;
        int flags = 0;
        uint32_t remaining = 0;
        size_t header_len = 0;
        CHECK(n == lengths[i].size + 1 && head[0] == 0x32 && memcmp(head + 1, lengths[i].bytes, lengths[i].size) == 0 &&
                  hil_mqtt_parse_fixed_header(head, n, &type, &flags, &remaining, &header_len) == 1 &&
                  type == HIL_MQTT_PUBLISH && flags == 2 && remaining == lengths[i].value && header_len == n &&
                  hil_mqtt_parse_fixed_header(head, n - 1, &type, &flags, &remaining, &header_len) == 0,
              "remaining length %u", (unsigned)lengths[i].value);
    }
    uint8_t out[64];
    CHECK(hil_mqtt_fixed_header(out, HIL_MQTT_PUBLISH, 0, 268435456u) == 0, "remaining length too large");
    uint8_t five[] = {0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01};
    int type;
    int flags;
    uint32_t remaining;
    size_t header_len;
    CHECK(hil_mqtt_parse_fixed_header(five, sizeof five, &type, &flags, &remaining, &header_len) == -1,
          "five length bytes");

    static const uint8_t connect[] = {0x10, 0x0E, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00, 0x1E, 0x00, 0x02,
                                      'c',  '1'};
    CHECK(hil_mqtt_encode_connect(out, sizeof out, "c1", 30, 1) == sizeof connect &&
              memcmp(out, connect, sizeof connect) == 0,
          "CONNECT");
    CHECK(hil_mqtt_encode_connect(out, 10, "c1", 30, 1) == 0, "CONNECT overflow");
    static const uint8_t subscribe[] = {0x82, 0x08, 0x00, 0x01, 0x00, 0x03, 'a', '/', 'b', 0x01};
    CHECK(hil_mqtt_encode_subscribe(out, sizeof out, 1, "a/b", 1) == sizeof subscribe &&
              memcmp(out, subscribe, sizeof subscribe) == 0,
          "SUBSCRIBE");
    static const struct {
        int type;
        uint8_t first;
    } acks[] = {{HIL_MQTT_PUBACK, 0x40}, {HIL_MQTT_PUBREC, 0x50}, {HIL_MQTT_PUBREL, 0x62}, {HIL_MQTT_PUBCOMP, 0x70}};
    for (size_t i = 0; i < sizeof acks / sizeof acks[0]; i++) {
        uint8_t ack[4];
        CHECK(hil_mqtt_encode_ack(ack, acks[i].type, 0x1234) == 4 && ack[0] == acks[i].first && ack[1] == 2 &&
                  ack[2] == 0x12 && ack[3] == 0x34 && hil_mqtt_parse_packet_id(ack + 2, 2) == 0x1234,
              "ack type %d", acks[i].type);
    }
    uint8_t two[2];
    CHECK(hil_mqtt_encode_empty(two, HIL_MQTT_PINGREQ) == 2 && two[0] == 0xC0 && two[1] == 0, "PINGREQ");
    CHECK(hil_mqtt_encode_empty(two, HIL_MQTT_DISCONNECT) == 2 && two[0] == 0xE0, "DISCONNECT");
    const uint8_t connack[] = {0x00, 0x05};
    CHECK(hil_mqtt_parse_connack(connack, 2) == 5 && hil_mqtt_parse_connack(connack, 1) == -1, "CONNACK");

    for (int qos = 0; qos <= 2; qos++) {
        uint8_t packet[64];
        size_t n = hil_mqtt_encode_publish_head(packet, sizeof packet, "t/x", qos, 7, 3);
        memcpy(packet + n, "abc", 3);
        hil_mqtt_publish_t p;
        int ok = hil_mqtt_parse_fixed_header(packet, n + 3, &type, &flags, &remaining, &header_len) == 1 &&
                 type == HIL_MQTT_PUBLISH && header_len + remaining == n + 3 &&
                 hil_mqtt_parse_publish(packet + header_len, remaining, flags, remaining, &p) == 0;
        CHECK(ok && p.qos == qos && p.topic_len == 3 && memcmp(p.topic, "t/x", 3) == 0 &&
                  p.packet_id == (qos ? 7 : 0) && memcmp(packet + header_len + p.head_len, "abc", 3) == 0,
              "PUBLISH QoS %d round trip", qos);
    }
    static const uint8_t publish_qos1[] = {0x32, 0x08, 0x00, 0x01, 't', 0x00, 0x07, 'a', 'b', 'c'};
    CHECK(hil_mqtt_encode_publish_head(out, sizeof out, "t", 1, 7, 3) == 7 && memcmp(out, publish_qos1, 7) == 0,
          "PUBLISH head bytes");
    CHECK(hil_mqtt_encode_publish_head(out, sizeof out, "t", 1, 0, 3) == 0, "QoS 1 without a packet id");
    hil_mqtt_publish_t p;
    const uint8_t no_id[] = {0x00, 0x01, 't', 0x00, 0x00};
    CHECK(hil_mqtt_parse_publish(no_id, sizeof no_id, 0x2, sizeof no_id, &p) == -1, "packet id 0");
    CHECK(hil_mqtt_parse_publish(no_id, sizeof no_id, 0x6, sizeof no_id, &p) == -1, "QoS 3");
    const uint8_t short_topic[] = {0x00, 0x09, 't'};
    CHECK(hil_mqtt_parse_publish(short_topic, sizeof short_topic, 0, sizeof short_topic, &p) == -1,
          "topic longer than the packet");
}

void run_codec_tests(void)
{
    test_sha1();
    test_base64();
    test_websocket();
    test_http_requests();
    test_http_paths_and_heads();
    test_chunked();
    test_urls();
    test_mqtt();
}
