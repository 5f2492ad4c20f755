/* Plain/TLS connections over BSD sockets: waits are select() timeouts, never SO_RCVTIMEO (a receive
 * timeout on the esp-smoltcp shim returns 0, which reads like the peer closing). */
#define _POSIX_C_SOURCE 200809L
#include "conn.h"

#include <errno.h>
#include <sys/socket.h>

#include "hil_platform.h"
#include "net_util.h"
#include "tls.h"

#define LINGER_DRAIN_MAX_BYTES (1024u * 1024u)

int hil_conn_read(hil_conn_t *c, void *buf, size_t len, uint32_t timeout_ms)
{
    if (c->tls != NULL) {
        return hil_tls_read(c->tls, buf, len, timeout_ms);
    }
    uint32_t deadline = hil_time_ms() + timeout_ms;
    for (;;) {
        int32_t left = (int32_t)(deadline - hil_time_ms());
        int ready = hil_net_wait_readable(c->fd, left > 0 ? (uint32_t)left : 0);
        if (ready < 0) {
            return -1;
        }
        if (ready > 0) {
            ssize_t n = recv(c->fd, buf, len, 0);
            if (n >= 0) {
                return (int)n;
            }
            if (!hil_net_would_block(errno)) {
                return errno == ECONNRESET ? 0 : -1;
            }
        }
        if (left <= 0) {
            return HIL_CONN_TIMEOUT;
        }
    }
}

int hil_conn_read_exact(hil_conn_t *c, void *buf, size_t len, uint32_t timeout_ms)
{
    uint8_t *p = buf;
    uint32_t deadline = hil_time_ms() + timeout_ms;
    while (len > 0) {
        int32_t left = (int32_t)(deadline - hil_time_ms());
        int n = hil_conn_read(c, p, len, left > 0 ? (uint32_t)left : 0);
        if (n <= 0) {
            return n;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int hil_conn_write_all(hil_conn_t *c, const void *buf, size_t len, uint32_t timeout_ms)
{
    if (c->tls != NULL) {
        return hil_tls_write_all(c->tls, buf, len, timeout_ms);
    }
    return hil_net_send_all(c->fd, buf, len, timeout_ms);
}

size_t hil_conn_buffered(const hil_conn_t *c)
{
    return c->tls != NULL ? hil_tls_buffered(c->tls) : 0;
}

void hil_conn_close(hil_conn_t *c, uint32_t linger_ms)
{
    if (c->fd < 0) {
        return;
    }
    if (c->tls != NULL) {
        hil_tls_free(c->tls, 1);
        c->tls = NULL;
    }
    if (linger_ms > 0 && shutdown(c->fd, SHUT_WR) == 0) {
        uint8_t sink[512];
        uint32_t deadline = hil_time_ms() + linger_ms;
        size_t drained = 0;
        for (;;) {
            int32_t left = (int32_t)(deadline - hil_time_ms());
            if (left <= 0 || drained > LINGER_DRAIN_MAX_BYTES || hil_net_wait_readable(c->fd, (uint32_t)left) != 1) {
                break;
            }
            ssize_t n = recv(c->fd, sink, sizeof sink, 0);
            if (n == 0 || (n < 0 && !hil_net_would_block(errno))) {
                break;
            }
            drained += n > 0 ? (size_t)n : 0;
        }
    }
    hil_net_close(c->fd);
    c->fd = -1;
}

void hil_conn_interrupt(int fd)
{
    shutdown(fd, SHUT_RDWR);
}
