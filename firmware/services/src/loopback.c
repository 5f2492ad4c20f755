/* `loopback`: the self-check of the in-RAM 127.0.0.0/8 path (PROTOCOL.md), the path esp_http_server's
 * control socket takes on the board: datagrams from an unbound UDP socket to one bound to 127.0.0.1. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "hil_platform.h"
#include "hil_services.h"
#include "net_util.h"

#define DATAGRAMS 16
#define MAX_SIZE 1472
#define RECV_TIMEOUT_MS 1000u

/* Datagram i: 1 + i * 1471 / 15 bytes (1 .. 1472), byte k = (i + k) mod 256. */
static size_t fill(uint8_t *buf, int index)
{
    size_t size = 1 + (size_t)index * (MAX_SIZE - 1) / (DATAGRAMS - 1);
    for (size_t k = 0; k < size; k++) {
        buf[k] = (uint8_t)((size_t)index + k);
    }
    return size;
}

/* The receiving socket, bound to 127.0.0.1:port (0: the stack picks); -1 with error set. */
static int bind_receiver(uint16_t port, struct sockaddr_in *self, hil_loopback_result_t *result)
{
    memset(self, 0, sizeof *self);
    self->sin_family = AF_INET;
    self->sin_port = htons(port);
    self->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t self_len = sizeof *self;
    int fd = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP);
    /* A read that finds nothing gives up like the readiness wait does: a shim whose recv() does not read the
     * loopback queue (fault shim_loopback_recv_ignored) costs a second per datagram, not its 30 s default. */
    struct timeval recv_timeout = {.tv_sec = RECV_TIMEOUT_MS / 1000u, .tv_usec = (RECV_TIMEOUT_MS % 1000u) * 1000u};
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &recv_timeout, sizeof recv_timeout) != 0 ||
        bind(fd, (struct sockaddr *)self, sizeof *self) != 0 ||
        getsockname(fd, (struct sockaddr *)self, &self_len) != 0) {
        snprintf(result->error, sizeof result->error, "socket failed: bind 127.0.0.1:%u: errno %d", (unsigned)port,
                 errno);
        hil_net_close(fd);
        return -1;
    }
    result->port = ntohs(self->sin_port);
    return fd;
}

int hil_loopback_check(hil_loopback_mode_t mode, hil_loopback_result_t *result)
{
    memset(result, 0, sizeof *result);
    uint64_t started = hil_time_us();
    struct sockaddr_in self;
    int receiver = bind_receiver(mode == HIL_LOOPBACK_EPHEMERAL ? 0 : HIL_LOOPBACK_PORT, &self, result);
    if (receiver < 0) {
        return -1;
    }
    int sender = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP);
    if (sender < 0) {
        snprintf(result->error, sizeof result->error, "socket failed: errno %d", errno);
        hil_net_close(receiver);
        return -1;
    }
    static uint8_t sent[MAX_SIZE];
    static uint8_t got[MAX_SIZE + 1];
    result->sent = DATAGRAMS;
    for (int i = 0; i < DATAGRAMS; i++) {
        size_t size = fill(sent, i);
        if (sendto(sender, sent, size, 0, (struct sockaddr *)&self, sizeof self) != (ssize_t)size ||
            hil_net_wait_readable(receiver, RECV_TIMEOUT_MS) != 1) {
            continue;
        }
        struct sockaddr_in from;
        socklen_t from_len = sizeof from;
        ssize_t n = mode == HIL_LOOPBACK_RECV ? recv(receiver, got, sizeof got, 0)
                                              : recvfrom(receiver, got, sizeof got, 0, (struct sockaddr *)&from,
                                                         &from_len);
        if (n <= 0) {
            continue;
        }
        result->received++;
        result->bytes += (uint64_t)n;
        result->altered += (size_t)n != size || memcmp(sent, got, size) != 0;
    }
    hil_net_close(sender);
    hil_net_close(receiver);
    result->duration_us = hil_time_us() - started;
    if (result->received < DATAGRAMS) {
        snprintf(result->error, sizeof result->error, "lost %d of %d datagrams (read with %s)",
                 DATAGRAMS - result->received, DATAGRAMS, mode == HIL_LOOPBACK_RECV ? "recv" : "recvfrom");
    } else if (result->altered > 0) {
        snprintf(result->error, sizeof result->error, "%d of %d datagrams came back altered", result->altered,
                 DATAGRAMS);
    }
    return result->error[0] == '\0' ? 0 : -1;
}
