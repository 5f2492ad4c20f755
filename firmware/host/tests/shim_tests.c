/*
 * The BSD-socket shim's semantics, on the real stack, against the Linux kernel on the other end of a
 * lab cable. Run inside the DUT namespace; the peer's sockets are created in the peer namespace
 * (setns around socket(), so they are kernel sockets; every other call on them passes through).
 *
 *   hil-shim-tests --ifname eth0 --mac MAC --ip 10.77.0.100 --peer-netns NS --peer-ip 10.77.0.1
 *
 * Prints "ok - <case>" / "not ok - <case>: <why>" per case, then "N passed, M failed"; exit 1 on a failure.
 * HIL_FAULTS switches on the shim's faults (sockshim.h): each must fail the case of its defect.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "hil_platform.h"
#include "netstack.h"
#include "sockshim.h"

int __real_socket(int domain, int type, int protocol);

#define FD_COUNT 16
#define MAX_SOCKETS 24

static const char *peer_ns;
static struct in_addr dut_ip, peer_ip;
static int own_ns_fd, peer_ns_fd;
static char why[256];

#define CHECK(cond, ...)                                                                                              \
    do {                                                                                                              \
        if (!(cond)) {                                                                                                \
            snprintf(why, sizeof why, __VA_ARGS__);                                                                   \
            return 1;                                                                                                 \
        }                                                                                                             \
    } while (0)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A kernel socket in the peer's namespace. */
static int peer_socket(int type)
{
    if (setns(peer_ns_fd, CLONE_NEWNET) != 0) {
        return -1;
    }
    int fd = __real_socket(AF_INET, type, 0);
    if (setns(own_ns_fd, CLONE_NEWNET) != 0) {
        abort();
    }
    return fd;
}

static struct sockaddr_in endpoint(struct in_addr ip, uint16_t port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr = ip};
    return a;
}

static int shim_listener(uint16_t port, int backlog)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in any = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (s < 0 || bind(s, (struct sockaddr *)&any, sizeof any) != 0 || listen(s, backlog) != 0) {
        return -1;
    }
    return s;
}

static int readable(int fd, int timeout_ms)
{
    fd_set r;
    FD_ZERO(&r);
    FD_SET(fd, &r);
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    return select(fd + 1, &r, NULL, NULL, &tv) == 1 && FD_ISSET(fd, &r);
}

/* A connection from the peer to a shim listener: *server (shim) and *client (peer, kernel). */
static int connected_pair(uint16_t port, int *listener, int *server, int *client)
{
    *listener = shim_listener(port, 2);
    CHECK(*listener >= 0, "listen on %u: %s", port, strerror(errno));
    *client = peer_socket(SOCK_STREAM);
    struct sockaddr_in to = endpoint(dut_ip, port);
    CHECK(*client >= 0 && connect(*client, (struct sockaddr *)&to, sizeof to) == 0, "peer connect: %s",
          strerror(errno));
    struct sockaddr_in from;
    socklen_t len = sizeof from;
    *server = accept(*listener, (struct sockaddr *)&from, &len);
    CHECK(*server >= 0, "accept: %s", strerror(errno));
    struct sockaddr_in peer_side;
    socklen_t peer_len = sizeof peer_side;
    getsockname(*client, (struct sockaddr *)&peer_side, &peer_len);
    CHECK(from.sin_addr.s_addr == peer_ip.s_addr && from.sin_port == peer_side.sin_port,
          "accept reported %s:%u, the peer is %s:%u", inet_ntoa(from.sin_addr), ntohs(from.sin_port),
          inet_ntoa(peer_ip), ntohs(peer_side.sin_port));
    return 0;
}

static int case_fin_makes_readable_and_recv_returns_zero(void)
{
    int l, s, c;
    if (connected_pair(9001, &l, &s, &c)) {
        return 1;
    }
    CHECK(send(c, "abc", 3, 0) == 3 && shutdown(c, SHUT_WR) == 0, "peer send/shutdown: %s", strerror(errno));
    char buf[16];
    CHECK(readable(s, 2000), "data + FIN did not make the socket readable");
    CHECK(recv(s, buf, sizeof buf, 0) == 3 && memcmp(buf, "abc", 3) == 0, "recv of the data: %s", strerror(errno));
    CHECK(readable(s, 2000), "the FIN alone did not make the socket readable");
    ssize_t n = recv(s, buf, sizeof buf, 0);
    CHECK(n == 0, "recv after the FIN returned %zd (errno %s), want 0", n, strerror(errno));
    CHECK(recv(s, buf, sizeof buf, MSG_DONTWAIT) == 0, "EOF does not stay EOF");
    close(s);
    close(c);
    close(l);
    return 0;
}

