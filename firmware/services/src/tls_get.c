/* `tls get <url>`: an HTTPS GET like esp_http_client over esp-tls, verified against the HIL test CA and
 * the URL's host; the body is counted, not kept. Failures carry esp_http_client's error names. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "hil_platform.h"
#include "hil_services.h"
#include "http_codec.h"
#include "net_util.h"
#include "tls.h"

#define TAG "hil_tls_get"
#define TIMEOUT_MS 10000u /* esp_http_client's timeout_ms in hil_app */
#define HEAD_MAX 4096u
#define BUF_BYTES 16384u

/* Reads the body after the head (body_start bytes of it already in buf); returns NULL or the error. */
static const char *read_body(hil_conn_t *conn, const hil_http_response_t *resp, uint8_t *buf, size_t body_start,
                             uint64_t *bytes)
{
    hil_http_chunked_t chunked;
    hil_http_chunked_init(&chunked);
    size_t have = body_start;
    for (;;) {
        if (resp->chunked) {
            const uint8_t *in = buf;
            size_t left = have;
            while (left > 0) {
                const uint8_t *data;
                size_t data_len;
                int rc = hil_http_chunked_step(&chunked, &in, &left, &data, &data_len);
                if (rc < 0) {
                    return "ESP_ERR_HTTP_FETCH_HEADER"; /* a broken chunk framing */
                }
                *bytes += data_len;
                if (rc == 1) {
                    return NULL;
                }
            }
        } else {
            *bytes += have;
            if (resp->has_content_length && *bytes >= resp->content_length) {
                *bytes = resp->content_length; /* anything after the body is not body */
                return NULL;
            }
        }
        int n = hil_conn_read(conn, buf, BUF_BYTES, TIMEOUT_MS);
        if (n == HIL_CONN_TIMEOUT) {
            return "ESP_ERR_HTTP_EAGAIN";
        }
        if (n <= 0) {
            /* Without a length or chunks the body ends with the connection. */
            return resp->has_content_length || resp->chunked ? "ESP_ERR_HTTP_INCOMPLETE_DATA" : NULL;
        }
        have = (size_t)n;
    }
}

/* Connects, sends the request and reads the response into result; returns NULL or the error. */
static const char *fetch(const hil_url_t *url, uint8_t *buf, hil_tls_get_result_t *result)
{
    char why[120];
    uint16_t port = url->port ? url->port : 443;
    hil_conn_t conn = {.fd = hil_net_connect_tcp(url->host, port, TIMEOUT_MS, why, sizeof why), .tls = NULL};
    if (conn.fd < 0 || hil_tls_connect(&conn, url->host, TIMEOUT_MS, why, sizeof why) != 0) {
        /* esp_http_client reports a refused connection, a failed handshake and a bad host name alike. */
        hil_log(HIL_LOG_WARN, TAG, "%s:%u: %s", url->host, (unsigned)port, why);
        hil_conn_close(&conn, 0);
        return "ESP_ERR_HTTP_CONNECT";
    }
    char request[512];
    int n = snprintf(request, sizeof request,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: hil-services\r\nConnection: close\r\n\r\n", url->path,
                     url->host);
    const char *error = NULL;
    if (n < 0 || (size_t)n >= sizeof request) {
        error = "ESP_ERR_INVALID_ARG";
    } else if (hil_conn_write_all(&conn, request, (size_t)n, TIMEOUT_MS) != 0) {
        error = "ESP_ERR_HTTP_WRITE_DATA";
    }
    size_t have = 0;
    hil_http_response_t resp;
    int head_len = 0;
    while (error == NULL && (head_len = hil_http_parse_response((const char *)buf, have, HEAD_MAX, &resp)) == 0) {
        int got = hil_conn_read(&conn, buf + have, BUF_BYTES - have, TIMEOUT_MS);
        if (got <= 0) {
            error = got == HIL_CONN_TIMEOUT ? "ESP_ERR_HTTP_EAGAIN" : "ESP_ERR_HTTP_FETCH_HEADER";
        }
        have += got > 0 ? (size_t)got : 0;
    }
    if (error == NULL && head_len < 0) {
        error = "ESP_ERR_HTTP_FETCH_HEADER";
    }
    if (error == NULL) {
        result->status = resp.status;
        memmove(buf, buf + head_len, have - (size_t)head_len);
        error = read_body(&conn, &resp, buf, have - (size_t)head_len, &result->bytes);
    }
    hil_conn_close(&conn, 0);
    return error;
}

int hil_tls_get(const char *url, hil_tls_get_result_t *result)
{
    memset(result, 0, sizeof *result);
    uint64_t started = hil_time_us();
    hil_url_t parts;
    uint8_t *buf = NULL;
    if (hil_url_parse(url, &parts) != 0 || strcmp(parts.scheme, "https") != 0) {
        result->error = "ESP_ERR_INVALID_ARG";
    } else if (!hil_tls_client_ready()) {
        result->error = "ESP_ERR_INVALID_STATE"; /* no CA to verify against */
    } else if ((buf = malloc(BUF_BYTES)) == NULL) {
        result->error = "ESP_ERR_NO_MEM";
    } else {
        result->error = fetch(&parts, buf, result);
    }
    free(buf);
    result->duration_ms = (uint32_t)((hil_time_us() - started) / 1000u);
    return result->error == NULL ? 0 : -1;
}
