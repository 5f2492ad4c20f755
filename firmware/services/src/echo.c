/* TCP echo (one thread per client, bounded) and UDP echo (one thread, every datagram back). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hil_platform.h"
#include "hil_services.h"
#include "net_util.h"

#define ECHO_CLIENT_STACK 4096
#define ECHO_CLIENT_PRIORITY 5
/* An idle client is dropped after this long, so a vanished peer cannot hold a slot forever. */
#define ECHO_IDLE_TIMEOUT_MS 120000u

static hil_mutex_t *tcp_lock;
static int tcp_active;

static void tcp_client_thread(void *arg)
{
    int fd = (int)(intptr_t)arg;
    uint8_t *buf = malloc(HIL_ECHO_BUF_BYTES);
    while (buf != NULL) {
        /* select, not SO_RCVTIMEO: the shim's recv timeout returns 0 like a peer close. */
        if (hil_net_wait_readable(fd, ECHO_IDLE_TIMEOUT_MS) != 1) {
            break;
        }
        ssize_t n = recv(fd, buf, HIL_ECHO_BUF_BYTES, 0);
        if (n < 0 && hil_net_would_block(errno)) {
            continue;
        }
        if (n <= 0 || hil_net_send_all(fd, buf, (size_t)n, ECHO_IDLE_TIMEOUT_MS) != 0) {
            break;
        }
    }
    free(buf);
    hil_net_close(fd);
    hil_mutex_lock(tcp_lock);
    tcp_active--;
    hil_mutex_unlock(tcp_lock);
}

int hil_tcp_echo_run(uint16_t port)
{
    if (tcp_lock == NULL && (tcp_lock = hil_mutex_create()) == NULL) {
        return -1;
    }
    uint16_t bound = 0;
    int listener = hil_net_listen_tcp(port, 4, &bound);
    if (listener < 0) {
        return -1;
    }
    hil_log(HIL_LOG_INFO, HIL_SVC_TAG, "tcp echo: port %u", (unsigned)bound);
    hil_services_notify_ready("tcp_echo", &bound, 1, NULL, 0);
    for (;;) {
        int fd = accept(listener, NULL, NULL);
        if (fd < 0) {
            if (!hil_net_would_block(errno) && errno != ECONNABORTED) {
                hil_log(HIL_LOG_WARN, HIL_SVC_TAG, "tcp echo: accept errno %d", errno);
                hil_sleep_ms(100);
            }
            continue;
        }
        hil_mutex_lock(tcp_lock);
        int admitted = tcp_active < HIL_TCP_ECHO_MAX_CONN;
        if (admitted) {
            tcp_active++;
        }
        hil_mutex_unlock(tcp_lock);
        if (!admitted) {
            hil_net_close(fd);
            continue;
        }
        if (hil_thread_start("hil_tcp_echo", tcp_client_thread, (void *)(intptr_t)fd, ECHO_CLIENT_STACK,
                             ECHO_CLIENT_PRIORITY) != 0) {
            hil_net_close(fd);
            hil_mutex_lock(tcp_lock);
            tcp_active--;
            hil_mutex_unlock(tcp_lock);
        }
    }
}

int hil_udp_echo_run(uint16_t port)
{
    uint16_t bound = 0;
    int fd = hil_net_bind_udp(port, &bound);
    if (fd < 0) {
        return -1;
    }
    uint8_t *buf = malloc(HIL_ECHO_BUF_BYTES);
    if (buf == NULL) {
        hil_net_close(fd);
        return -1;
    }
    hil_log(HIL_LOG_INFO, HIL_SVC_TAG, "udp echo: port %u", (unsigned)bound);
    hil_services_notify_ready("udp_echo", NULL, 0, &bound, 1);
    for (;;) {
        struct sockaddr_in peer;
        socklen_t peer_len = sizeof peer;
        ssize_t n = recvfrom(fd, buf, HIL_ECHO_BUF_BYTES, 0, (struct sockaddr *)&peer, &peer_len);
        if (n < 0) {
            if (!hil_net_would_block(errno)) {
                hil_sleep_ms(10); /* a persistent error must not spin the CPU */
            }
            continue;
        }
        sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&peer, peer_len);
    }
}