static int case_close_sends_fin(void)
{
    int p = peer_socket(SOCK_STREAM);
    int one = 1;
    setsockopt(p, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in at = endpoint(peer_ip, 9002);
    CHECK(p >= 0 && bind(p, (struct sockaddr *)&at, sizeof at) == 0 && listen(p, 1) == 0, "peer listen: %s",
          strerror(errno));
    int s = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(s, (struct sockaddr *)&at, sizeof at) == 0, "blocking connect: %s", strerror(errno));
    int a = accept(p, NULL, NULL);
    CHECK(a >= 0, "peer accept: %s", strerror(errno));
    CHECK(send(s, "bye", 3, 0) == 3, "send: %s", strerror(errno));
    CHECK(close(s) == 0, "close: %s", strerror(errno));
    char buf[8];
    struct pollfd pfd = {.fd = a, .events = POLLIN};
    CHECK(poll(&pfd, 1, 2000) == 1 && recv(a, buf, sizeof buf, 0) == 3, "the data before close did not arrive");
    CHECK(poll(&pfd, 1, 2000) == 1 && recv(a, buf, sizeof buf, 0) == 0, "close() sent no FIN");
    close(a);
    close(p);
    return 0;
}

static int case_shutdown_wr_sends_fin_and_keeps_receiving(void)
{
    int l, s, c;
    if (connected_pair(9008, &l, &s, &c)) {
        return 1;
    }
    CHECK(shutdown(s, SHUT_WR) == 0, "shutdown(SHUT_WR): %s", strerror(errno));
    char buf[8];
    struct pollfd pfd = {.fd = c, .events = POLLIN};
    CHECK(poll(&pfd, 1, 2000) == 1 && recv(c, buf, sizeof buf, 0) == 0, "shutdown(SHUT_WR) sent no FIN");
    CHECK(send(c, "more", 4, 0) == 4, "peer send after our FIN: %s", strerror(errno));
    CHECK(readable(s, 2000) && recv(s, buf, sizeof buf, 0) == 4, "the half-closed socket stopped receiving");
    close(s);
    close(c);
    close(l);
    return 0;
}

static int case_udp_readability_never_consumes(void)
{
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in any = {.sin_family = AF_INET, .sin_port = htons(9003)};
    CHECK(u >= 0 && bind(u, (struct sockaddr *)&any, sizeof any) == 0, "udp bind: %s", strerror(errno));
    int p = peer_socket(SOCK_DGRAM);
    struct sockaddr_in to = endpoint(dut_ip, 9003);
    CHECK(sendto(p, "dgram-1", 7, 0, (struct sockaddr *)&to, sizeof to) == 7, "peer sendto: %s", strerror(errno));
    for (int i = 0; i < 3; i++) {
        struct pollfd pfd = {.fd = u, .events = POLLIN};
        CHECK(poll(&pfd, 1, 2000) == 1 && (pfd.revents & POLLIN), "poll %d did not see the datagram", i);
        CHECK(readable(u, 0), "select %d did not see the datagram", i);
    }
    int pending = 0;
    CHECK(ioctl(u, FIONREAD, &pending) == 0 && pending == 7, "FIONREAD %d, want 7", pending);
    char buf[32];
    struct sockaddr_in from;
    socklen_t len = sizeof from;
    struct sockaddr_in peer_side;
    socklen_t peer_len = sizeof peer_side;
    getsockname(p, (struct sockaddr *)&peer_side, &peer_len);
    CHECK(recvfrom(u, buf, sizeof buf, 0, (struct sockaddr *)&from, &len) == 7 && memcmp(buf, "dgram-1", 7) == 0,
          "recvfrom lost the datagram the readiness checks saw");
    CHECK(from.sin_addr.s_addr == peer_ip.s_addr && from.sin_port == peer_side.sin_port, "wrong sender");
    CHECK(!readable(u, 0), "still readable after the only datagram was read");
    close(u);
    close(p);
    return 0;
}

