/* The shim's in-RAM UDP loopback: see loopback.h. */
#define _GNU_SOURCE
#include "loopback.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "netstack.h"

/* A bound descriptor's queue, like a smoltcp UDP socket's buffers (the board's 16 datagrams, 4 KiB). */
#define QUEUE_DATAGRAMS 16
#define QUEUE_BYTES 4096
#define MAX_DATAGRAM 1472
#define EPHEMERAL_FIRST 49152

typedef struct {
    uint16_t len;
    uint16_t from_port;
    uint8_t *data;
} datagram_t;

typedef struct {
    uint16_t port; /* 0: not bound to the loopback */
    datagram_t queue[QUEUE_DATAGRAMS];
    unsigned head, count;
    size_t bytes;
} loop_fd_t;

static struct {
    loop_fd_t *fds;
    int base, count;
    uint16_t next_port;
    pthread_mutex_t lock;
} loop = {.lock = PTHREAD_MUTEX_INITIALIZER, .next_port = EPHEMERAL_FIRST};

int hil_loop_init(int fd_base, int fd_count)
{
    loop.fds = calloc((size_t)fd_count, sizeof *loop.fds);
    loop.base = fd_base;
    loop.count = fd_count;
    return loop.fds == NULL ? -1 : 0;
}

bool hil_loop_addr(uint32_t ip_be)
{
    return (ntohl(ip_be) >> 24) == 127;
}

static loop_fd_t *slot(int fd)
{
    return fd >= loop.base && fd < loop.base + loop.count ? &loop.fds[fd - loop.base] : NULL;
}

static loop_fd_t *bound_to(uint16_t port)
{
    for (int i = 0; i < loop.count; i++) {
        if (loop.fds[i].port == port) {
            return &loop.fds[i];
        }
    }
    return NULL;
}

static int bind_locked(loop_fd_t *s, uint16_t port)
{
    if (s->port != 0) {
        return -EINVAL;
    }
    for (int tries = 0; port == 0 && tries < 65536 - EPHEMERAL_FIRST; tries++) {
        uint16_t candidate = loop.next_port;
        loop.next_port = candidate == 65535 ? EPHEMERAL_FIRST : candidate + 1;
        port = bound_to(candidate) == NULL ? candidate : 0;
    }
    if (port == 0 || bound_to(port) != NULL) {
        return -EADDRINUSE;
    }
    s->port = port;
    return 0;
}

int hil_loop_bind(int fd, uint16_t port)
{
    loop_fd_t *s = slot(fd);
    if (s == NULL) {
        return -EBADF;
    }
    pthread_mutex_lock(&loop.lock);
    int rc = bind_locked(s, port);
    pthread_mutex_unlock(&loop.lock);
    return rc;
}

uint16_t hil_loop_port(int fd)
{
    loop_fd_t *s = slot(fd);
    pthread_mutex_lock(&loop.lock);
    uint16_t port = s ? s->port : 0;
    pthread_mutex_unlock(&loop.lock);
    return port;
}

int64_t hil_loop_send(int fd, uint16_t to_port, const void *buf, size_t len)
{
    loop_fd_t *s = slot(fd);
    if (s == NULL) {
        return -EBADF;
    }
    if (len > MAX_DATAGRAM) {
        return -EMSGSIZE;
    }
    pthread_mutex_lock(&loop.lock);
    int64_t rc = s->port != 0 ? 0 : bind_locked(s, 0); /* an unbound sender gets a port, as Linux does */
    loop_fd_t *to = rc == 0 ? bound_to(to_port) : NULL;
    uint8_t *copy = to != NULL ? malloc(len ? len : 1) : NULL;
    if (rc != 0) {
        /* keep the bind error */
    } else if (to == NULL) {
        rc = -ECONNREFUSED;
    } else if (copy == NULL || to->count == QUEUE_DATAGRAMS || to->bytes + len > QUEUE_BYTES) {
        rc = (int64_t)len; /* a full queue drops the datagram, as a full UDP buffer does */
        free(copy);
    } else {
        memcpy(copy, buf, len);
        to->queue[(to->head + to->count) % QUEUE_DATAGRAMS] =
            (datagram_t){.len = (uint16_t)len, .from_port = s->port, .data = copy};
        to->count++;
        to->bytes += len;
        rc = (int64_t)len;
    }
    pthread_mutex_unlock(&loop.lock);
    if (to != NULL) {
        hil_net_kick(); /* a reader waiting in recv/select/poll looks again */
    }
    return rc;
}

int64_t hil_loop_recv(int fd, void *buf, size_t len, bool peek, size_t *full_len, uint16_t *from_port)
{
    loop_fd_t *s = slot(fd);
    if (s == NULL) {
        return -EBADF;
    }
    pthread_mutex_lock(&loop.lock);
    if (s->count == 0) {
        pthread_mutex_unlock(&loop.lock);
        return -EAGAIN;
    }
    datagram_t d = s->queue[s->head];
    size_t copied = d.len < len ? d.len : len;
    memcpy(buf, d.data, copied);
    *full_len = d.len;
    *from_port = d.from_port;
    if (!peek) {
        free(d.data);
        s->head = (s->head + 1) % QUEUE_DATAGRAMS;
        s->count--;
        s->bytes -= d.len;
    }
    pthread_mutex_unlock(&loop.lock);
    return (int64_t)copied;
}

bool hil_loop_readable(int fd)
{
    loop_fd_t *s = slot(fd);
    pthread_mutex_lock(&loop.lock);
    bool readable = s != NULL && s->count > 0;
    pthread_mutex_unlock(&loop.lock);
    return readable;
}

void hil_loop_close(int fd)
{
    loop_fd_t *s = slot(fd);
    if (s == NULL) {
        return;
    }
    pthread_mutex_lock(&loop.lock);
    while (s->count > 0) {
        free(s->queue[s->head].data);
        s->head = (s->head + 1) % QUEUE_DATAGRAMS;
        s->count--;
    }
    *s = (loop_fd_t){0};
    pthread_mutex_unlock(&loop.lock);
}
