/* The shim's in-RAM 127.0.0.0/8 UDP loopback: see loopback.h. Poll thread only. */
#include "loopback.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define QUEUE_DEPTH 16 /* datagrams a binding holds, like a smoltcp UDP socket's packet buffer */
#define EPHEMERAL_FIRST 49152u

typedef struct message {
    struct message *next;
    uint16_t src_port;
    size_t len;
    uint8_t data[];
} message_t;

typedef struct binding {
    struct binding *next;
    uint16_t port;
    int queued;
    message_t *head, *tail;
} binding_t;

static binding_t *bindings;
static uint16_t next_ephemeral = EPHEMERAL_FIRST;

bool hil_lo_is_loopback(uint32_t ip)
{
    return (ntohl(ip) >> 24) == 127;
}

static binding_t *find(uint16_t port)
{
    for (binding_t *lo = bindings; lo != NULL; lo = lo->next) {
        if (lo->port == port) {
            return lo;
        }
    }
    return NULL;
}

static int free_port(uint16_t *port)
{
    for (unsigned tries = 0; tries <= 65535u - EPHEMERAL_FIRST; tries++) {
        uint16_t candidate = next_ephemeral;
        next_ephemeral = candidate == 65535u ? EPHEMERAL_FIRST : (uint16_t)(candidate + 1);
        if (find(candidate) == NULL) {
            *port = candidate;
            return 0;
        }
    }
    return -EADDRINUSE;
}

int hil_lo_bind(uint16_t port)
{
    if (port == 0 && free_port(&port) != 0) {
        return -EADDRINUSE;
    }
    if (find(port) != NULL) {
        return -EADDRINUSE;
    }
    binding_t *lo = calloc(1, sizeof *lo);
    if (lo == NULL) {
        return -ENOMEM;
    }
    lo->port = port;
    lo->next = bindings;
    bindings = lo;
    return port;
}

void hil_lo_close(uint16_t port)
{
    for (binding_t **p = &bindings; *p != NULL; p = &(*p)->next) {
        binding_t *lo = *p;
        if (lo->port == port) {
            *p = lo->next;
            while (lo->head != NULL) {
                message_t *m = lo->head;
                lo->head = m->next;
                free(m);
            }
            free(lo);
            return;
        }
    }
}

int64_t hil_lo_send(uint16_t dst_port, uint16_t src_port, const uint8_t *data, size_t len)
{
    binding_t *lo = find(dst_port);
    if (lo == NULL || lo->queued == QUEUE_DEPTH) {
        return (int64_t)len;
    }
    message_t *m = malloc(sizeof *m + len);
    if (m == NULL) {
        return -ENOMEM;
    }
    *m = (message_t){.src_port = src_port, .len = len};
    memcpy(m->data, data, len);
    if (lo->tail != NULL) {
        lo->tail->next = m;
    } else {
        lo->head = m;
    }
    lo->tail = m;
    lo->queued++;
    return (int64_t)len;
}

int64_t hil_lo_recv(uint16_t port, uint8_t *buf, size_t len, bool peek, hs_recv_info_t *info)
{
    binding_t *lo = find(port);
    if (lo == NULL) {
        return -EBADF;
    }
    message_t *m = lo->head;
    if (m == NULL) {
        return -EAGAIN;
    }
    size_t copied = m->len < len ? m->len : len;
    memcpy(buf, m->data, copied);
    *info = (hs_recv_info_t){.full_len = m->len, .addr = htonl(INADDR_LOOPBACK), .port = m->src_port};
    if (!peek) {
        lo->head = m->next;
        if (lo->head == NULL) {
            lo->tail = NULL;
        }
        lo->queued--;
        free(m);
    }
    return (int64_t)copied;
}

int hil_lo_readable(uint16_t port)
{
    const binding_t *lo = find(port);
    return lo == NULL ? -EBADF : lo->head != NULL;
}

int64_t hil_lo_next_len(uint16_t port)
{
    const binding_t *lo = find(port);
    return lo == NULL ? -EBADF : lo->head != NULL ? (int64_t)lo->head->len : 0;
}