/* A UDP socket bound to 127.0.0.1, fed by sendto() from an unbound socket (esp_http_server's control path). */
static int loopback_pair(uint16_t port, int *rx, int *tx, struct sockaddr_in *at)
{
    *rx = socket(AF_INET, SOCK_DGRAM, 0);
    *tx = socket(AF_INET, SOCK_DGRAM, 0);
    *at = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(port)};
    at->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(*rx >= 0 && *tx >= 0, "socket: %s", strerror(errno));
    CHECK(bind(*rx, (struct sockaddr *)at, sizeof *at) == 0, "bind(127.0.0.1:%u): %s", port, strerror(errno));
    socklen_t len = sizeof *at;
    CHECK(getsockname(*rx, (struct sockaddr *)at, &len) == 0 && at->sin_addr.s_addr == htonl(INADDR_LOOPBACK) &&
              at->sin_port != 0 && (port == 0 || at->sin_port == htons(port)),
          "getsockname after bind(127.0.0.1:%u) gave %s:%u", port, inet_ntoa(at->sin_addr), ntohs(at->sin_port));
    return 0;
}

static int case_loopback_datagrams_read_with_recvfrom_recv_and_read(void)
{
    int rx, tx;
    struct sockaddr_in at;
    if (loopback_pair(9200, &rx, &tx, &at)) {
        return 1;
    }
    struct timeval second = {.tv_sec = 1};
    setsockopt(rx, SOL_SOCKET, SO_RCVTIMEO, &second, sizeof second);
    CHECK(!readable(rx, 0), "readable before anything was sent");
    const char *words[3] = {"via-recvfrom", "via-recv", "via-read"};
    for (int i = 0; i < 3; i++) {
        CHECK(sendto(tx, words[i], strlen(words[i]), 0, (struct sockaddr *)&at, sizeof at) == (ssize_t)strlen(words[i]),
              "sendto 127.0.0.1: %s", strerror(errno));
    }
    CHECK(readable(rx, 1000), "datagrams to 127.0.0.1 did not make the socket readable");
    int pending = 0;
    CHECK(ioctl(rx, FIONREAD, &pending) == 0 && pending == 12, "FIONREAD %d, want 12", pending);
    char buf[64];
    struct sockaddr_in from;
    socklen_t from_len = sizeof from;
    ssize_t n = recvfrom(rx, buf, sizeof buf, 0, (struct sockaddr *)&from, &from_len);
    CHECK(n == 12 && memcmp(buf, words[0], 12) == 0 && from.sin_addr.s_addr == htonl(INADDR_LOOPBACK),
          "recvfrom returned %zd from %s", n, inet_ntoa(from.sin_addr));
    n = recv(rx, buf, sizeof buf, 0);
    CHECK(n == 8 && memcmp(buf, words[1], 8) == 0, "recv() on the 127.0.0.1 socket returned %zd (errno %s)", n,
          strerror(errno));
    n = read(rx, buf, sizeof buf);
    CHECK(n == 8 && memcmp(buf, words[2], 8) == 0, "read() on the 127.0.0.1 socket returned %zd", n);
    CHECK(recv(rx, buf, sizeof buf, MSG_DONTWAIT) == -1 && errno == EAGAIN, "an empty queue must be EAGAIN");
    close(rx);
    CHECK(sendto(tx, "nobody", 6, 0, (struct sockaddr *)&at, sizeof at) == 6,
          "sendto a 127.0.0.1 port nobody binds must succeed (UDP): %s", strerror(errno));
    int again = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(bind(again, (struct sockaddr *)&at, sizeof at) == 0, "close() did not free 127.0.0.1:9200: %s",
          strerror(errno));
    CHECK(!readable(again, 0), "a datagram sent before the bind was delivered to the new socket");
    close(again);
    close(tx);
    return 0;
}

static int case_loopback_bind_to_port_zero_picks_a_port(void)
{
    int rx, tx;
    struct sockaddr_in at;
    if (loopback_pair(0, &rx, &tx, &at)) {
        return 1;
    }
    CHECK(sendto(tx, "eph", 3, 0, (struct sockaddr *)&at, sizeof at) == 3, "sendto: %s", strerror(errno));
    char buf[8];
    CHECK(readable(rx, 1000) && recvfrom(rx, buf, sizeof buf, 0, NULL, NULL) == 3, "the datagram did not arrive");
    close(rx);
    close(tx);
    return 0;
}

