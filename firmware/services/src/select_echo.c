/*
 * The select() echo service: ONE thread, ONE select() loop over the TCP listener, every TCP client
 * and a few UDP sockets. It is meant to exercise the socket layer's select scan with a mixed set.
 * A TCP client whose echo cannot be written at once keeps its unsent bytes; the loop then waits for
 * the socket to become writable and stops reading from it until the backlog is gone (no unbounded
 * buffering, no blocking of the other clients).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "hil_platform.h"
#include "hil_services.h"
#include "net_util.h"

#define SLOT_FREE (-1)
#define SLOT_LEAKED (-2) /* fault socket_slot_leak: closed, but never handed out again */

typedef struct {
    int fd;          /* SLOT_FREE, SLOT_LEAKED or the client's socket */
    uint8_t *buf;    /* HIL_ECHO_BUF_BYTES, allocated while the client is connected */
    size_t pending;  /* bytes in buf not yet echoed */
    size_t sent;     /* bytes of buf already echoed */
} echo_client_t;

static hil_mutex_t *stats_lock;
static hil_select_echo_stats_t stats;
static hil_select_echo_faults_t faults;

void hil_select_echo_set_faults(const hil_select_echo_faults_t *f)
{
    faults = *f;
}

static void stats_update_max_fd(int fd)
{
    if (fd > stats.max_fd) {
        stats.max_fd = fd;
    }
}

void hil_select_echo_get_stats(hil_select_echo_stats_t *out)
{
    if (stats_lock == NULL) {
        memset(out, 0, sizeof *out);
        return;
    }
    hil_mutex_lock(stats_lock);
    *out = stats;
    hil_mutex_unlock(stats_lock);
}

int hil_select_echo_format_stats(char *buf, size_t len, const hil_select_echo_stats_t *s)
{
    int n = snprintf(buf, len,
                     "\"open_tcp_clients\":%" PRIu32 ",\"udp_sockets\":%" PRIu32 ",\"accepted\":%" PRIu32
                     ",\"closed\":%" PRIu32 ",\"rejected\":%" PRIu32 ",\"tcp_echoed_bytes\":%" PRIu64
                     ",\"udp_echoed_bytes\":%" PRIu64 ",\"udp_datagrams\":%" PRIu32 ",\"max_fd\":%" PRId32
                     ",\"select_calls\":%" PRIu32 ",\"errors\":%" PRIu32 ",\"max_clients\":%d",
                     s->open_tcp_clients, s->udp_sockets, s->accepted, s->closed, s->rejected, s->tcp_echoed_bytes,
                     s->udp_echoed_bytes, s->udp_datagrams, s->max_fd, s->select_calls, s->errors,
                     HIL_SELECT_ECHO_MAX_CLIENTS);
    return (n < 0 || (size_t)n >= len) ? -1 : n;
}

static void close_client(echo_client_t *c, int is_error)
{
    hil_net_close(c->fd);
    free(c->buf);
    c->fd = faults.slot_leak_after > 0 ? SLOT_LEAKED : SLOT_FREE;
    c->buf = NULL;
    c->pending = 0;
    c->sent = 0;
    hil_mutex_lock(stats_lock);
    stats.open_tcp_clients--;
    stats.closed++;
    if (is_error) {
        stats.errors++;
    }
    hil_mutex_unlock(stats_lock);
}

