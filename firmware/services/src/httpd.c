/*
 * The HTTP and HTTPS servers of PROTOCOL.md "HTTP endpoints": GET /dl/<n> (also ?chunked=1),
 * POST /ul, GET /stats, GET /ws (WebSocket echo), 404 otherwise.
 *
 * One acceptor per server and one thread per connection, at most HIL_HTTP_MAX_CONN at once; each
 * connection slot owns one buffer for its whole life (request heads, upload bodies, WebSocket
 * frames), and download bodies are sent straight from constant data, so requests allocate nothing.
 * When every slot is taken, the least recently active idle keep-alive connection is closed to make
 * room, as esp_http_server's lru_purge_enable does. Errors are answered like esp_http_server answers
 * them (400, 404, 408, 414, 431, 501, 505) and end the connection.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "conn.h"
#include "dl_pattern.h"
#include "hil_platform.h"
#include "hil_proto.h"
#include "hil_services.h"
#include "hooks.h"
#include "http_codec.h"
#include "net_util.h"
#include "tls.h"
#include "ws_codec.h"

#define TAG "hil_http"
/* A request that has started must be complete within this (esp_http_server's recv_wait_timeout). */
#define REQUEST_TIMEOUT_MS 5000u
/* A connection with no (next) request for this long is closed. */
#define IDLE_TIMEOUT_MS 30000u
/* A send that makes no progress for this long ends the connection (a client that stopped reading). */
#define SEND_TIMEOUT_MS 10000u
#define TLS_HANDSHAKE_TIMEOUT_MS 10000u
/* An idle WebSocket stays open; this only bounds one wait of its loop. */
#define WS_WAIT_MS 60000u
#define LINGER_MS 1000u
/* How long the acceptor waits for a purged connection's slot before it looks again. */
#define SLOT_WAIT_MS 2000u
#define WS_MAX_MESSAGE 16384u
#define CONN_STACK_PLAIN 6144
#define CONN_STACK_TLS 12288
#define CONN_PRIORITY 5

#if HIL_HTTP_IO_BYTES < WS_MAX_MESSAGE + HIL_WS_MAX_HEADER || HIL_HTTP_IO_BYTES < HIL_HTTP_MAX_HEAD
#error "HIL_HTTP_IO_BYTES must hold the largest WebSocket frame and the largest request head"
#endif

typedef struct server server_t;

typedef struct {
    server_t *server;
    hil_conn_t conn;
    uint8_t *io;     /* HIL_HTTP_IO_BYTES, for the life of the server */
    size_t have;     /* bytes in io not yet consumed */
    int in_use;      /* a connection owns the slot */
    int idle;        /* waiting for the first byte of a next request: may be purged */
    int closing;     /* the owner is closing the socket: hands off */
    uint32_t last_active_ms;
} slot_t;

struct server {
    int tls;
    int listener;
    hil_mutex_t *lock; /* the slots' in_use/idle/closing/last_active_ms */
    hil_sem_t *free_slots;
    slot_t slots[HIL_HTTP_MAX_CONN];
};

static _Atomic(hil_mutex_t *) stats_lock;
static hil_http_stats_t stats;
static void *leaked; /* fault heap_leak_per_connection: a chain of blocks, each pointing at the previous */

static void count(uint32_t *counter, int delta)
{
    hil_mutex_lock(stats_lock);
    *counter += (uint32_t)delta;
    hil_mutex_unlock(stats_lock);
}

void hil_http_get_stats(hil_http_stats_t *out)
{
    if (stats_lock == NULL) {
        memset(out, 0, sizeof *out);
        return;
    }
    hil_mutex_lock(stats_lock);
    *out = stats;
    hil_mutex_unlock(stats_lock);
}

/* ---- responses ------------------------------------------------------------------------------ */

static int send_bytes(slot_t *slot, const void *data, size_t len)
{
    return hil_conn_write_all(&slot->conn, data, len, SEND_TIMEOUT_MS);
}

