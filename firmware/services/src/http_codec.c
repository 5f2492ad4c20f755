/* HTTP/1.1 heads (RFC 9112) as the services need them: strict enough to refuse what esp_http_server
 * refuses, lenient about bare LF line endings. */
#include "http_codec.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

enum { HEAD_INCOMPLETE = 0 };

static int is_tchar(int c)
{
    return isalnum(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int ieq(const char *a, size_t a_len, const char *b)
{
    size_t b_len = strlen(b);
    if (a_len != b_len) {
        return 0;
    }
    for (size_t i = 0; i < a_len; i++) {
        if (tolower((unsigned char)a[i]) != tolower((unsigned char)b[i])) {
            return 0;
        }
    }
    return 1;
}

/* Whether the comma-separated list value[0..len) has token (case-insensitive). */
static int list_has_token(const char *value, size_t len, const char *token)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && (value[i] == ' ' || value[i] == '\t' || value[i] == ',')) {
            i++;
        }
        size_t start = i;
        while (i < len && value[i] != ',') {
            i++;
        }
        size_t end = i;
        while (end > start && (value[end - 1] == ' ' || value[end - 1] == '\t')) {
            end--;
        }
        if (end > start && ieq(value + start, end - start, token)) {
            return 1;
        }
    }
    return 0;
}

/* Decimal digits only, no sign, no blanks, fits 64 bits. */
static int parse_u64(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 20) {
        return -1;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i])) {
            return -1;
        }
        uint64_t digit = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - digit) / 10u) {
            return -1;
        }
        v = v * 10u + digit;
    }
    *out = v;
    return 0;
}

typedef struct {
    const char *start;
    size_t len;  /* without the line ending */
    size_t next; /* offset of the following line */
} line_t;

/* The line starting at off, or 0 when no complete line is there. */
static int next_line(const char *buf, size_t len, size_t off, line_t *line)
{
    const char *nl = off < len ? memchr(buf + off, '\n', len - off) : NULL;
    if (nl == NULL) {
        return 0;
    }
    line->start = buf + off;
    line->len = (size_t)(nl - line->start);
    if (line->len > 0 && line->start[line->len - 1] == '\r') {
        line->len--;
    }
    line->next = (size_t)(nl - buf) + 1;
    return 1;
}

/* Find the head: skip leading empty lines, then lines up to an empty one. Returns the head length
 * (> 0), HEAD_INCOMPLETE, or -431; *first is the offset of the start line. */
static int find_head(const char *buf, size_t len, size_t max_head, size_t *first)
{
    size_t off = 0;
    line_t line;
    while (next_line(buf, len, off, &line) && line.len == 0 && off < 8) {
        off = line.next;
    }
    *first = off;
    int started = 0;
    while (next_line(buf, len, off, &line)) {
        if (line.next > max_head) {
            return -431;
        }
        if (line.len == 0 && started) {
            return (int)line.next;
        }
        started = 1;
        off = line.next;
    }
    return len >= max_head ? -431 : HEAD_INCOMPLETE;
}

typedef struct {
    const char *name;
    size_t name_len;
    const char *value; /* blanks trimmed */
    size_t value_len;
} header_t;

/* The header line at *off (moving *off past it): 1, or 0 at the head's blank line (or its end), -1 for a
 * line that is not "Name: value" (obsolete line folding and "Name :" included). */
