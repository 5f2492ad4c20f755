/*
 * An iperf3-compatible server (protocol of iperf 3.x, checked against Debian's iperf3 3.12 client).
 *
 * One test at a time on one thread:
 *   control connection: client sends a 37-byte cookie; server sends state PARAM_EXCHANGE; client
 *   sends its parameters as JSON (4-byte big-endian length + text); server sends CREATE_STREAMS and
 *   collects the data streams (TCP: connections carrying the same cookie; UDP: one datagram per
 *   stream, answered); TEST_START, TEST_RUNNING; data flows until the client sends TEST_END; server
 *   sends EXCHANGE_RESULTS, reads the client's results JSON, sends its own, DISPLAY_RESULTS, and
 *   waits for IPERF_DONE. Clients that connect while a test runs get ACCESS_DENIED.
 *
 * Stream ids follow the reference implementation, which numbers streams 1, 3, 4, 5, ... on both
 * sides; the client matches the server's results to its streams by these ids.
 * UDP streams share one socket, told apart by the peer address (no second socket bound to the
 * same port, which small stacks may not support).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "hil_platform.h"
#include "hil_services.h"
#include "mini_json.h"
#include "net_util.h"

#define TAG "hil_iperf3"

enum {
    TEST_START = 1,
    TEST_RUNNING = 2,
    TEST_END = 4,
    PARAM_EXCHANGE = 9,
    CREATE_STREAMS = 10,
    SERVER_TERMINATE = 11,
    CLIENT_TERMINATE = 12,
    EXCHANGE_RESULTS = 13,
    DISPLAY_RESULTS = 14,
    IPERF_DONE = 16,
    ACCESS_DENIED = -1,
    SERVER_ERROR = -2,
};

/* iperf3's error numbers the client can print for a SERVER_ERROR. */
#define IE_NUM_STREAMS 6       /* "number of parallel streams too large" */
#define IE_BLOCK_SIZE 7        /* "block size too large" */
#define IE_UNIMPLEMENTED 13    /* "not implemented yet" */
#define IE_RECV_PARAMS 114     /* "unable to receive parameters from client" */
#define IE_CREATE_STREAMS 200  /* "unable to create a new stream" */

#define COOKIE_SIZE 37
#define SETUP_TIMEOUT_MS 10000u
#define MAX_PARAMS_JSON 4096u
#define MAX_PEER_RESULTS (1u << 20)
/* Slack past the announced duration before a silent client is given up. */
#define RUN_SLACK_MS 30000u
#define NO_DURATION_LIMIT_MS 3600000u
#define UDP_CONNECT_REPLY "6789" /* what 3.x servers put on the wire (x86 byte order) */

typedef struct {
    int udp;
    int reverse;
    int bidir;
    int parallel;
    int64_t duration_s;
    int64_t omit_s;
    int64_t len;
    int64_t bandwidth_bps;
    int64_t window;
    int nodelay;
    int64_t mss;
    int udp_counters_64bit;
} params_t;

typedef struct {
    int id;
    int fd;              /* TCP: stream socket; UDP: -1 (shared socket) */
    int sender;          /* server sends on this stream */
    int open;            /* still carrying data */
    struct sockaddr_in peer; /* UDP peer */
    uint64_t bytes;      /* counted after the omit period */
    /* UDP */
    uint64_t packets;    /* receiver: highest sequence seen; sender: datagrams sent */
    uint64_t lost;
    uint64_t out_of_order;
    double jitter_s;
    double prev_transit_s;
    int have_transit;
    uint64_t next_seq;
    uint64_t sent_total; /* TCP sender: bytes sent including the omit period, for pacing */
} stream_t;

typedef struct {
    int listener;
    int ctrl;
    int udp_fd;
    uint16_t port;
    char cookie[COOKIE_SIZE];
    params_t params;
    stream_t streams[2 * HIL_IPERF3_MAX_STREAMS];
    int n_streams;
    uint8_t *buf;
    size_t buf_len;
    uint64_t start_us;      /* TEST_RUNNING sent */
    uint64_t count_from_us; /* end of the omit period */
    uint64_t end_us;        /* TEST_END received */
    uint64_t cpu_user_us;
    uint64_t cpu_sys_us;
    int cpu_known;
} test_t;