/* A complete response with a small body, head and body in one write. */
static int send_response(slot_t *slot, int status, const char *content_type, const char *body, int keep_alive)
{
    char out[1024];
    size_t body_len = strlen(body);
    int n = hil_http_format_head(out, sizeof out, status, content_type, (int64_t)body_len, keep_alive);
    if (n < 0 || (size_t)n + body_len > sizeof out) {
        return -1;
    }
    memcpy(out + n, body, body_len);
    count(&stats.requests, 1);
    return send_bytes(slot, out, (size_t)n + body_len);
}

/* An error answer; the caller closes the connection afterwards. */
static void send_error(slot_t *slot, int status, const char *message)
{
    if (status != 404) {
        count(&stats.bad_requests, 1);
        if (hil_hooks_faults()->http_crash_on_malformed) {
            hil_hooks_crash("panic", "httpd");
        }
    }
    send_response(slot, status, "text/plain", message, 0);
}

static int serve_download(slot_t *slot, uint64_t total, int chunked, int keep_alive)
{
    char head[160];
    int n = hil_http_format_head(head, sizeof head, 200, "application/octet-stream", chunked ? -1 : (int64_t)total,
                                 keep_alive);
    if (n < 0) {
        return -1;
    }
    count(&stats.requests, 1);
    if (!chunked && total <= sizeof head - (size_t)n) {
        /* Small bodies leave with the head: no lone tiny segment. */
        memcpy(head + n, hil_dl_pattern, (size_t)total);
        return send_bytes(slot, head, (size_t)n + (size_t)total);
    }
    if (send_bytes(slot, head, (size_t)n) != 0) {
        return -1;
    }
    uint64_t sent = 0;
    if (!chunked) {
        while (sent < total) {
            size_t len = total - sent < HIL_DL_BLOCK ? (size_t)(total - sent) : HIL_DL_BLOCK;
            if (send_bytes(slot, hil_dl_pattern + sent % 256u, len) != 0) {
                return -1;
            }
            sent += len;
        }
        return 0;
    }
    /* Full chunks are identical (8192 is a multiple of 256): send runs of them from constant data. */
    while (total - sent >= HIL_DL_CHUNK) {
        uint64_t chunks = (total - sent) / HIL_DL_CHUNK;
        size_t run = chunks < HIL_DL_CHUNKS_PER_RUN ? (size_t)chunks : HIL_DL_CHUNKS_PER_RUN;
        if (send_bytes(slot, hil_dl_chunk_run, run * HIL_DL_CHUNK_WIRE) != 0) {
            return -1;
        }
        sent += run * HIL_DL_CHUNK;
    }
    size_t last = (size_t)(total - sent);
    if (last > 0) {
        int len = snprintf(head, sizeof head, "%zx\r\n", last);
        if (send_bytes(slot, head, (size_t)len) != 0 || send_bytes(slot, hil_dl_pattern, last) != 0 ||
            send_bytes(slot, "\r\n", 2) != 0) {
            return -1;
        }
    }
    return send_bytes(slot, "0\r\n\r\n", 5);
}

/* Consume a request body of total bytes, of which the first are already in io after head_len.
 * first_us and last_us get the arrival times of the first and last body byte. 0, or -1 (connection over). */
static int consume_body(slot_t *slot, size_t head_len, uint64_t total, uint64_t *first_us, uint64_t *last_us)
{
    size_t buffered = slot->have - head_len;
    size_t now_have = buffered < total ? buffered : (size_t)total;
    uint64_t left = total - now_have;
    *first_us = *last_us = hil_time_us();
    /* Keep what follows the body (a pipelined request) at the start of io. */
    memmove(slot->io, slot->io + head_len + now_have, slot->have - head_len - now_have);
    slot->have -= head_len + now_have;
    int first = now_have == 0;
    while (left > 0) {
        /* Read no further than the body, into the space after any kept bytes (none when left > 0). */
        size_t want = left < HIL_HTTP_IO_BYTES ? (size_t)left : HIL_HTTP_IO_BYTES;
        int n = hil_conn_read(&slot->conn, slot->io, want, REQUEST_TIMEOUT_MS);
        if (n <= 0) {
            return -1; /* the client vanished or stalled mid-body: esp_http_server drops the session */
        }
        *last_us = hil_time_us();
        if (first) {
            *first_us = *last_us;
            first = 0;
        }
        left -= (uint64_t)n;
    }
    return 0;
}

