/* HTTP (80) and HTTPS (443) with the same endpoints: /dl/<n>, /ul, /stats, /ws (PROTOCOL.md). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "esp_http_server.h"
#include "esp_https_server.h"
#include "esp_log.h"
#include "esp_timer.h"
#include "hil_app.h"

#define DL_MAX_BYTES 1000000000000ULL
#define DL_CHUNK 16384    /* a multiple of 256, so the i mod 256 pattern runs on across chunks */
#define DL_HTTP_CHUNK 8192 /* chunk size of the Transfer-Encoding: chunked variant */
#define WS_MAX_MESSAGE 16384

static const char *TAG = "hil_http";
static uint8_t pattern[DL_CHUNK];
static uint8_t discard[4096]; /* upload bodies land here; contents never read */

static esp_err_t send_all(httpd_req_t *req, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        int sent = httpd_send(req, p, len);
        if (sent == HTTPD_SOCK_ERR_TIMEOUT) {
            continue;
        }
        if (sent <= 0) {
            return ESP_FAIL; /* returning ESP_FAIL from the handler closes the socket */
        }
        p += sent;
        len -= (size_t)sent;
    }
    return ESP_OK;
}

static esp_err_t dl_handler(httpd_req_t *req)
{
    const char *number = req->uri + strlen("/dl/");
    char *end = NULL;
    errno = 0;
    unsigned long long total = strtoull(number, &end, 10);
    if (end == number || (*end && *end != '?') || errno || total > DL_MAX_BYTES) {
        return httpd_resp_send_err(req, HTTPD_400_BAD_REQUEST, "expected /dl/<bytes>, 0..10^12");
    }
    char value[8];
    bool chunked = false;
    size_t query_len = httpd_req_get_url_query_len(req);
    if (query_len) {
        char query[64];
        if (query_len < sizeof query && httpd_req_get_url_query_str(req, query, sizeof query) == ESP_OK &&
            httpd_query_key_value(query, "chunked", value, sizeof value) == ESP_OK) {
            chunked = strcmp(value, "1") == 0;
        }
    }
    if (chunked) {
        httpd_resp_set_type(req, "application/octet-stream");
        while (total) {
            size_t n = total < DL_HTTP_CHUNK ? (size_t)total : DL_HTTP_CHUNK;
            if (httpd_resp_send_chunk(req, (const char *)pattern, n) != ESP_OK) {
                return ESP_FAIL;
            }
            total -= n;
        }
        return httpd_resp_send_chunk(req, NULL, 0);
    }
    /* Streamed with a Content-Length: httpd_resp_send() would need the whole body in memory, and
     * httpd_resp_send_chunk() forces chunked encoding, so the head is written by hand. */
    char head[160];
    int head_len = snprintf(head, sizeof head,
                            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %llu\r\n\r\n",
                            total);
    if (send_all(req, head, (size_t)head_len) != ESP_OK) {
        return ESP_FAIL;
    }
    while (total) {
        size_t n = total < DL_CHUNK ? (size_t)total : DL_CHUNK;
        if (send_all(req, pattern, n) != ESP_OK) {
            return ESP_FAIL;
        }
        total -= n;
    }
    return ESP_OK;
}

static esp_err_t ul_handler(httpd_req_t *req)
{
    size_t remaining = req->content_len;
    uint64_t received = 0;
    int64_t first_us = 0, last_us = 0;
    while (remaining) {
        int n = httpd_req_recv(req, (char *)discard, remaining < sizeof discard ? remaining : sizeof discard);
        if (n == HTTPD_SOCK_ERR_TIMEOUT) {
            continue;
        }
        if (n <= 0) {
            return ESP_FAIL;
        }
        last_us = esp_timer_get_time();
        if (!received) {
            first_us = last_us;
        }
        received += (uint64_t)n;
        remaining -= (size_t)n;
    }
    char body[96];
    snprintf(body, sizeof body, "{\"bytes\":%" PRIu64 ",\"duration_us\":%" PRId64 "}", received, last_us - first_us);
    httpd_resp_set_type(req, "application/json");
    return httpd_resp_sendstr(req, body);
}

static esp_err_t stats_handler(httpd_req_t *req)
{
    char body[768];
    if (hil_stats_object(body, sizeof body, "http") < 0) {
        return httpd_resp_send_err(req, HTTPD_500_INTERNAL_SERVER_ERROR, "stats too long");
    }
    httpd_resp_set_type(req, "application/json");
    return httpd_resp_sendstr(req, body);
}

