/* `loopback [recvfrom|recv|ephemeral]`: self-check of the in-RAM 127.0.0.0/8 loopback (PROTOCOL.md),
 * the path esp_http_server's control socket depends on. 16 UDP datagrams to a socket bound to
 * 127.0.0.1 and back:
 *   recvfrom  (default) the receiver is bound to HIL_LOOPBACK_PORT and reads with recvfrom();
 *   recv      the same, read with recv(), as esp_http_server reads its control socket;
 *   ephemeral the receiver is bound to 127.0.0.1:0 (a port the stack picks), read with recvfrom().
 * The sender is a second, unbound UDP socket using sendto(), as esp_http_server's msg socket. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "esp_timer.h"
#include "hil_app.h"
#include "lwip/inet.h"
#include "lwip/sockets.h"

#define USAGE "usage: loopback [recvfrom|recv|ephemeral]"
#define DATAGRAMS 16
#define MAX_SIZE 1472
#define HIL_LOOPBACK_PORT 32790 /* beside esp_http_server's control ports 32768 and 32769 */

/* Datagram i: 1 + i * 1471 / 15 bytes (1 .. 1472), byte k = (i + k) mod 256; the twin sends the same. */
static size_t fill(uint8_t *buf, int index)
{
    size_t size = 1 + (size_t)index * (MAX_SIZE - 1) / (DATAGRAMS - 1);
    for (size_t k = 0; k < size; k++) {
        buf[k] = (uint8_t)((index + k) & 0xff);
    }
    return size;
}

static void close_fd(int fd)
{
    if (fd >= 0) {
        close(fd);
    }
}

/* The receiving socket bound to 127.0.0.1:port, its address in `self`; -1 with errno on failure. */
static int bind_loopback(uint16_t port, struct sockaddr_in *self)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    *self = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(port)};
    self->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t self_len = sizeof *self;
    if (fd >= 0 && (bind(fd, (struct sockaddr *)self, sizeof *self) != 0 ||
                    getsockname(fd, (struct sockaddr *)self, &self_len) != 0 || self->sin_port == 0)) {
        int bind_errno = errno;
        close(fd);
        errno = bind_errno;
        return -1;
    }
    return fd;
}

int hil_cmd_loopback(int argc, char **argv)
{
    const char *mode = argc == 2 ? argv[1] : "recvfrom";
    bool use_recv = strcmp(mode, "recv") == 0;
    bool ephemeral = strcmp(mode, "ephemeral") == 0;
    if (argc > 2 || (!use_recv && !ephemeral && strcmp(mode, "recvfrom") != 0)) {
        hil_result_error("loopback", USAGE, NULL);
        return 0;
    }
    static uint8_t sent[MAX_SIZE], got[MAX_SIZE + 1];
    int64_t start_us = esp_timer_get_time();
    struct sockaddr_in self;
    int rx = bind_loopback(ephemeral ? 0 : HIL_LOOPBACK_PORT, &self);
    int tx = socket(AF_INET, SOCK_DGRAM, 0);
    if (rx < 0 || tx < 0) {
        close_fd(rx);
        close_fd(tx);
        char error[96], members[40];
        snprintf(error, sizeof error, "socket failed: %s 127.0.0.1:%u refused (errno %d)",
                 rx < 0 ? "bind to" : "socket beside", ephemeral ? 0u : (unsigned)HIL_LOOPBACK_PORT, errno);
        snprintf(members, sizeof members, "\"mode\":\"%s\"", mode);
        hil_result_error("loopback", error, members);
        return 0;
    }
    struct timeval timeout = {.tv_sec = 1};
    setsockopt(rx, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    int received = 0, corrupted = 0;
    uint64_t bytes = 0;
    for (int i = 0; i < DATAGRAMS; i++) {
        size_t size = fill(sent, i);
        sendto(tx, sent, size, 0, (struct sockaddr *)&self, sizeof self);
        int n = use_recv ? recv(rx, got, sizeof got, 0) : recvfrom(rx, got, sizeof got, 0, NULL, NULL);
        if (n <= 0) {
            continue; /* the shim returns 0 on its receive timeout */
        }
        received++;
        bytes += (uint64_t)n;
        corrupted += ((size_t)n != size || memcmp(sent, got, size) != 0);
    }
    close(rx);
    close(tx);
    char buf[200], error[96];
    app_json_t j;
    app_json_init(&j, buf, sizeof buf);
    app_json_str(&j, "mode", mode);
    app_json_u64(&j, "port", ntohs(self.sin_port));
    app_json_u64(&j, "sent", DATAGRAMS);
    app_json_u64(&j, "received", (uint64_t)received);
    app_json_u64(&j, "bytes", bytes);
    app_json_i64(&j, "duration_us", esp_timer_get_time() - start_us);
    if (received < DATAGRAMS) {
        snprintf(error, sizeof error, "lost %d of %d datagrams (read with %s)", DATAGRAMS - received, DATAGRAMS,
                 use_recv ? "recv" : "recvfrom");
        hil_result_error("loopback", error, app_json_members(&j));
    } else if (corrupted) {
        snprintf(error, sizeof error, "%d of %d datagrams came back altered", corrupted, DATAGRAMS);
        hil_result_error("loopback", error, app_json_members(&j));
    } else {
        hil_result_ok("loopback", app_json_members(&j));
    }
    return 0;
}