static int serve_upload(slot_t *slot, size_t head_len, const hil_http_request_t *req)
{
    uint64_t first_us;
    uint64_t last_us;
    if (consume_body(slot, head_len, req->content_length, &first_us, &last_us) != 0) {
        return -1;
    }
    char body[96];
    snprintf(body, sizeof body, "{\"bytes\":%" PRIu64 ",\"duration_us\":%" PRIu64 "}", req->content_length,
             last_us - first_us);
    return send_response(slot, 200, "application/json", body, req->keep_alive);
}

static int serve_stats(slot_t *slot, int keep_alive)
{
    hil_stats_t counters;
    char body[768];
    if (hil_hooks_stats(&counters) != 0) {
        send_error(slot, 503, "no stats source");
        return -1;
    }
    if (hil_proto_format_stats_object(body, sizeof body, "http", &counters) < 0) {
        send_error(slot, 500, "stats too long");
        return -1;
    }
    return send_response(slot, 200, "application/json", body, keep_alive);
}

/* ---- WebSocket ------------------------------------------------------------------------------ */

static void ws_close(slot_t *slot, uint16_t code)
{
    uint8_t frame[4] = {0x80 | HIL_WS_CLOSE, 2, (uint8_t)(code >> 8), (uint8_t)code};
    send_bytes(slot, frame, sizeof frame);
}

/* Echo frames until the WebSocket ends. io holds bytes that followed the handshake. */
static void serve_websocket_frames(slot_t *slot)
{
    for (;;) {
        hil_ws_frame_t frame;
        int header_len;
        while ((header_len = hil_ws_parse_header(slot->io, slot->have, &frame)) == 0) {
            int n = hil_conn_read(&slot->conn, slot->io + slot->have, HIL_HTTP_IO_BYTES - slot->have, WS_WAIT_MS);
            if (n == HIL_CONN_TIMEOUT) {
                continue;
            }
            if (n <= 0) {
                return;
            }
            slot->have += (size_t)n;
        }
        if (header_len < 0 || !frame.masked) {
            ws_close(slot, HIL_WS_CLOSE_PROTOCOL_ERROR); /* client frames must be masked (5.1) */
            return;
        }
        if (frame.length > WS_MAX_MESSAGE) {
            ws_close(slot, HIL_WS_CLOSE_TOO_BIG);
            return;
        }
        size_t total = (size_t)header_len + (size_t)frame.length;
        if (slot->have < total) {
            if (hil_conn_read_exact(&slot->conn, slot->io + slot->have, total - slot->have, REQUEST_TIMEOUT_MS) != 0) {
                return;
            }
            slot->have = total;
        }
        uint8_t *payload = slot->io + header_len;
        hil_ws_unmask(payload, (size_t)frame.length, frame.mask, 0);
        int opcode = frame.opcode;
        int reply = opcode == HIL_WS_PING ? HIL_WS_PONG : opcode;
        if (opcode != HIL_WS_PONG) {
            /* The reply's header goes right before the payload: it is 4 bytes (the mask) shorter. */
            uint8_t head[HIL_WS_MAX_HEADER];
            uint64_t reply_len = opcode == HIL_WS_CLOSE && frame.length > 2 ? 2 : frame.length;
            size_t reply_head = hil_ws_format_header(head, frame.fin, reply, reply_len);
            memcpy(payload - reply_head, head, reply_head);
            if (send_bytes(slot, payload - reply_head, reply_head + (size_t)reply_len) != 0) {
                return;
            }
            count(&stats.ws_messages, opcode == HIL_WS_CLOSE ? 0 : 1);
        }
        if (opcode == HIL_WS_CLOSE) {
            return;
        }
        memmove(slot->io, slot->io + total, slot->have - total);
        slot->have -= total;
    }
}