static int next_header(const char *buf, size_t len, size_t *off, header_t *h)
{
    line_t line;
    if (!next_line(buf, len, *off, &line) || line.len == 0) {
        return 0;
    }
    *off = line.next;
    const char *colon = memchr(line.start, ':', line.len);
    if (colon == NULL || colon == line.start) {
        return -1;
    }
    h->name = line.start;
    h->name_len = (size_t)(colon - line.start);
    for (size_t i = 0; i < h->name_len; i++) {
        if (!is_tchar((unsigned char)line.start[i])) {
            return -1;
        }
    }
    const char *v = colon + 1;
    const char *end = line.start + line.len;
    while (v < end && (*v == ' ' || *v == '\t')) {
        v++;
    }
    while (end > v && (end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }
    h->value = v;
    h->value_len = (size_t)(end - v);
    return 1;
}

/* "HTTP/1.x" -> minor version; -400 malformed, -505 another version. */
static int parse_version(const char *s, size_t len)
{
    if (len != 8 || memcmp(s, "HTTP/", 5) != 0 || !isdigit((unsigned char)s[5]) || s[6] != '.' ||
        !isdigit((unsigned char)s[7])) {
        return -400;
    }
    if (s[5] != '1' || (s[7] != '0' && s[7] != '1')) {
        return -505;
    }
    return s[7] - '0';
}

static int parse_request_line(const line_t *line, hil_http_request_t *req, int *minor)
{
    const char *sp1 = memchr(line->start, ' ', line->len);
    if (sp1 == NULL) {
        return -400;
    }
    size_t method_len = (size_t)(sp1 - line->start);
    const char *target = sp1 + 1;
    const char *end = line->start + line->len;
    const char *sp2 = memchr(target, ' ', (size_t)(end - target));
    if (method_len == 0 || sp2 == NULL || sp2 == target) {
        return -400;
    }
    for (size_t i = 0; i < method_len; i++) {
        if (!is_tchar((unsigned char)line->start[i])) {
            return -400;
        }
    }
    int version = parse_version(sp2 + 1, (size_t)(end - sp2 - 1));
    if (version < 0) {
        return version;
    }
    *minor = version;
    if (method_len == 3 && memcmp(line->start, "GET", 3) == 0) {
        req->method = HIL_HTTP_GET;
    } else if (method_len == 4 && memcmp(line->start, "POST", 4) == 0) {
        req->method = HIL_HTTP_POST;
    } else {
        return -501;
    }
    size_t target_len = (size_t)(sp2 - target);
    if (target[0] != '/') {
        return -400;
    }
    for (size_t i = 0; i < target_len; i++) {
        if ((unsigned char)target[i] <= ' ' || target[i] == 0x7f) {
            return -400;
        }
    }
    const char *q = memchr(target, '?', target_len);
    size_t path_len = q ? (size_t)(q - target) : target_len;
    size_t query_len = q ? target_len - path_len - 1 : 0;
    if (path_len >= sizeof req->path || query_len >= sizeof req->query) {
        return -414;
    }
    memcpy(req->path, target, path_len);
    req->path[path_len] = '\0';
    memcpy(req->query, q ? q + 1 : "", query_len);
    req->query[query_len] = '\0';
    return 0;
}

int hil_http_parse_request(const char *buf, size_t len, size_t max_head, hil_http_request_t *req)
{
    size_t off;
    int head_len = find_head(buf, len, max_head, &off);
    if (head_len <= 0) {
        return head_len;
    }
    memset(req, 0, sizeof *req);
    line_t line;
    next_line(buf, len, off, &line);
    int minor = 1;
    int rc = parse_request_line(&line, req, &minor);
    if (rc < 0) {
        return rc;
    }
    int connection_close = 0;
    int connection_keep_alive = 0;
    int seen_length = 0;
    header_t h;
    off = line.next;
    while ((rc = next_header(buf, len, &off, &h)) == 1) {
        if (ieq(h.name, h.name_len, "Content-Length")) {
            uint64_t n;
            if (parse_u64(h.value, h.value_len, &n) != 0 || (seen_length && n != req->content_length)) {
                return -400;
            }
            req->content_length = n;
            seen_length = 1;
        } else if (ieq(h.name, h.name_len, "Transfer-Encoding")) {
            return -501; /* chunked request bodies: not supported, like esp_http_server */
        } else if (ieq(h.name, h.name_len, "Connection")) {
            connection_close |= list_has_token(h.value, h.value_len, "close");
            connection_keep_alive |= list_has_token(h.value, h.value_len, "keep-alive");
        } else if (ieq(h.name, h.name_len, "Upgrade")) {
            req->upgrade_websocket = list_has_token(h.value, h.value_len, "websocket");
        } else if (ieq(h.name, h.name_len, "Sec-WebSocket-Version")) {
            req->websocket_version_13 = h.value_len == 2 && memcmp(h.value, "13", 2) == 0;
        } else if (ieq(h.name, h.name_len, "Sec-WebSocket-Key") && h.value_len < sizeof req->websocket_key) {
            memcpy(req->websocket_key, h.value, h.value_len);
            req->websocket_key[h.value_len] = '\0';
        }
    }
    if (rc < 0) {
        return -400;
    }
    req->keep_alive = minor == 1 ? !connection_close : connection_keep_alive && !connection_close;
    return head_len;
}

int hil_http_parse_dl_path(const char *path, uint64_t *n)
{
    if (strncmp(path, "/dl/", 4) != 0) {
        return -1;
    }
    size_t digits = strlen(path + 4);
    uint64_t value;
    if (digits > 13 || parse_u64(path + 4, digits, &value) != 0 || value > HIL_HTTP_DL_MAX) {
        return -1;
    }
    *n = value;
    return 0;
}

int hil_http_query_has(const char *query, const char *key, const char *value)
{
    size_t key_len = strlen(key);
    size_t value_len = strlen(value);
    for (const char *p = query; p != NULL && *p != '\0';) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len == key_len + 1 + value_len && memcmp(p, key, key_len) == 0 && p[key_len] == '=' &&
            memcmp(p + key_len + 1, value, value_len) == 0) {
            return 1;
        }
        p = amp ? amp + 1 : NULL;
    }
    return 0;
}