static esp_err_t ws_handler(httpd_req_t *req)
{
    if (req->method == HTTP_GET) {
        return ESP_OK; /* the handshake; frames follow */
    }
    httpd_ws_frame_t frame = {0};
    esp_err_t err = httpd_ws_recv_frame(req, &frame, 0); /* len only */
    if (err != ESP_OK) {
        return err;
    }
    if (frame.len > WS_MAX_MESSAGE) {
        static const uint8_t too_big[2] = {0x03, 0xF1}; /* close status 1009 */
        httpd_ws_frame_t close = {.type = HTTPD_WS_TYPE_CLOSE, .final = true, .payload = (uint8_t *)too_big, .len = 2};
        httpd_ws_send_frame(req, &close);
        return ESP_FAIL;
    }
    uint8_t *buf = NULL;
    if (frame.len) {
        buf = malloc(frame.len);
        if (!buf) {
            return ESP_ERR_NO_MEM;
        }
        frame.payload = buf;
        err = httpd_ws_recv_frame(req, &frame, frame.len);
    }
    if (err == ESP_OK) {
        /* Same opcode; fragments go back as fragments. */
        frame.fragmented = !frame.final || frame.type == HTTPD_WS_TYPE_CONTINUE;
        err = httpd_ws_send_frame(req, &frame);
    }
    free(buf);
    return err;
}

static const httpd_uri_t routes[] = {
    {.uri = "/dl/*", .method = HTTP_GET, .handler = dl_handler},
    {.uri = "/ul", .method = HTTP_POST, .handler = ul_handler},
    {.uri = "/stats", .method = HTTP_GET, .handler = stats_handler},
    {.uri = "/ws", .method = HTTP_GET, .handler = ws_handler, .is_websocket = true},
};

#define HTTP_TASK_STACK 8192 /* the plain server's default (4096) is tight for the handlers' buffers */

static void tune(httpd_config_t *config, uint16_t ctrl_port)
{
    config->uri_match_fn = httpd_uri_match_wildcard;
    config->ctrl_port = ctrl_port; /* two servers: distinct loopback control ports */
    config->max_open_sockets = 4;
    /* Each listen() makes the shim pre-arm min(backlog, CONFIG_LWIP_COMPAT_LISTENER_POOL) sockets. */
    config->backlog_conn = 2;
    /* A fifth client closes the least recently used session. Through the shim that purge must not
     * travel the control socket (its recv() never reads the in-RAM loopback): sdkconfig.defaults sets
     * CONFIG_HTTPD_QUEUE_WORK_BLOCKING, with which esp_http_server >= v5.5.3 closes it directly. */
    config->lru_purge_enable = true;
    /* Never below the default: HTTPD_SSL_CONFIG_DEFAULT gives the TLS server 10240 for mbedTLS. */
    if (config->stack_size < HTTP_TASK_STACK) {
        config->stack_size = HTTP_TASK_STACK;
    }
    config->max_uri_handlers = sizeof routes / sizeof routes[0];
}

static esp_err_t register_routes(httpd_handle_t server)
{
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        esp_err_t err = httpd_register_uri_handler(server, &routes[i]);
        if (err != ESP_OK) {
            return err;
        }
    }
    return ESP_OK;
}

esp_err_t hil_http_start(void)
{
    for (size_t i = 0; i < sizeof pattern; i++) {
        pattern[i] = (uint8_t)(i & 0xff);
    }
    httpd_handle_t http = NULL;
    httpd_config_t config = HTTPD_DEFAULT_CONFIG();
    config.server_port = HIL_PORT_HTTP;
    tune(&config, ESP_HTTPD_DEF_CTRL_PORT);
    esp_err_t err = httpd_start(&http, &config);
    if (err == ESP_OK) {
        err = register_routes(http);
    }
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "HTTP server on port %d: %s", HIL_PORT_HTTP, esp_err_to_name(err));
        return err;
    }

    httpd_handle_t https = NULL;
    httpd_ssl_config_t ssl = HTTPD_SSL_CONFIG_DEFAULT();
    tune(&ssl.httpd, ESP_HTTPD_DEF_CTRL_PORT + 1);
    ssl.port_secure = HIL_PORT_HTTPS;
    ssl.servercert = (const uint8_t *)dut_server_crt_start;
    ssl.servercert_len = (size_t)(dut_server_crt_end - dut_server_crt_start);
    ssl.prvtkey_pem = (const uint8_t *)dut_server_key_start;
    ssl.prvtkey_len = (size_t)(dut_server_key_end - dut_server_key_start);
    err = httpd_ssl_start(&https, &ssl);
    if (err == ESP_OK) {
        err = register_routes(https);
    }
    if (err != ESP_OK) {
        ESP_LOGE(TAG, "HTTPS server on port %d: %s", HIL_PORT_HTTPS, esp_err_to_name(err));
    }
    return err;
}