static void accept_client(int listener, echo_client_t *clients)
{
    int fd = accept(listener, NULL, NULL);
    if (fd < 0) {
        if (!hil_net_would_block(errno) && errno != ECONNABORTED) {
            hil_mutex_lock(stats_lock);
            stats.errors++;
            hil_mutex_unlock(stats_lock);
        }
        return;
    }
    echo_client_t *slot = NULL;
    int slots = HIL_SELECT_ECHO_MAX_CLIENTS;
    if (faults.slot_leak_after > 0 && faults.slot_leak_after < slots) {
        slots = faults.slot_leak_after;
    }
    for (int i = 0; i < slots; i++) {
        if (clients[i].fd == SLOT_FREE) {
            slot = &clients[i];
            break;
        }
    }
    /* An fd beyond FD_SETSIZE cannot be put in an fd_set: refuse it like a full table. */
    uint8_t *buf = (slot != NULL && fd < FD_SETSIZE) ? malloc(HIL_ECHO_BUF_BYTES) : NULL;
    hil_mutex_lock(stats_lock);
    stats.accepted++;
    stats_update_max_fd(fd);
    if (buf == NULL) {
        stats.rejected++;
        stats.closed++;
    } else {
        stats.open_tcp_clients++;
    }
    hil_mutex_unlock(stats_lock);
    if (buf == NULL) {
        hil_net_close(fd);
        return;
    }
    hil_net_set_nonblocking(fd);
    slot->fd = fd;
    slot->buf = buf;
    slot->pending = 0;
    slot->sent = 0;
}

/* Echo what is pending; returns -1 when the connection failed. */
static int flush_client(echo_client_t *c)
{
    while (c->pending > 0) {
        /* send(), never sendto(): the shim rejects sendto on TCP sockets with EBADF. */
        ssize_t n = send(c->fd, c->buf + c->sent, c->pending, 0);
        if (n < 0) {
            return hil_net_would_block(errno) ? 0 : -1;
        }
        c->sent += (size_t)n;
        c->pending -= (size_t)n;
        hil_mutex_lock(stats_lock);
        stats.tcp_echoed_bytes += (uint64_t)n;
        hil_mutex_unlock(stats_lock);
    }
    c->sent = 0;
    return 0;
}

static void serve_client(echo_client_t *c)
{
    ssize_t n = recv(c->fd, c->buf, HIL_ECHO_BUF_BYTES, 0);
    if (n == 0) {
        close_client(c, 0);
        return;
    }
    if (n < 0) {
        if (!hil_net_would_block(errno)) {
            close_client(c, errno != ECONNRESET);
        }
        return;
    }
    c->pending = (size_t)n;
    c->sent = 0;
    if (flush_client(c) != 0) {
        close_client(c, errno != ECONNRESET && errno != EPIPE);
    }
}

static void serve_udp(int fd, uint8_t *buf)
{
    struct sockaddr_in peer;
    socklen_t peer_len = sizeof peer;
    ssize_t n = recvfrom(fd, buf, HIL_ECHO_BUF_BYTES, 0, (struct sockaddr *)&peer, &peer_len);
    if (n < 0) {
        if (!hil_net_would_block(errno)) {
            hil_mutex_lock(stats_lock);
            stats.errors++;
            hil_mutex_unlock(stats_lock);
        }
        return;
    }
    ssize_t sent = sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&peer, peer_len);
    hil_mutex_lock(stats_lock);
    if (sent == n) {
        stats.udp_echoed_bytes += (uint64_t)n;
        stats.udp_datagrams++;
    } else {
        stats.errors++;
    }
    hil_mutex_unlock(stats_lock);
}