static void serve_websocket(slot_t *slot, size_t head_len, const hil_http_request_t *req)
{
    if (!req->upgrade_websocket || !req->websocket_version_13 || req->websocket_key[0] == '\0') {
        send_error(slot, 400, "Not a WebSocket handshake");
        return;
    }
    char accept[HIL_WS_ACCEPT_KEY_LEN + 1];
    char head[192];
    hil_ws_accept_key(req->websocket_key, accept);
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    count(&stats.requests, 1);
    if (send_bytes(slot, head, (size_t)n) != 0) {
        return;
    }
    memmove(slot->io, slot->io + head_len, slot->have - head_len);
    slot->have -= head_len;
    serve_websocket_frames(slot);
}

/* ---- one connection ---------------------------------------------------------------------------- */

static void set_idle(slot_t *slot, int idle)
{
    hil_mutex_lock(slot->server->lock);
    slot->idle = idle;
    slot->last_active_ms = hil_time_ms();
    hil_mutex_unlock(slot->server->lock);
}

/* Read until a request head is complete. Returns its length, or 0 when the connection is over
 * (answered or not). Between requests of a kept-alive connection (after_request) it may be purged. */
static size_t read_request(slot_t *slot, hil_http_request_t *req, int after_request)
{
    for (;;) {
        int rc = hil_http_parse_request((const char *)slot->io, slot->have, HIL_HTTP_MAX_HEAD, req);
        if (rc > 0) {
            return (size_t)rc;
        }
        if (rc < 0) {
            send_error(slot, -rc, hil_http_reason(-rc));
            return 0;
        }
        int waiting_for_next = after_request && slot->have == 0 && hil_conn_buffered(&slot->conn) == 0;
        set_idle(slot, waiting_for_next);
        int n = hil_conn_read(&slot->conn, slot->io + slot->have, HIL_HTTP_IO_BYTES - slot->have,
                              slot->have == 0 ? IDLE_TIMEOUT_MS : REQUEST_TIMEOUT_MS);
        set_idle(slot, 0);
        if (n <= 0) {
            if (slot->have > 0 && n == 0) {
                send_error(slot, 400, "Request ended inside the headers");
            } else if (slot->have > 0 && n == HIL_CONN_TIMEOUT) {
                send_error(slot, 408, "Request Timeout");
            }
            return 0;
        }
        slot->have += (size_t)n;
    }
}

/* Serve one request. Returns 1 when the connection stays open for another. */
static int serve_request(slot_t *slot, size_t head_len, const hil_http_request_t *req)
{
    uint64_t size;
    if (req->method == HIL_HTTP_POST && strcmp(req->path, "/ul") == 0) {
        return serve_upload(slot, head_len, req) == 0 && req->keep_alive;
    }
    if (req->method == HIL_HTTP_GET && strcmp(req->path, "/ws") == 0) {
        serve_websocket(slot, head_len, req);
        return 0; /* after a WebSocket the TCP connection ends too */
    }
    /* Any other request: its body (if any) is read and dropped before the answer. */
    uint64_t first_us;
    uint64_t last_us;
    if (consume_body(slot, head_len, req->content_length, &first_us, &last_us) != 0) {
        return 0;
    }
    if (req->method == HIL_HTTP_GET && strncmp(req->path, "/dl/", 4) == 0) {
        if (hil_http_parse_dl_path(req->path, &size) != 0) {
            send_error(slot, 400, "expected /dl/<bytes>, 0..10^12");
            return 0;
        }
        return serve_download(slot, size, hil_http_query_has(req->query, "chunked", "1"), req->keep_alive) == 0 &&
               req->keep_alive;
    }
    if (req->method == HIL_HTTP_GET && strcmp(req->path, "/stats") == 0) {
        return serve_stats(slot, req->keep_alive) == 0 && req->keep_alive;
    }
    send_error(slot, 404, "Not Found");
    return 0;
}

