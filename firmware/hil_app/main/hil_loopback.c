/* `loopback`: self-check of the lwIP-compat shim's in-RAM 127.0.0.0/8 loopback (PROTOCOL.md), the path
 * esp_http_server's control socket depends on: UDP datagrams from a socket on 127.0.0.1 to itself. */
#include <stdio.h>
#include <string.h>

#include "esp_timer.h"
#include "hil_app.h"
#include "lwip/inet.h"
#include "lwip/sockets.h"

#define DATAGRAMS 16
#define MAX_SIZE 1472

/* Datagram i: 1 + i * 1471 / 15 bytes (1 .. 1472), byte k = (i + k) mod 256; the twin sends the same. */
static size_t fill(uint8_t *buf, int index)
{
    size_t size = 1 + (size_t)index * (MAX_SIZE - 1) / (DATAGRAMS - 1);
    for (size_t k = 0; k < size; k++) {
        buf[k] = (uint8_t)((index + k) & 0xff);
    }
    return size;
}

int hil_cmd_loopback(int argc, char **argv)
{
    (void)argv;
    if (argc != 1) {
        hil_result_error("loopback", "usage: loopback", NULL);
        return 0;
    }
    static uint8_t sent[MAX_SIZE], got[MAX_SIZE + 1];
    int64_t start_us = esp_timer_get_time();
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in self = {.sin_family = AF_INET, .sin_port = 0};
    self.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t self_len = sizeof self;
    if (fd < 0 || bind(fd, (struct sockaddr *)&self, sizeof self) != 0 ||
        getsockname(fd, (struct sockaddr *)&self, &self_len) != 0) {
        if (fd >= 0) {
            close(fd);
        }
        hil_result_error("loopback", "socket failed", NULL);
        return 0;
    }
    struct timeval timeout = {.tv_sec = 1};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    int received = 0, corrupted = 0;
    uint64_t bytes = 0;
    for (int i = 0; i < DATAGRAMS; i++) {
        size_t size = fill(sent, i);
        sendto(fd, sent, size, 0, (struct sockaddr *)&self, sizeof self);
        int n = recv(fd, got, sizeof got, 0);
        if (n <= 0) {
            continue; /* the shim returns 0 on its receive timeout */
        }
        received++;
        bytes += (uint64_t)n;
        corrupted += ((size_t)n != size || memcmp(sent, got, size) != 0);
    }
    close(fd);
    char buf[160], error[64];
    app_json_t j;
    app_json_init(&j, buf, sizeof buf);
    app_json_u64(&j, "sent", DATAGRAMS);
    app_json_u64(&j, "received", (uint64_t)received);
    app_json_u64(&j, "bytes", bytes);
    app_json_i64(&j, "duration_us", esp_timer_get_time() - start_us);
    if (received < DATAGRAMS) {
        snprintf(error, sizeof error, "lost %d of %d datagrams", DATAGRAMS - received, DATAGRAMS);
        hil_result_error("loopback", error, app_json_members(&j));
    } else if (corrupted) {
        snprintf(error, sizeof error, "%d of %d datagrams came back altered", corrupted, DATAGRAMS);
        hil_result_error("loopback", error, app_json_members(&j));
    } else {
        hil_result_ok("loopback", app_json_members(&j));
    }
    return 0;
}