const char *hil_http_reason(int status)
{
    switch (status) {
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 408:
        return "Request Timeout";
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

int hil_http_format_head(char *buf, size_t len, int status, const char *content_type, int64_t content_length,
                         int keep_alive)
{
    char length_line[48];
    if (content_length >= 0) {
        snprintf(length_line, sizeof length_line, "Content-Length: %" PRId64 "\r\n", content_length);
    } else {
        snprintf(length_line, sizeof length_line, "Transfer-Encoding: chunked\r\n");
    }
    int n = snprintf(buf, len, "HTTP/1.1 %d %s\r\n%s%s%s%s%s\r\n", status, hil_http_reason(status),
                     content_type ? "Content-Type: " : "", content_type ? content_type : "", content_type ? "\r\n" : "",
                     length_line, keep_alive ? "" : "Connection: close\r\n");
    return (n < 0 || (size_t)n >= len) ? -1 : n;
}

int hil_http_parse_response(const char *buf, size_t len, size_t max_head, hil_http_response_t *resp)
{
    size_t off;
    int head_len = find_head(buf, len, max_head, &off);
    if (head_len <= 0) {
        return head_len < 0 ? -1 : 0;
    }
    memset(resp, 0, sizeof *resp);
    line_t line;
    next_line(buf, len, off, &line);
    /* "HTTP/1.x SSS reason" */
    if (line.len < 12 || parse_version(line.start, 8) < 0 || line.start[8] != ' ' ||
        !isdigit((unsigned char)line.start[9]) || !isdigit((unsigned char)line.start[10]) ||
        !isdigit((unsigned char)line.start[11]) || (line.len > 12 && line.start[12] != ' ')) {
        return -1;
    }
    resp->status = (line.start[9] - '0') * 100 + (line.start[10] - '0') * 10 + (line.start[11] - '0');
    header_t h;
    int rc;
    off = line.next;
    while ((rc = next_header(buf, len, &off, &h)) == 1) {
        if (ieq(h.name, h.name_len, "Content-Length")) {
            if (parse_u64(h.value, h.value_len, &resp->content_length) != 0) {
                return -1;
            }
            resp->has_content_length = 1;
        } else if (ieq(h.name, h.name_len, "Transfer-Encoding")) {
            resp->chunked = list_has_token(h.value, h.value_len, "chunked");
        } else if (ieq(h.name, h.name_len, "Connection")) {
            resp->close = list_has_token(h.value, h.value_len, "close");
        }
    }
    if (rc < 0) {
        return -1;
    }
    return head_len;
}

int hil_url_parse(const char *url, hil_url_t *out)
{
    memset(out, 0, sizeof *out);
    const char *sep = strstr(url, "://");
    if (sep == NULL || sep == url || (size_t)(sep - url) >= sizeof out->scheme) {
        return -1;
    }
    memcpy(out->scheme, url, (size_t)(sep - url));
    const char *host = sep + 3;
    size_t host_len = strcspn(host, ":/?#");
    if (host_len == 0 || host_len >= sizeof out->host || memchr(host, '@', strcspn(host, "/")) != NULL) {
        return -1;
    }
    memcpy(out->host, host, host_len);
    const char *rest = host + host_len;
    if (*rest == ':') {
        size_t digits = strspn(rest + 1, "0123456789");
        uint64_t port;
        if (parse_u64(rest + 1, digits, &port) != 0 || port == 0 || port > 65535) {
            return -1;
        }
        out->port = (uint16_t)port;
        rest += 1 + digits;
    }
    if (*rest != '\0' && *rest != '/') {
        return -1;
    }
    out->path = *rest == '/' ? rest : "/";
    return 0;
}

enum {
    CHUNK_SIZE,      /* hex digits of the size line */
    CHUNK_EXTENSION, /* ";ext" up to the line end */
    CHUNK_SIZE_LF,   /* after the size line's CR */
    CHUNK_DATA,
    CHUNK_DATA_CR,
    CHUNK_DATA_LF,
    CHUNK_TRAILER,     /* start of a trailer line (or the final empty line) */
    CHUNK_TRAILER_TEXT,
    CHUNK_TRAILER_LF,
    CHUNK_DONE,
};

void hil_http_chunked_init(hil_http_chunked_t *d)
{
    memset(d, 0, sizeof *d);
    d->state = CHUNK_SIZE;
}

static int hex_value(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The size line ended: payload follows, or the trailer section after the last chunk. */
static int end_size_line(hil_http_chunked_t *d)
{
    if (d->digits == 0) {
        return -1;
    }
    d->state = d->left > 0 ? CHUNK_DATA : CHUNK_TRAILER;
    return 0;
}

int hil_http_chunked_step(hil_http_chunked_t *d, const uint8_t **in, size_t *len, const uint8_t **data,
                          size_t *data_len)
{
    *data = NULL;
    *data_len = 0;
    while (*len > 0 && d->state != CHUNK_DONE) {
        if (d->state == CHUNK_DATA) {
            size_t n = d->left < *len ? (size_t)d->left : *len;
            *data = *in;
            *data_len = n;
            *in += n;
            *len -= n;
            d->left -= n;
            if (d->left == 0) {
                d->state = CHUNK_DATA_CR;
            }
            return 0;
        }
        int c = **in;
        (*in)++;
        (*len)--;
        switch (d->state) {
        case CHUNK_SIZE: {
            int v = hex_value(c);
            if (v >= 0) {
                if (d->digits == 15) {
                    return -1; /* larger than any real chunk */
                }
                d->left = d->left * 16u + (uint64_t)v;
                d->digits++;
            } else if (c == ';' || c == ' ' || c == '\t') {
                d->state = CHUNK_EXTENSION;
            } else if (c == '\r') {
                d->state = CHUNK_SIZE_LF;
            } else if (c == '\n') {
                if (end_size_line(d) != 0) {
                    return -1;
                }
            } else {
                return -1;
            }
            break;
        }
        case CHUNK_EXTENSION:
            if (c == '\n' && end_size_line(d) != 0) {
                return -1;
            }
            break;
        case CHUNK_SIZE_LF:
            if (c != '\n' || end_size_line(d) != 0) {
                return -1;
            }
            break;
        case CHUNK_DATA_CR:
            if (c == '\r') {
                d->state = CHUNK_DATA_LF;
            } else if (c == '\n') {
                hil_http_chunked_init(d);
            } else {
                return -1;
            }
            break;
        case CHUNK_DATA_LF:
            if (c != '\n') {
                return -1;
            }
            hil_http_chunked_init(d);
            break;
        case CHUNK_TRAILER:
            if (c == '\n') {
                d->state = CHUNK_DONE;
                return 1;
            }
            d->state = c == '\r' ? CHUNK_TRAILER_LF : CHUNK_TRAILER_TEXT;
            break;
        case CHUNK_TRAILER_TEXT:
            if (c == '\n') {
                d->state = CHUNK_TRAILER;
            }
            break;
        case CHUNK_TRAILER_LF:
            if (c != '\n') {
                return -1;
            }
            d->state = CHUNK_DONE;
            return 1;
        default:
            return -1;
        }
    }
    return d->state == CHUNK_DONE ? 1 : 0;
}