static int case_select_and_poll_over_mixed_tcp_udp_and_kernel_fds(void)
{
    int l, s, c;
    if (connected_pair(9004, &l, &s, &c)) {
        return 1;
    }
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in any = {.sin_family = AF_INET, .sin_port = htons(9005)};
    CHECK(bind(u, (struct sockaddr *)&any, sizeof any) == 0, "udp bind: %s", strerror(errno));
    int pipefd[2];
    CHECK(pipe(pipefd) == 0, "pipe");
    int pu = peer_socket(SOCK_DGRAM);
    struct sockaddr_in to = endpoint(dut_ip, 9005);
    int fds[3] = {s, u, pipefd[0]};
    const char *names[3] = {"tcp", "udp", "pipe"};
    for (int round = 0; round < 3; round++) {
        fd_set r;
        FD_ZERO(&r);
        int max = 0;
        for (int i = 0; i < 3; i++) {
            FD_SET(fds[i], &r);
            max = fds[i] > max ? fds[i] : max;
        }
        struct timeval zero = {0, 0};
        CHECK(select(max + 1, &r, NULL, NULL, &zero) == 0, "round %d: something ready before the stimulus", round);
        if (round == 0) {
            CHECK(write(pipefd[1], "p", 1) == 1, "pipe write");
        } else if (round == 1) {
            CHECK(sendto(pu, "u", 1, 0, (struct sockaddr *)&to, sizeof to) == 1, "peer udp");
        } else {
            CHECK(send(c, "t", 1, 0) == 1, "peer tcp");
        }
        FD_ZERO(&r);
        for (int i = 0; i < 3; i++) {
            FD_SET(fds[i], &r);
        }
        struct timeval tv = {2, 0};
        int n = select(max + 1, &r, NULL, NULL, &tv);
        int which = round == 0 ? 2 : round == 1 ? 1 : 0;
        CHECK(n == 1 && FD_ISSET(fds[which], &r), "round %d: select returned %d, want only %s", round, n,
              names[which]);
        struct pollfd p3[3];
        for (int i = 0; i < 3; i++) {
            p3[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
        }
        CHECK(poll(p3, 3, 2000) == 1 && (p3[which].revents & POLLIN), "round %d: poll disagrees with select", round);
        char b;
        CHECK(read(fds[which], &b, 1) == 1, "round %d: read %s", round, names[which]);
    }
    close(pipefd[0]);
    close(pipefd[1]);
    close(pu);
    close(u);
    close(s);
    close(c);
    close(l);
    return 0;
}

static int case_nonblocking_connect(void)
{
    int p = peer_socket(SOCK_STREAM);
    int one = 1;
    setsockopt(p, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in at = endpoint(peer_ip, 9006);
    CHECK(p >= 0 && bind(p, (struct sockaddr *)&at, sizeof at) == 0 && listen(p, 1) == 0, "peer listen");
    for (int refused = 0; refused < 2; refused++) {
        int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        struct sockaddr_in to = refused ? endpoint(peer_ip, 9) : at;
        CHECK(connect(s, (struct sockaddr *)&to, sizeof to) == -1 && errno == EINPROGRESS,
              "non-blocking connect: want EINPROGRESS, got %s", strerror(errno));
        fd_set w;
        FD_ZERO(&w);
        FD_SET(s, &w);
        struct timeval tv = {2, 0};
        CHECK(select(s + 1, NULL, &w, NULL, &tv) == 1, "the handshake never made the socket writable");
        int err = -1;
        socklen_t len = sizeof err;
        CHECK(getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len) == 0, "SO_ERROR: %s", strerror(errno));
        CHECK(err == (refused ? ECONNREFUSED : 0), "SO_ERROR %s, want %s", strerror(err),
              refused ? "ECONNREFUSED" : "0");
        if (!refused) {
            struct sockaddr_in peer;
            socklen_t plen = sizeof peer;
            CHECK(getpeername(s, (struct sockaddr *)&peer, &plen) == 0 && peer.sin_port == htons(9006),
                  "getpeername after connect");
            int a = accept(p, NULL, NULL);
            close(a);
        }
        close(s);
    }
    close(p);
    return 0;
}

static int case_timeouts_are_honoured(void)
{
    int l, s, c;
    if (connected_pair(9007, &l, &s, &c)) {
        return 1;
    }
    struct timeval tv = {.tv_sec = 0, .tv_usec = 300000};
    CHECK(setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0, "SO_RCVTIMEO: %s", strerror(errno));
    char buf[4];
    double t0 = now_s();
    ssize_t n = recv(s, buf, sizeof buf, 0);
    double waited = now_s() - t0;
    CHECK(n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK), "recv timeout returned %zd (%s), want -1/EAGAIN", n,
          strerror(errno));
    CHECK(waited >= 0.29 && waited < 5, "recv waited %.3f s for a 0.3 s SO_RCVTIMEO", waited);
    CHECK(setsockopt(l, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0, "listener SO_RCVTIMEO");
    t0 = now_s();
    CHECK(accept(l, NULL, NULL) == -1 && errno == EAGAIN && now_s() - t0 >= 0.29, "accept ignored SO_RCVTIMEO");
    t0 = now_s();
    CHECK(!readable(s, 200) && now_s() - t0 >= 0.19, "select returned before its 0.2 s timeout");
    struct timeval got;
    socklen_t len = sizeof got;
    CHECK(getsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &got, &len) == 0 && got.tv_usec == 300000, "SO_RCVTIMEO readback");
    close(s);
    close(c);
    close(l);
    return 0;
}