static hil_mutex_t *stats_lock;
static hil_iperf3_stats_t stats;

void hil_iperf3_get_stats(hil_iperf3_stats_t *out)
{
    if (stats_lock == NULL) {
        memset(out, 0, sizeof *out);
        return;
    }
    hil_mutex_lock(stats_lock);
    *out = stats;
    hil_mutex_unlock(stats_lock);
}

static void count(uint32_t *counter)
{
    hil_mutex_lock(stats_lock);
    (*counter)++;
    hil_mutex_unlock(stats_lock);
}

static int send_state(int fd, int state)
{
    int8_t byte = (int8_t)state;
    return hil_net_send_all(fd, &byte, 1, SETUP_TIMEOUT_MS);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* SERVER_ERROR is followed by iperf3's error number and errno, both 32-bit big-endian. */
static void send_server_error(int fd, int ierr, int err)
{
    uint8_t msg[9];
    msg[0] = (uint8_t)(int8_t)SERVER_ERROR;
    put_be32(msg + 1, (uint32_t)ierr);
    put_be32(msg + 5, (uint32_t)err);
    hil_net_send_all(fd, msg, sizeof msg, SETUP_TIMEOUT_MS);
}

static int send_json(int fd, const char *json)
{
    uint8_t len[4];
    put_be32(len, (uint32_t)strlen(json));
    if (hil_net_send_all(fd, len, 4, SETUP_TIMEOUT_MS) != 0) {
        return -1;
    }
    return hil_net_send_all(fd, json, strlen(json), SETUP_TIMEOUT_MS);
}

/* Refuse a control connection that arrives while a test runs, as the reference server does. */
static void deny_client(int listener)
{
    int fd = accept(listener, NULL, NULL);
    if (fd < 0) {
        return;
    }
    char cookie[COOKIE_SIZE];
    /* Read the cookie first: closing with unread data would reset the connection and the client
     * would see a reset instead of ACCESS_DENIED. */
    if (hil_net_recv_exact(fd, cookie, sizeof cookie, 1000) == 0) {
        send_state(fd, ACCESS_DENIED);
    }
    hil_net_close(fd);
    count(&stats.access_denied);
}

/* 0: parameters accepted; -1: not received; > 0: refused, with the iperf3 error number. */
static int read_params(test_t *t)
{
    uint8_t len_be[4];
    if (hil_net_recv_exact(t->ctrl, len_be, 4, SETUP_TIMEOUT_MS) != 0) {
        return -1;
    }
    uint32_t len = get_be32(len_be);
    if (len == 0 || len > MAX_PARAMS_JSON) {
        hil_log(HIL_LOG_WARN, TAG, "parameter JSON of %" PRIu32 " bytes refused", len);
        return -1;
    }
    char *json = malloc(len + 1);
    if (json == NULL) {
        return -1;
    }
    if (hil_net_recv_exact(t->ctrl, json, len, SETUP_TIMEOUT_MS) != 0) {
        free(json);
        return -1;
    }
    json[len] = '\0';
    params_t *p = &t->params;
    p->udp = hil_json_bool(json, "udp");
    p->reverse = hil_json_bool(json, "reverse");
    p->bidir = hil_json_bool(json, "bidirectional");
    p->parallel = (int)hil_json_int(json, "parallel", 1);
    p->duration_s = hil_json_int(json, "time", 10);
    p->omit_s = hil_json_int(json, "omit", 0);
    p->len = hil_json_int(json, "len", p->udp ? 1460 : 131072);
    p->bandwidth_bps = hil_json_int(json, "bandwidth", p->udp ? 1000000 : 0);
    p->window = hil_json_int(json, "window", 0);
    p->nodelay = hil_json_bool(json, "nodelay");
    p->mss = hil_json_int(json, "MSS", 0);
    p->udp_counters_64bit = hil_json_bool(json, "udp_counters_64bit");
    int has_tcp = hil_json_bool(json, "tcp");
    hil_log(HIL_LOG_INFO, TAG, "test: %s, %d stream(s)%s%s, %" PRId64 " s, len %" PRId64, p->udp ? "UDP" : "TCP",
            p->parallel, p->reverse ? ", reverse" : "", p->bidir ? ", bidirectional" : "", p->duration_s, p->len);
    free(json);
    if (!p->udp && !has_tcp) {
        hil_log(HIL_LOG_WARN, TAG, "parameters name neither tcp nor udp");
        return IE_UNIMPLEMENTED;
    }
    int total = p->bidir ? 2 * p->parallel : p->parallel;
    if (p->parallel < 1 || total > 2 * HIL_IPERF3_MAX_STREAMS || (!p->bidir && p->parallel > HIL_IPERF3_MAX_STREAMS)) {
        hil_log(HIL_LOG_WARN, TAG, "%d parallel streams refused (limit %d)", p->parallel, HIL_IPERF3_MAX_STREAMS);
        return IE_NUM_STREAMS;
    }
    if (p->len <= 0 || (p->udp && (p->len < 16 || p->len > 65507))) {
        hil_log(HIL_LOG_WARN, TAG, "block length %" PRId64 " refused", p->len);
        return IE_BLOCK_SIZE;
    }
    t->n_streams = total;
    return 0;
}

/* Roles in order of arrival: with --bidir the client connects its sending streams first. */
static void init_stream(test_t *t, int index, int fd)
{
    stream_t *s = &t->streams[index];
    memset(s, 0, sizeof *s);
    s->id = index == 0 ? 1 : index + 2;
    s->fd = fd;
    s->open = 1;
    if (t->params.bidir) {
        s->sender = index >= t->params.parallel;
    } else {
        s->sender = t->params.reverse;
    }
}

static void tune_tcp_stream(const params_t *p, int fd)
{
    if (p->window > 0) {
        int window = (int)p->window;
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &window, sizeof window);
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &window, sizeof window);
    }
    if (p->nodelay) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    hil_net_set_nonblocking(fd);
}

