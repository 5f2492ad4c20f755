/* `loopback`: the self-check of the in-RAM 127.0.0.0/8 path (PROTOCOL.md), the path esp_http_server's
 * control socket takes on the board: datagrams from a UDP socket bound to 127.0.0.1 to itself. */
#define _POSIX_C_SOURCE 200809L
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

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

int hil_loopback_check(hil_loopback_result_t *result)
{
    memset(result, 0, sizeof *result);
    uint64_t started = hil_time_us();
    uint8_t sent[MAX_SIZE];
    uint8_t got[MAX_SIZE + 1];
    struct sockaddr_in self;
    memset(&self, 0, sizeof self);
    self.sin_family = AF_INET;
    self.sin_port = 0; /* port 0: the shim's loopback must hand one out */
    self.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t self_len = sizeof self;
    int fd = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP);
    if (fd < 0 || bind(fd, (struct sockaddr *)&self, sizeof self) != 0 ||
        getsockname(fd, (struct sockaddr *)&self, &self_len) != 0) {
        hil_net_close(fd);
        snprintf(result->error, sizeof result->error, "socket failed");
        return -1;
    }
    result->sent = DATAGRAMS;
    for (int i = 0; i < DATAGRAMS; i++) {
        size_t size = fill(sent, i);
        if (sendto(fd, sent, size, 0, (struct sockaddr *)&self, sizeof self) != (ssize_t)size ||
            hil_net_wait_readable(fd, RECV_TIMEOUT_MS) != 1) {
            continue;
        }
        ssize_t n = recv(fd, got, sizeof got, 0);
        if (n <= 0) {
            continue;
        }
        result->received++;
        result->bytes += (uint64_t)n;
        result->altered += (size_t)n != size || memcmp(sent, got, size) != 0;
    }
    hil_net_close(fd);
    result->duration_us = hil_time_us() - started;
    if (result->received < DATAGRAMS) {
        snprintf(result->error, sizeof result->error, "lost %d of %d datagrams", DATAGRAMS - result->received,
                 DATAGRAMS);
    } else if (result->altered > 0) {
        snprintf(result->error, sizeof result->error, "%d of %d datagrams came back altered", result->altered,
                 DATAGRAMS);
    }
    return result->error[0] == '\0' ? 0 : -1;
}