static int case_budgets_fail_with_clean_errnos(void)
{
    int fds[FD_COUNT + 1];
    int n = 0;
    while (n <= FD_COUNT && (fds[n] = socket(AF_INET, SOCK_DGRAM, 0)) >= 0) {
        n++;
    }
    int err = errno;
    CHECK(n < FD_COUNT + 1 && err == EMFILE, "descriptor %d: want EMFILE, got %s", n, strerror(err));
    for (int i = 0; i < n; i++) {
        close(fds[i]);
    }
    int again = socket(AF_INET, SOCK_DGRAM, 0);
    CHECK(again >= 0, "closing every descriptor did not free the table: %s", strerror(errno));
    close(again);

    /* Listener pools take smoltcp sockets: listen until the socket budget is spent. */
    int listeners[FD_COUNT];
    int nl = 0;
    const char *failed = NULL;
    while (nl < FD_COUNT) {
        listeners[nl] = socket(AF_INET, SOCK_STREAM, 0);
        if (listeners[nl] < 0) {
            err = errno;
            failed = "socket";
            break;
        }
        struct sockaddr_in any = {.sin_family = AF_INET, .sin_port = htons((uint16_t)(9100 + nl))};
        bind(listeners[nl], (struct sockaddr *)&any, sizeof any);
        if (listen(listeners[nl], 8) != 0) {
            err = errno; /* before close(), which may set errno */
            failed = "listen";
            close(listeners[nl]);
            break;
        }
        nl++;
    }
    CHECK(failed != NULL && err == ENFILE, "the socket budget ran out with %s from %s, want ENFILE", strerror(err),
          failed ? failed : "nothing");
    CHECK(nl >= 1, "not one listener fitted %d sockets", MAX_SOCKETS);
    close(listeners[--nl]);
    int fresh = shim_listener(9150, 8);
    CHECK(fresh >= 0, "a closed listener's sockets did not come back: %s", strerror(errno));
    close(fresh);
    while (nl > 0) {
        close(listeners[--nl]);
    }

    /* The heap budget (absent in sanitizer builds, where ASan owns malloc). */
    size_t before = hs_heap_free();
    void *probe = malloc(4096);
    bool budgeted = hs_heap_free() < before;
    free(probe);
    if (budgeted) {
        size_t total = hs_heap_total();
        hs_heap_set_budget(total - hs_heap_free() + 100 * 1024);
        int first = socket(AF_INET, SOCK_STREAM, 0); /* 64 KiB of buffers: fits */
        int second = socket(AF_INET, SOCK_STREAM, 0);
        err = errno;
        hs_heap_set_budget(total);
        CHECK(first >= 0, "a socket that fits the heap failed: %s", strerror(errno));
        CHECK(second == -1 && err == ENOBUFS, "over-committed socket buffers: want ENOBUFS, got %s",
              second >= 0 ? "a socket" : strerror(err));
        close(first);
    }
    return 0;
}