static void release_slot(slot_t *slot)
{
    server_t *server = slot->server;
    hil_mutex_lock(server->lock);
    slot->closing = 1; /* from here the acceptor leaves the socket alone */
    hil_mutex_unlock(server->lock);
    hil_conn_close(&slot->conn, LINGER_MS);
    hil_mutex_lock(server->lock);
    slot->in_use = 0;
    slot->idle = 0;
    hil_mutex_unlock(server->lock);
    count(&stats.open_connections, -1);
    hil_sem_give(server->free_slots);
}

static void connection_thread(void *arg)
{
    slot_t *slot = arg;
    if (slot->server->tls && hil_tls_accept(&slot->conn, TLS_HANDSHAKE_TIMEOUT_MS) != 0) {
        count(&stats.tls_failures, 1);
        release_slot(slot);
        return;
    }
    hil_http_request_t req;
    size_t head_len;
    int served = 0;
    while ((head_len = read_request(slot, &req, served)) > 0 && serve_request(slot, head_len, &req)) {
        served = 1;
    }
    release_slot(slot);
}

/* ---- accepting ------------------------------------------------------------------------------- */

/* Close the least recently active idle keep-alive connection (its thread sees the peer close). */
static void purge_idle(server_t *server)
{
    hil_mutex_lock(server->lock);
    slot_t *oldest = NULL;
    for (int i = 0; i < HIL_HTTP_MAX_CONN; i++) {
        slot_t *s = &server->slots[i];
        if (s->in_use && s->idle && !s->closing &&
            (oldest == NULL || (int32_t)(s->last_active_ms - oldest->last_active_ms) < 0)) {
            oldest = s;
        }
    }
    if (oldest != NULL) {
        oldest->idle = 0;
        hil_conn_interrupt(oldest->conn.fd);
        count(&stats.purged, 1);
    }
    hil_mutex_unlock(server->lock);
}

static void apply_connection_faults(uint32_t accepted)
{
    const hil_services_faults_t *faults = hil_hooks_faults();
    if (faults->http_leak_bytes_per_connection >= sizeof(void *)) {
        void **block = malloc(faults->http_leak_bytes_per_connection);
        if (block != NULL) {
            memset(block, 0xA5, faults->http_leak_bytes_per_connection); /* touched, so it really is used */
            *block = leaked;
            leaked = block;
        }
    }
    if (faults->http_crash_on_connection != 0 && accepted == faults->http_crash_on_connection) {
        hil_hooks_crash("panic", "httpd");
    }
}

static void start_connection(server_t *server, int fd)
{
    slot_t *slot = NULL;
    hil_mutex_lock(server->lock);
    for (int i = 0; i < HIL_HTTP_MAX_CONN && slot == NULL; i++) {
        if (!server->slots[i].in_use) {
            slot = &server->slots[i];
            slot->in_use = 1;
            slot->idle = 0;
            slot->closing = 0;
            slot->have = 0;
            slot->conn.fd = fd;
            slot->conn.tls = NULL;
            slot->last_active_ms = hil_time_ms();
        }
    }
    hil_mutex_unlock(server->lock);
    if (slot == NULL) { /* cannot happen: the acceptor holds a count of free_slots */
        hil_net_close(fd);
        hil_sem_give(server->free_slots);
        return;
    }
    hil_mutex_lock(stats_lock);
    uint32_t accepted = ++stats.accepted;
    stats.open_connections++;
    hil_mutex_unlock(stats_lock);
    apply_connection_faults(accepted);
    int one = 1;
    /* Heads and small bodies must not wait for the client's delayed ACK (Nagle). */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    hil_net_set_nonblocking(fd);
    if (hil_thread_start("hil_http", connection_thread, slot, server->tls ? CONN_STACK_TLS : CONN_STACK_PLAIN,
                         CONN_PRIORITY) != 0) {
        hil_log(HIL_LOG_WARN, TAG, "no thread for a connection");
        release_slot(slot);
    }
}