/* Wait for `fd` readable while watching the control connection; -1 if it closed or timed out. */
static int wait_setup(test_t *t, int fd, uint32_t deadline_ms)
{
    for (;;) {
        int32_t left = (int32_t)(deadline_ms - hil_time_ms());
        if (left <= 0) {
            return -1;
        }
        fd_set readable;
        FD_ZERO(&readable);
        FD_SET(fd, &readable);
        FD_SET(t->ctrl, &readable);
        struct timeval tv = {.tv_sec = left / 1000, .tv_usec = (left % 1000) * 1000};
        int rc = select((fd > t->ctrl ? fd : t->ctrl) + 1, &readable, NULL, NULL, &tv);
        if (rc < 0 && errno != EINTR) {
            return -1;
        }
        if (rc > 0 && FD_ISSET(t->ctrl, &readable)) {
            return -1; /* the client gave up (CLIENT_TERMINATE or close) during setup */
        }
        if (rc > 0 && FD_ISSET(fd, &readable)) {
            return 0;
        }
    }
}

static int create_tcp_streams(test_t *t)
{
    uint32_t deadline = hil_time_ms() + SETUP_TIMEOUT_MS;
    int have = 0;
    while (have < t->n_streams) {
        if (wait_setup(t, t->listener, deadline) != 0) {
            return -1;
        }
        int fd = accept(t->listener, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        char cookie[COOKIE_SIZE];
        if (hil_net_recv_exact(fd, cookie, sizeof cookie, SETUP_TIMEOUT_MS) != 0) {
            hil_net_close(fd);
            continue;
        }
        if (memcmp(cookie, t->cookie, COOKIE_SIZE) != 0) {
            /* Another client's control connection: it has to wait for this test. */
            send_state(fd, ACCESS_DENIED);
            hil_net_close(fd);
            count(&stats.access_denied);
            continue;
        }
        if (fd >= FD_SETSIZE) {
            hil_net_close(fd);
            return -1;
        }
        tune_tcp_stream(&t->params, fd);
        init_stream(t, have++, fd);
    }
    return 0;
}

static int same_peer(const struct sockaddr_in *a, const struct sockaddr_in *b)
{
    return a->sin_addr.s_addr == b->sin_addr.s_addr && a->sin_port == b->sin_port;
}

static int create_udp_streams(test_t *t)
{
    uint16_t bound = 0;
    t->udp_fd = hil_net_bind_udp(t->port, &bound);
    if (t->udp_fd < 0 || t->udp_fd >= FD_SETSIZE) {
        return -1;
    }
    if (t->params.window > 0) {
        int window = (int)t->params.window;
        setsockopt(t->udp_fd, SOL_SOCKET, SO_RCVBUF, &window, sizeof window);
        setsockopt(t->udp_fd, SOL_SOCKET, SO_SNDBUF, &window, sizeof window);
    }
    hil_net_set_nonblocking(t->udp_fd);
    /* The control state goes out only now, after the UDP socket is bound, so the client's first
     * datagram cannot arrive at a closed port. */
    if (send_state(t->ctrl, CREATE_STREAMS) != 0) {
        return -1;
    }
    uint32_t deadline = hil_time_ms() + SETUP_TIMEOUT_MS;
    int have = 0;
    while (have < t->n_streams) {
        if (wait_setup(t, t->udp_fd, deadline) != 0) {
            return -1;
        }
        struct sockaddr_in peer;
        socklen_t peer_len = sizeof peer;
        uint8_t msg[64];
        ssize_t n = recvfrom(t->udp_fd, msg, sizeof msg, 0, (struct sockaddr *)&peer, &peer_len);
        if (n < 0) {
            continue;
        }
        int known = 0;
        for (int i = 0; i < have; i++) {
            known |= same_peer(&t->streams[i].peer, &peer);
        }
        if (!known) {
            init_stream(t, have, -1);
            t->streams[have++].peer = peer;
        }
        sendto(t->udp_fd, UDP_CONNECT_REPLY, 4, 0, (struct sockaddr *)&peer, peer_len);
    }
    return 0;
}

static void account(test_t *t, stream_t *s, size_t n)
{
    if (hil_time_us() >= t->count_from_us) {
        s->bytes += n;
    }
}

static void tcp_receive(test_t *t, stream_t *s)
{
    ssize_t n = recv(s->fd, t->buf, t->buf_len, 0);
    if (n > 0) {
        account(t, s, (size_t)n);
    } else if (n == 0 || !hil_net_would_block(errno)) {
        s->open = 0; /* the client closed its end early: keep what it sent */
    }
}

/* The client's -b applies to whoever sends, TCP included: stay within the stream's byte budget. */
static int over_budget(const test_t *t, const stream_t *s, uint64_t sent_bytes, uint64_t now)
{
    if (t->params.bandwidth_bps <= 0) {
        return 0;
    }
    double elapsed_s = (double)(now - t->start_us) / 1e6;
    (void)s;
    return (double)sent_bytes * 8.0 >= (double)t->params.bandwidth_bps * elapsed_s;
}

static void tcp_send(test_t *t, stream_t *s)
{
    size_t chunk = (size_t)t->params.len < t->buf_len ? (size_t)t->params.len : t->buf_len;
    /* A few sends per wake-up: fewer select() calls for the same data. */
    for (int i = 0; i < 4; i++) {
        if (over_budget(t, s, s->sent_total, hil_time_us())) {
            return;
        }
        ssize_t n = send(s->fd, t->buf, chunk, 0);
        if (n > 0) {
            s->sent_total += (uint64_t)n;
            account(t, s, (size_t)n);
            continue;
        }
        if (n < 0 && !hil_net_would_block(errno)) {
            s->open = 0;
        }
        return;
    }
}

static stream_t *udp_stream_of(test_t *t, const struct sockaddr_in *peer)
{
    for (int i = 0; i < t->n_streams; i++) {
        if (same_peer(&t->streams[i].peer, peer)) {
            return &t->streams[i];
        }
    }
    return NULL;
}

/* Datagram header: sender's time (s, us) and a sequence number, big-endian, 32 or 64 bits. */
static void udp_receive(test_t *t)
{
    struct sockaddr_in peer;
    socklen_t peer_len = sizeof peer;
    ssize_t n = recvfrom(t->udp_fd, t->buf, t->buf_len, 0, (struct sockaddr *)&peer, &peer_len);
    size_t header = t->params.udp_counters_64bit ? 16 : 12;
    if (n < (ssize_t)header) {
        return; /* connect messages and runts */
    }
    stream_t *s = udp_stream_of(t, &peer);
    if (s == NULL || s->sender) {
        return;
    }
    uint64_t now = hil_time_us();
    if (now < t->count_from_us) {
        return;
    }
    s->bytes += (uint64_t)n;
    double sent_s = (double)get_be32(t->buf) + (double)get_be32(t->buf + 4) / 1e6;
    uint64_t seq = t->params.udp_counters_64bit ? ((uint64_t)get_be32(t->buf + 8) << 32) | get_be32(t->buf + 12)
                                                : get_be32(t->buf + 8);
    if (seq >= s->packets + 1) {
        s->lost += seq - 1 - s->packets;
        s->packets = seq;
    } else {
        s->out_of_order++;
        if (s->lost > 0) {
            s->lost--;
        }
    }
    /* RFC 1889 jitter; the clock offset between the hosts cancels out in the differences. */
    double transit = (double)now / 1e6 - sent_s;
    if (s->have_transit) {
        double d = transit - s->prev_transit_s;
        if (d < 0) {
            d = -d;
        }
        s->jitter_s += (d - s->jitter_s) / 16.0;
    }
    s->prev_transit_s = transit;
    s->have_transit = 1;
}

static void udp_send(test_t *t, stream_t *s, uint64_t now)
{
    size_t len = (size_t)t->params.len < t->buf_len ? (size_t)t->params.len : t->buf_len;
    /* Pace each stream at the requested rate (0 = as fast as the socket takes them). */
    for (int i = 0; i < 8; i++) {
        if (over_budget(t, s, s->next_seq * len, now)) {
            return;
        }
        uint64_t seq = s->next_seq + 1;
        put_be32(t->buf, (uint32_t)(now / 1000000u));
        put_be32(t->buf + 4, (uint32_t)(now % 1000000u));
        if (t->params.udp_counters_64bit) {
            put_be32(t->buf + 8, (uint32_t)(seq >> 32));
            put_be32(t->buf + 12, (uint32_t)seq);
        } else {
            put_be32(t->buf + 8, (uint32_t)seq);
        }
        ssize_t n = sendto(t->udp_fd, t->buf, len, 0, (struct sockaddr *)&s->peer, sizeof s->peer);
        if (n < 0) {
            return; /* buffer full: try again on the next wake-up */
        }
        s->next_seq = seq;
        s->packets = seq;
        account(t, s, (size_t)n);
    }
}

static int any_stream_sender(const test_t *t)
{
    for (int i = 0; i < t->n_streams; i++) {
        if (t->streams[i].sender) {
            return 1;
        }
    }
    return 0;
}

/* Move data until the client sends TEST_END. Returns 0 then, -1 if the test broke off. */
static int run_data_phase(test_t *t)
{
    uint32_t limit_ms = t->params.duration_s > 0
                            ? (uint32_t)(t->params.duration_s + t->params.omit_s) * 1000u + RUN_SLACK_MS
                            : NO_DURATION_LIMIT_MS;
    uint32_t deadline = hil_time_ms() + limit_ms;
    int udp_sending = t->params.udp && any_stream_sender(t);
    int tcp_paced = !t->params.udp && any_stream_sender(t) && t->params.bandwidth_bps > 0;
    for (;;) {
        if ((int32_t)(deadline - hil_time_ms()) <= 0) {
            hil_log(HIL_LOG_WARN, TAG, "no TEST_END within %" PRIu32 " ms", limit_ms);
            return -1;
        }
        fd_set readable;
        fd_set writable;
        FD_ZERO(&readable);
        FD_ZERO(&writable);
        FD_SET(t->ctrl, &readable);
        FD_SET(t->listener, &readable);
        int max_fd = t->ctrl > t->listener ? t->ctrl : t->listener;
        if (t->params.udp) {
            FD_SET(t->udp_fd, &readable);
            max_fd = t->udp_fd > max_fd ? t->udp_fd : max_fd;
        } else {
            for (int i = 0; i < t->n_streams; i++) {
                stream_t *s = &t->streams[i];
                if (s->open && s->sender && tcp_paced && over_budget(t, s, s->sent_total, hil_time_us())) {
                    continue; /* nothing to send yet: the 1 ms timeout wakes us */
                }
                if (s->open) {
                    FD_SET(s->fd, s->sender ? &writable : &readable);
                    max_fd = s->fd > max_fd ? s->fd : max_fd;
                }
            }
        }
        /* Paced UDP wakes up every millisecond; otherwise sockets drive the loop. */
        int paced = udp_sending || tcp_paced;
        struct timeval tv = {.tv_sec = paced ? 0 : 1, .tv_usec = paced ? 1000 : 0};
        int rc = select(max_fd + 1, &readable, udp_sending ? NULL : &writable, NULL, &tv);
        if (rc < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        if (rc > 0 && FD_ISSET(t->ctrl, &readable)) {
            int8_t state = 0;
            ssize_t n = recv(t->ctrl, &state, 1, 0);
            if (n == 0 || (n < 0 && !hil_net_would_block(errno))) {
                hil_log(HIL_LOG_WARN, TAG, "client closed the control connection during the test");
                return -1;
            }
            if (n == 1 && state == TEST_END) {
                t->end_us = hil_time_us();
                return 0;
            }
            if (n == 1 && (state == CLIENT_TERMINATE || state == SERVER_TERMINATE)) {
                hil_log(HIL_LOG_WARN, TAG, "client terminated the test");
                return -1;
            }
        }
        if (rc > 0 && FD_ISSET(t->listener, &readable)) {
            deny_client(t->listener);
        }
        if (t->params.udp) {
            if (rc > 0 && FD_ISSET(t->udp_fd, &readable)) {
                for (int i = 0; i < 16; i++) { /* drain a burst per wake-up */
                    udp_receive(t);
                }
            }
            if (udp_sending) {
                uint64_t now = hil_time_us();
                for (int i = 0; i < t->n_streams; i++) {
                    if (t->streams[i].sender) {
                        udp_send(t, &t->streams[i], now);
                    }
                }
            }
            continue;
        }
        for (int i = 0; rc > 0 && i < t->n_streams; i++) {
            stream_t *s = &t->streams[i];
            if (!s->open) {
                continue;
            }
            if (s->sender && FD_ISSET(s->fd, &writable)) {
                tcp_send(t, s);
            } else if (!s->sender && FD_ISSET(s->fd, &readable)) {
                tcp_receive(t, s);
            }
        }
    }
}

/* The client's own results are not needed: read them off the connection in pieces. */
static int skip_peer_results(test_t *t)
{
    uint8_t len_be[4];
    if (hil_net_recv_exact(t->ctrl, len_be, 4, SETUP_TIMEOUT_MS) != 0) {
        return -1;
    }
    uint32_t left = get_be32(len_be);
    if (left > MAX_PEER_RESULTS) {
        return -1;
    }
    while (left > 0) {
        uint32_t chunk = left < t->buf_len ? left : (uint32_t)t->buf_len;
        if (hil_net_recv_exact(t->ctrl, t->buf, chunk, SETUP_TIMEOUT_MS) != 0) {
            return -1;
        }
        left -= chunk;
    }
    return 0;
}

static char *format_results(test_t *t)
{
    size_t cap = 256 + (size_t)t->n_streams * 256;
    char *json = malloc(cap);
    if (json == NULL) {
        return NULL;
    }
    double wall_s = (double)(t->end_us - t->count_from_us) / 1e6;
    if (t->end_us < t->count_from_us) {
        wall_s = 0;
    }
    double user_pct = 0;
    double sys_pct = 0;
    uint64_t user_us;
    uint64_t sys_us;
    if (t->cpu_known && wall_s > 0 && hil_cpu_time_us(&user_us, &sys_us) == 0) {
        double run_s = (double)(t->end_us - t->start_us) / 1e6;
        user_pct = (double)(user_us - t->cpu_user_us) / 1e6 / run_s * 100.0;
        sys_pct = (double)(sys_us - t->cpu_sys_us) / 1e6 / run_s * 100.0;
    }
    /* Portable code cannot read TCP retransmissions: say so the way iperf3 does without TCP_INFO. */
    int sender_has_retransmits = any_stream_sender(t) ? 0 : -1;
    int off = snprintf(json, cap,
                       "{\"cpu_util_total\":%.6f,\"cpu_util_user\":%.6f,\"cpu_util_system\":%.6f,"
                       "\"sender_has_retransmits\":%d,\"streams\":[",
                       user_pct + sys_pct, user_pct, sys_pct, sender_has_retransmits);
    for (int i = 0; i < t->n_streams && off > 0 && (size_t)off < cap; i++) {
        const stream_t *s = &t->streams[i];
        off += snprintf(json + off, cap - (size_t)off,
                        "%s{\"id\":%d,\"bytes\":%" PRIu64 ",\"retransmits\":-1,\"jitter\":%.9f,\"errors\":%" PRIu64
                        ",\"omitted_errors\":0,\"packets\":%" PRIu64
                        ",\"omitted_packets\":0,\"start_time\":0,\"end_time\":%.6f}",
                        i ? "," : "", s->id, s->bytes, s->jitter_s, s->lost, s->packets, wall_s);
    }
    if (off < 0 || (size_t)off + 3 > cap) {
        free(json);
        return NULL;
    }
    memcpy(json + off, "]}", 3);
    return json;
}

/*
 * After TEST_END the client reads its data sockets with blocking reads of whole blocks until it
 * notices EXCHANGE_RESULTS. A server with large socket buffers has plenty in flight to satisfy
 * those reads; a stack with small buffers (smoltcp: 48 KiB) drains in milliseconds and the client
 * blocks forever mid-block. So keep the sending streams flowing until the client's results arrive.
 */
static int wait_results_sending(test_t *t)
{
    uint32_t deadline = hil_time_ms() + SETUP_TIMEOUT_MS;
    for (;;) {
        int32_t left = (int32_t)(deadline - hil_time_ms());
        if (left <= 0) {
            return -1;
        }
        fd_set readable;
        fd_set writable;
        FD_ZERO(&readable);
        FD_ZERO(&writable);
        FD_SET(t->ctrl, &readable);
        int max_fd = t->ctrl;
        for (int i = 0; i < t->n_streams; i++) {
            if (t->streams[i].sender && t->streams[i].open && !t->params.udp) {
                FD_SET(t->streams[i].fd, &writable);
                max_fd = t->streams[i].fd > max_fd ? t->streams[i].fd : max_fd;
            }
        }
        struct timeval tv = {.tv_sec = left / 1000, .tv_usec = (left % 1000) * 1000};
        int rc = select(max_fd + 1, &readable, &writable, NULL, &tv);
        if (rc < 0 && errno != EINTR) {
            return -1;
        }
        if (rc > 0 && FD_ISSET(t->ctrl, &readable)) {
            return 0;
        }
        for (int i = 0; rc > 0 && i < t->n_streams; i++) {
            stream_t *s = &t->streams[i];
            if (s->sender && s->open && !t->params.udp && FD_ISSET(s->fd, &writable)) {
                uint64_t counted = s->bytes;
                tcp_send(t, s);
                s->bytes = counted; /* the test is over: these bytes only keep the client reading */
            }
        }
    }
}

static int finish_test(test_t *t)
{
    if (send_state(t->ctrl, EXCHANGE_RESULTS) != 0 || wait_results_sending(t) != 0 || skip_peer_results(t) != 0) {
        return -1;
    }
    char *json = format_results(t);
    if (json == NULL) {
        return -1;
    }
    int rc = send_json(t->ctrl, json);
    free(json);
    if (rc != 0 || send_state(t->ctrl, DISPLAY_RESULTS) != 0) {
        return -1;
    }
    int8_t state = 0;
    /* IPERF_DONE; a client that just closes has seen its results too. */
    int got = hil_net_recv_exact(t->ctrl, &state, 1, SETUP_TIMEOUT_MS);
    return (got == 0 && state == IPERF_DONE) || got == -2 ? 0 : -1;
}

static int run_test(test_t *t)
{
    if (hil_net_recv_exact(t->ctrl, t->cookie, COOKIE_SIZE, SETUP_TIMEOUT_MS) != 0) {
        return -1;
    }
    if (send_state(t->ctrl, PARAM_EXCHANGE) != 0) {
        return -1;
    }
    int prc = read_params(t);
    if (prc != 0) {
        /* A refused parameter names iperf3's own error number, so the client prints why. */
        send_server_error(t->ctrl, prc > 0 ? prc : IE_RECV_PARAMS, 0);
        return -1;
    }
    int crc = t->params.udp ? create_udp_streams(t)
                            : (send_state(t->ctrl, CREATE_STREAMS) == 0 ? create_tcp_streams(t) : -1);
    if (crc != 0) {
        hil_log(HIL_LOG_WARN, TAG, "could not set up the data streams");
        send_server_error(t->ctrl, IE_CREATE_STREAMS, errno);
        return -1;
    }
    if (send_state(t->ctrl, TEST_START) != 0 || send_state(t->ctrl, TEST_RUNNING) != 0) {
        return -1;
    }
    t->start_us = hil_time_us();
    t->count_from_us = t->start_us + (uint64_t)(t->params.omit_s > 0 ? t->params.omit_s : 0) * 1000000u;
    t->cpu_known = hil_cpu_time_us(&t->cpu_user_us, &t->cpu_sys_us) == 0;
    if (run_data_phase(t) != 0) {
        return -1;
    }
    return finish_test(t);
}

static void close_test(test_t *t)
{
    for (int i = 0; i < t->n_streams; i++) {
        hil_net_close(t->streams[i].fd);
    }
    hil_net_close(t->udp_fd);
    hil_net_close(t->ctrl);
    t->n_streams = 0;
    t->udp_fd = -1;
    t->ctrl = -1;
}

int hil_iperf3_server_run(uint16_t port)
{
    if (stats_lock == NULL && (stats_lock = hil_mutex_create()) == NULL) {
        return -1;
    }
    test_t *t = calloc(1, sizeof *t);
    if (t == NULL) {
        return -1;
    }
    t->buf_len = HIL_IPERF3_BUF_BYTES;
    t->buf = malloc(t->buf_len);
    if (t->buf == NULL) {
        free(t);
        return -1;
    }
    /* The payload content does not matter, but a fixed pattern keeps captures readable. */
    for (size_t i = 0; i < t->buf_len; i++) {
        t->buf[i] = (uint8_t)('0' + i % 10);
    }
    t->listener = hil_net_listen_tcp(port, 2 * HIL_IPERF3_MAX_STREAMS, &t->port);
    if (t->listener < 0) {
        free(t->buf);
        free(t);
        return -1;
    }
    t->ctrl = -1;
    t->udp_fd = -1;
    hil_log(HIL_LOG_INFO, TAG, "iperf3 server on port %u", (unsigned)t->port);
    hil_services_notify_ready("iperf3", &t->port, 1, NULL, 0);
    for (;;) {
        int ctrl = accept(t->listener, NULL, NULL);
        if (ctrl < 0) {
            if (!hil_net_would_block(errno) && errno != ECONNABORTED) {
                hil_sleep_ms(100);
            }
            continue;
        }
        if (ctrl >= FD_SETSIZE) {
            hil_net_close(ctrl);
            continue;
        }
        int one = 1;
        setsockopt(ctrl, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        t->ctrl = ctrl;
        memset(&t->params, 0, sizeof t->params);
        t->n_streams = 0;
        for (int i = 0; i < 2 * HIL_IPERF3_MAX_STREAMS; i++) {
            t->streams[i].fd = -1;
        }
        int rc = run_test(t);
        if (rc == 0) {
            hil_log(HIL_LOG_INFO, TAG, "test done");
        }
        count(rc == 0 ? &stats.tests_done : &stats.tests_failed);
        close_test(t);
    }
}
