/* Socket helpers shared by the services. */
#define _POSIX_C_SOURCE 200809L
#include "net_util.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "hil_platform.h"
#include "hil_services.h"

static hil_ready_fn ready_hook;
static void *ready_arg;

void hil_services_set_ready_hook(hil_ready_fn fn, void *arg)
{
    ready_hook = fn;
    ready_arg = arg;
}

void hil_services_notify_ready(const char *service, const uint16_t *tcp_ports, int n_tcp, const uint16_t *udp_ports,
                               int n_udp)
{
    if (ready_hook != NULL) {
        ready_hook(service, tcp_ports, n_tcp, udp_ports, n_udp, ready_arg);
    }
}

static uint16_t local_port(int fd, uint16_t fallback)
{
    struct sockaddr_in addr;
    socklen_t addr_len = sizeof addr;
    /* getsockname is optional on small stacks: fall back to the port we asked for. */
    if (getsockname(fd, (struct sockaddr *)&addr, &addr_len) != 0 || addr.sin_family != AF_INET) {
        return fallback;
    }
    return ntohs(addr.sin_port);
}

static int bind_any(int fd, uint16_t port)
{
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    return bind(fd, (struct sockaddr *)&addr, sizeof addr);
}

int hil_net_listen_tcp(uint16_t port, int backlog, uint16_t *bound_port)
{
    int fd = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    if (fd < 0) {
        hil_log(HIL_LOG_ERROR, HIL_SVC_TAG, "tcp socket: errno %d", errno);
        return -1;
    }
    if (bind_any(fd, port) != 0 || listen(fd, backlog) != 0) {
        hil_log(HIL_LOG_ERROR, HIL_SVC_TAG, "tcp bind/listen on port %u: errno %d", (unsigned)port, errno);
        close(fd);
        return -1;
    }
    *bound_port = local_port(fd, port);
    return fd;
}

int hil_net_bind_udp(uint16_t port, uint16_t *bound_port)
{
    int fd = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP);
    if (fd < 0) {
        hil_log(HIL_LOG_ERROR, HIL_SVC_TAG, "udp socket: errno %d", errno);
        return -1;
    }
    if (bind_any(fd, port) != 0) {
        hil_log(HIL_LOG_ERROR, HIL_SVC_TAG, "udp bind on port %u: errno %d", (unsigned)port, errno);
        close(fd);
        return -1;
    }
    *bound_port = local_port(fd, port);
    return fd;
}

int hil_net_set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL, 0);
    if (flags < 0) {
        return -1;
    }
    return fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0 ? 0 : -1;
}

int hil_net_would_block(int err)
{
    return err == EAGAIN || err == EWOULDBLOCK || err == EINTR;
}

static int wait_fd(int fd, int for_write, uint32_t timeout_ms)
{
    fd_set set;
    FD_ZERO(&set);
    FD_SET(fd, &set);
    struct timeval tv = {.tv_sec = (long)(timeout_ms / 1000u), .tv_usec = (long)(timeout_ms % 1000u) * 1000L};
    int rc = select(fd + 1, for_write ? NULL : &set, for_write ? &set : NULL, NULL, &tv);
    if (rc < 0 && errno == EINTR) {
        return 0;
    }
    return rc < 0 ? -1 : (rc > 0 ? 1 : 0);
}

int hil_net_wait_readable(int fd, uint32_t timeout_ms)
{
    return wait_fd(fd, 0, timeout_ms);
}

int hil_net_wait_writable(int fd, uint32_t timeout_ms)
{
    return wait_fd(fd, 1, timeout_ms);
}

int hil_net_connect_tcp(const char *host, uint16_t port, uint32_t timeout_ms, char *why, size_t why_len)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    struct addrinfo *found = NULL;
    if (getaddrinfo(host, NULL, &hints, &found) != 0 || found == NULL) {
        snprintf(why, why_len, "cannot resolve %s", host);
        return -1;
    }
    struct sockaddr_in addr;
    memcpy(&addr, found->ai_addr, sizeof addr);
    freeaddrinfo(found);
    addr.sin_port = htons(port);
    int fd = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    if (fd < 0) {
        snprintf(why, why_len, "socket: errno %d", errno);
        return -1;
    }
    hil_net_set_nonblocking(fd);
    int rc = connect(fd, (struct sockaddr *)&addr, sizeof addr);
    int err = rc == 0 ? 0 : errno;
    if (rc != 0 && (err == EINPROGRESS || err == EAGAIN || err == EWOULDBLOCK)) {
        int ready = wait_fd(fd, 1, timeout_ms);
        socklen_t err_len = sizeof err;
        if (ready != 1) {
            err = ready == 0 ? ETIMEDOUT : errno;
        } else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len) != 0) {
            err = 0; /* a stack without SO_ERROR: writable means connected; a failure shows at the first send */
        }
    }
    if (err != 0) {
        snprintf(why, why_len, "%s", err == ETIMEDOUT      ? "connect timed out"
                                     : err == ECONNREFUSED ? "connection refused"
                                                           : "connect failed");
        close(fd);
        return -1;
    }
    return fd;
}

int hil_net_send_all(int fd, const void *data, size_t len, uint32_t timeout_ms)
{
    const uint8_t *p = data;
    uint32_t deadline = hil_time_ms() + timeout_ms;
    while (len > 0) {
        ssize_t n = send(fd, p, len, 0);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && !hil_net_would_block(errno)) {
            return -1;
        }
        int32_t left = (int32_t)(deadline - hil_time_ms());
        if (left <= 0 || wait_fd(fd, 1, (uint32_t)left) < 0) {
            return -1;
        }
    }
    return 0;
}

int hil_net_recv_exact(int fd, void *data, size_t len, uint32_t timeout_ms)
{
    uint8_t *p = data;
    uint32_t deadline = hil_time_ms() + timeout_ms;
    while (len > 0) {
        int32_t left = (int32_t)(deadline - hil_time_ms());
        if (left <= 0) {
            return -1;
        }
        /* Wait with select, never with a socket receive timeout: on the shim a blocking recv that
         * times out returns 0, indistinguishable from the peer closing. */
        int ready = wait_fd(fd, 0, (uint32_t)left);
        if (ready < 0) {
            return -1;
        }
        if (ready == 0) {
            continue;
        }
        ssize_t n = recv(fd, p, len, 0);
        if (n == 0) {
            return -2;
        }
        if (n < 0) {
            if (hil_net_would_block(errno)) {
                continue;
            }
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

void hil_net_close(int fd)
{
    if (fd >= 0) {
        close(fd);
    }
}