/* The HTTP and HTTPS servers start on their own threads at the same time: the first to get here makes the lock
 * (a plain check-then-set let both make one, and one of them leaked). */
static int create_stats_lock(void)
{
    if (atomic_load(&stats_lock) != NULL) {
        return 0;
    }
    hil_mutex_t *mine = hil_mutex_create();
    if (mine == NULL) {
        return -1;
    }
    hil_mutex_t *none = NULL;
    if (!atomic_compare_exchange_strong(&stats_lock, &none, mine)) {
        hil_mutex_destroy(mine); /* the other server's won */
    }
    return 0;
}

static int run_server(uint16_t port, int tls)
{
    const char *name = tls ? "https" : "http";
    if (tls && !hil_tls_server_ready()) {
        hil_log(HIL_LOG_ERROR, TAG, "https: no server certificate (hil_services_set_tls_credentials)");
        return -1;
    }
    if (create_stats_lock() != 0) {
        return -1;
    }
    server_t *server = calloc(1, sizeof *server);
    if (server == NULL) {
        return -1;
    }
    server->tls = tls;
    server->lock = hil_mutex_create();
    server->free_slots = hil_sem_create(HIL_HTTP_MAX_CONN, HIL_HTTP_MAX_CONN);
    int ok = server->lock != NULL && server->free_slots != NULL;
    for (int i = 0; i < HIL_HTTP_MAX_CONN && ok; i++) {
        server->slots[i].server = server;
        server->slots[i].conn.fd = -1;
        ok = (server->slots[i].io = malloc(HIL_HTTP_IO_BYTES)) != NULL;
    }
    uint16_t bound = 0;
    server->listener = ok ? hil_net_listen_tcp(port, HIL_HTTP_BACKLOG, &bound) : -1;
    if (server->listener < 0) {
        hil_log(HIL_LOG_ERROR, TAG, "%s: cannot start on port %u", name, (unsigned)port);
        for (int i = 0; i < HIL_HTTP_MAX_CONN; i++) {
            free(server->slots[i].io);
        }
        hil_sem_destroy(server->free_slots);
        hil_mutex_destroy(server->lock);
        free(server);
        return -1;
    }
    hil_net_set_nonblocking(server->listener);
    hil_log(HIL_LOG_INFO, TAG, "%s: port %u, %d connections", name, (unsigned)bound, HIL_HTTP_MAX_CONN);
    hil_services_notify_ready(name, &bound, 1, NULL, 0);
    for (;;) {
        int ready = hil_net_wait_readable(server->listener, 1000);
        if (ready <= 0) {
            if (ready < 0) {
                hil_sleep_ms(100); /* a failing select must not spin */
            }
            continue;
        }
        if (!hil_sem_take(server->free_slots, 0)) {
            purge_idle(server);
            if (!hil_sem_take(server->free_slots, SLOT_WAIT_MS)) {
                continue; /* every connection is busy: the client waits in the backlog */
            }
        }
        int fd = accept(server->listener, NULL, NULL); /* the peer address is never used (the shim's is 0.0.0.0) */
        if (fd < 0) {
            hil_sem_give(server->free_slots);
            if (!hil_net_would_block(errno) && errno != ECONNABORTED) {
                hil_log(HIL_LOG_WARN, TAG, "%s: accept errno %d", name, errno);
                hil_sleep_ms(100);
            }
            continue;
        }
        start_connection(server, fd);
    }
}

int hil_http_server_run(uint16_t port)
{
    return run_server(port, 0);
}

int hil_https_server_run(uint16_t port)
{
    return run_server(port, 1);
}
