/* HTTP/1.1 message parsing and formatting for the services' server and client (internal; pure
 * functions, unit-tested). */
#ifndef HIL_HTTP_CODEC_H
#define HIL_HTTP_CODEC_H

#include <stddef.h>
#include <stdint.h>

#define HIL_HTTP_PATH_MAX 128
#define HIL_HTTP_QUERY_MAX 64
#define HIL_HTTP_WS_KEY_MAX 32
#define HIL_HTTP_DL_MAX 1000000000000ULL /* PROTOCOL.md: /dl/<n> with 0 <= n <= 10^12 */

typedef enum {
    HIL_HTTP_GET,
    HIL_HTTP_POST,
} hil_http_method_t;

typedef struct {
    hil_http_method_t method;
    char path[HIL_HTTP_PATH_MAX];   /* the target up to '?' */
    char query[HIL_HTTP_QUERY_MAX]; /* after '?'; "" without one */
    int keep_alive;                 /* HTTP/1.1 unless "Connection: close"; HTTP/1.0 only with keep-alive */
    uint64_t content_length;        /* 0 when absent */
    int upgrade_websocket;          /* "Upgrade: websocket" */
    int websocket_version_13;       /* "Sec-WebSocket-Version: 13" */
    char websocket_key[HIL_HTTP_WS_KEY_MAX]; /* "" when absent or too long */
} hil_http_request_t;

/* Parse a request head from buf[0..len) (the head may be followed by body bytes). Returns:
 *   > 0  the head's length, through its blank line; *req is filled;
 *   0    the head is incomplete and len < max_head: read more;
 *   < 0  minus the status to answer before closing: 400 (malformed, or a bad Content-Length),
 *        414 (target too long), 431 (no blank line within max_head bytes), 501 (a method other than
 *        GET and POST, or a chunked request body), 505 (an HTTP version other than 1.0 and 1.1). */
int hil_http_parse_request(const char *buf, size_t len, size_t max_head, hil_http_request_t *req);

/* "/dl/<n>" -> n (1 to 13 digits, at most HIL_HTTP_DL_MAX). Returns 0, or -1 for another path. */
int hil_http_parse_dl_path(const char *path, uint64_t *n);
/* Whether a query string ("a=1&chunked=1") has key=value. */
int hil_http_query_has(const char *query, const char *key, const char *value);

/* Reason phrase of a status code ("OK", "Not Found", ...). */
const char *hil_http_reason(int status);
/* A response head: status line, Content-Type (if not NULL), Content-Length (>= 0) or
 * Transfer-Encoding: chunked (-1), Connection: close when !keep_alive, blank line.
 * Returns its length, or -1 if buf is too small. */
int hil_http_format_head(char *buf, size_t len, int status, const char *content_type, int64_t content_length,
                         int keep_alive);

/* A response head as a client sees it. */
typedef struct {
    int status;
    int has_content_length;
    uint64_t content_length;
    int chunked;
    int close; /* "Connection: close" */
} hil_http_response_t;

/* Like hil_http_parse_request for a response head: > 0 head length, 0 incomplete, -1 malformed. */
int hil_http_parse_response(const char *buf, size_t len, size_t max_head, hil_http_response_t *resp);

/* The parts of "scheme://host[:port][/path]" (no user info, no IPv6 literal). */
typedef struct {
    char scheme[8];
    char host[64];
    uint16_t port;    /* 0 when the URL names none */
    const char *path; /* into the URL; "/" when it has none (query included) */
} hil_url_t;

/* 0, or -1 when url is not of that form (or a part is too long). */
int hil_url_parse(const char *url, hil_url_t *out);

/* Incremental decoder of a chunked body (RFC 9112 7.1); extensions and trailers are skipped. */
typedef struct {
    int state;
    uint64_t left;   /* payload bytes left in the current chunk */
    int digits;      /* hex digits of the current size line */
} hil_http_chunked_t;

void hil_http_chunked_init(hil_http_chunked_t *d);
/* Consume input from (*in, *len). When the input holds payload bytes, returns 0 with them as the
 * span (*data, *data_len) of the input (*data_len 0 when it needs more input). Returns 1 once the
 * last chunk and its trailer section are complete, -1 on malformed input. */
int hil_http_chunked_step(hil_http_chunked_t *d, const uint8_t **in, size_t *len, const uint8_t **data,
                          size_t *data_len);

#endif /* HIL_HTTP_CODEC_H */