static int case_getaddrinfo_takes_literals_only(void)
{
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    CHECK(getaddrinfo("10.77.0.1", "80", &hints, &res) == 0, "a literal address did not resolve");
    struct sockaddr_in *in = (struct sockaddr_in *)res->ai_addr;
    CHECK(in->sin_port == htons(80) && in->sin_addr.s_addr == inet_addr("10.77.0.1"), "wrong literal result");
    freeaddrinfo(res);
    CHECK(getaddrinfo("no-such-host.invalid", "80", &hints, &res) == EAI_NONAME, "a name must not resolve");
    return 0;
}

static const struct {
    const char *name;
    int (*run)(void);
} CASES[] = {
    {"fin_makes_readable_and_recv_returns_zero", case_fin_makes_readable_and_recv_returns_zero},
    {"close_sends_fin", case_close_sends_fin},
    {"shutdown_wr_sends_fin_and_keeps_receiving", case_shutdown_wr_sends_fin_and_keeps_receiving},
    {"udp_readability_never_consumes", case_udp_readability_never_consumes},
    {"select_and_poll_over_mixed_tcp_udp_and_kernel_fds", case_select_and_poll_over_mixed_tcp_udp_and_kernel_fds},
    {"loopback_datagrams_read_with_recvfrom_recv_and_read", case_loopback_datagrams_read_with_recvfrom_recv_and_read},
    {"loopback_bind_to_port_zero_picks_a_port", case_loopback_bind_to_port_zero_picks_a_port},
    {"nonblocking_connect", case_nonblocking_connect},
    {"timeouts_are_honoured", case_timeouts_are_honoured},
    {"budgets_fail_with_clean_errnos", case_budgets_fail_with_clean_errnos},
    {"getaddrinfo_takes_literals_only", case_getaddrinfo_takes_literals_only},
};

int main(int argc, char **argv)
{
    hil_net_config_t net;
    hil_net_default_config(&net);
    const char *mac = "02:00:00:00:00:64";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--ifname") == 0) {
            net.ifname = argv[i + 1];
        } else if (strcmp(argv[i], "--mac") == 0) {
            mac = argv[i + 1];
        } else if (strcmp(argv[i], "--ip") == 0) {
            inet_pton(AF_INET, argv[i + 1], &dut_ip);
        } else if (strcmp(argv[i], "--peer-netns") == 0) {
            peer_ns = argv[i + 1];
        } else if (strcmp(argv[i], "--peer-ip") == 0) {
            inet_pton(AF_INET, argv[i + 1], &peer_ip);
        }
    }
    unsigned b[6];
    char path[160];
    snprintf(path, sizeof path, "/run/netns/%s", peer_ns ? peer_ns : "");
    own_ns_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    peer_ns_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (peer_ns == NULL || peer_ns_fd < 0 || own_ns_fd < 0 || dut_ip.s_addr == 0 || peer_ip.s_addr == 0 ||
        sscanf(mac, "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6) {
        fprintf(stderr, "usage: hil-shim-tests --ifname IF --mac MAC --ip IP --peer-netns NS --peer-ip IP\n");
        return 2;
    }
    for (int i = 0; i < 6; i++) {
        net.mac[i] = (uint8_t)b[i];
    }
    net.dhcp = false;
    net.static_ip = dut_ip.s_addr;
    net.static_prefix = 24;
    net.stack.max_sockets = MAX_SOCKETS;
    hil_shim_config_t shim;
    hil_shim_default_config(&shim); /* HIL_FAULTS: a shim fault must make the case of its defect fail */
    shim.fd_base = 64;
    shim.fd_count = FD_COUNT;
    if (hil_net_start(&net) != 0 || hil_shim_init(&shim) != 0) {
        fprintf(stderr, "the stack did not start\n");
        return 2;
    }
    double deadline = now_s() + 5;
    while (!hil_net_link_up() && now_s() < deadline) {
        hil_sleep_ms(10); /* the carrier comes up on its own: nothing to wait on but the link state */
    }
    int failed = 0;
    int passed = 0;
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        why[0] = '\0';
        if (CASES[i].run() == 0) {
            printf("ok - %s\n", CASES[i].name);
            passed++;
        } else {
            printf("not ok - %s: %s\n", CASES[i].name, why);
            failed++;
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