int hil_select_echo_run(uint16_t tcp_port, uint16_t udp_port_base, int udp_count)
{
    if (udp_count < 0 || udp_count > HIL_SELECT_ECHO_MAX_UDP) {
        hil_log(HIL_LOG_ERROR, HIL_SVC_TAG, "select echo: udp_count %d out of range 0..%d", udp_count,
                HIL_SELECT_ECHO_MAX_UDP);
        return -1;
    }
    if (stats_lock == NULL && (stats_lock = hil_mutex_create()) == NULL) {
        return -1;
    }
    int udp_fds[HIL_SELECT_ECHO_MAX_UDP];
    uint16_t udp_ports[HIL_SELECT_ECHO_MAX_UDP];
    uint16_t bound_tcp = 0;
    int listener = hil_net_listen_tcp(tcp_port, 8, &bound_tcp);
    if (listener < 0) {
        return -1;
    }
    hil_net_set_nonblocking(listener);
    for (int i = 0; i < udp_count; i++) {
        uint16_t want = udp_port_base == 0 ? 0 : (uint16_t)(udp_port_base + i);
        udp_fds[i] = hil_net_bind_udp(want, &udp_ports[i]);
        if (udp_fds[i] < 0) {
            for (int j = 0; j < i; j++) {
                hil_net_close(udp_fds[j]);
            }
            hil_net_close(listener);
            return -1;
        }
    }
    echo_client_t *clients = calloc(HIL_SELECT_ECHO_MAX_CLIENTS, sizeof *clients);
    uint8_t *udp_buf = malloc(HIL_ECHO_BUF_BYTES);
    if (clients == NULL || udp_buf == NULL) {
        hil_log(HIL_LOG_ERROR, HIL_SVC_TAG, "select echo: out of memory");
        free(clients);
        free(udp_buf);
        for (int i = 0; i < udp_count; i++) {
            hil_net_close(udp_fds[i]);
        }
        hil_net_close(listener);
        return -1;
    }
    for (int i = 0; i < HIL_SELECT_ECHO_MAX_CLIENTS; i++) {
        clients[i].fd = SLOT_FREE;
    }
    hil_mutex_lock(stats_lock);
    stats.udp_sockets = (uint32_t)udp_count;
    stats_update_max_fd(listener);
    for (int i = 0; i < udp_count; i++) {
        stats_update_max_fd(udp_fds[i]);
    }
    hil_mutex_unlock(stats_lock);
    hil_log(HIL_LOG_INFO, HIL_SVC_TAG, "select echo: tcp %u, udp %u x %d", (unsigned)bound_tcp,
            udp_count ? (unsigned)udp_ports[0] : 0u, udp_count);
    hil_services_notify_ready("select_echo", &bound_tcp, 1, udp_ports, udp_count);

    for (;;) {
        fd_set readable;
        fd_set writable;
        FD_ZERO(&readable);
        FD_ZERO(&writable);
        int max_fd = listener;
        FD_SET(listener, &readable);
        for (int i = 0; i < udp_count; i++) {
            FD_SET(udp_fds[i], &readable);
            max_fd = udp_fds[i] > max_fd ? udp_fds[i] : max_fd;
        }
        for (int i = 0; i < HIL_SELECT_ECHO_MAX_CLIENTS; i++) {
            if (clients[i].fd < 0) {
                continue;
            }
            /* A client with unsent echo waits for room before we read more from it. */
            FD_SET(clients[i].fd, clients[i].pending > 0 ? &writable : &readable);
            max_fd = clients[i].fd > max_fd ? clients[i].fd : max_fd;
        }
        /* A timeout keeps the loop alive on stacks whose select misses an event. */
        struct timeval tv = {.tv_sec = 1, .tv_usec = 0};
        int ready = select(max_fd + 1, &readable, &writable, NULL, &tv);
        hil_mutex_lock(stats_lock);
        stats.select_calls++;
        if (ready < 0 && errno != EINTR) {
            stats.errors++;
        }
        hil_mutex_unlock(stats_lock);
        if (ready <= 0) {
            if (ready < 0 && errno != EINTR) {
                hil_sleep_ms(10); /* do not spin if select itself keeps failing */
            }
            continue;
        }
        if (faults.udp_never_readable) {
            for (int i = 0; i < udp_count; i++) {
                FD_CLR(udp_fds[i], &readable);
            }
        }
        for (int i = 0; i < HIL_SELECT_ECHO_MAX_CLIENTS; i++) {
            echo_client_t *c = &clients[i];
            if (c->fd < 0) {
                continue;
            }
            if (FD_ISSET(c->fd, &writable)) {
                if (flush_client(c) != 0) {
                    close_client(c, errno != ECONNRESET && errno != EPIPE);
                }
            } else if (FD_ISSET(c->fd, &readable)) {
                serve_client(c);
            }
        }
        for (int i = 0; i < udp_count; i++) {
            if (FD_ISSET(udp_fds[i], &readable)) {
                serve_udp(udp_fds[i], udp_buf);
            }
        }
        if (FD_ISSET(listener, &readable)) {
            accept_client(listener, clients);
        }
    }
}
