/* The native firmware's network runtime: see netstack.h. */
#define _GNU_SOURCE
#include "netstack.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "hil_platform.h"
#include "iface_guard.h"

#define TAG "net_stack"
#ifndef IFF_LOWER_UP
#define IFF_LOWER_UP 0x10000 /* linux/if.h; net/if.h (needed for ifreq) does not define it */
#endif
/* Passes of "run the requests, poll again" per wake-up before sleeping again. */
#define MAX_PASSES 8
/* The RX socket's kernel queue: a few hundred frames, so the pool (not the kernel) is what runs out. */
#define RX_SOCKET_BUFFER (4 * 1024 * 1024)
/* The TX ring is the AF_PACKET socket's send buffer: a frame stays charged to it until the DUT end's
 * qdisc hands it to the cable, and the kernel charges 2304 B for a full 1514 B frame (measured with
 * SIOCOUTQ on this kernel), so tx_ring full frames fill it. SO_SNDBUF is doubled by the kernel. */
#define TX_FRAME_CHARGE 2304
#define WIRE_OVERHEAD_BYTES 24 /* preamble, FCS, inter-frame gap: what the rate cap counts per frame */
#define MAX_FRAME 2048
/* Frames that may wait for a descriptor: the one smoltcp was building when the ring filled, and the replies it
 * makes while it processes a received frame (its receive path hands out a transmit token without asking
 * tx_ready), which would otherwise be lost as tx_fails under a full ring. */
#define HELD_FRAMES 4

typedef struct request {
    hil_net_op_fn op;
    void *arg;
    int64_t deadline_us;
    int64_t result;
    atomic_int done;
    atomic_int withdrawn;
    int wake_fd;
    struct request *next;
} request_t;

static struct {
    hil_net_config_t cfg;
    int ifindex;
    int packet_fd;
    int netlink_fd;
    int wake_fd; /* the poll thread's: a frame, a request, a withdrawal */
    const hs_pool_t *pool;
    hs_stack_t *stack;
    pthread_mutex_t lock; /* guards `incoming` */
    request_t *incoming;
    request_t *parked; /* poll thread only */
    atomic_bool link_up;
    atomic_uint_fast64_t link_ups, link_downs, rx_csum_not_ready, polls, tx_ring_full, rx_frames, rx_bytes;
    atomic_uint_fast64_t held_lost; /* held frames whose late send failed: tx_fails the stack never saw */
    uint64_t rx_kernel_drops; /* poll thread only (PACKET_STATISTICS resets on read) */
    int64_t start_us;
    /* poll thread only: the frame the full ring could not take yet (the ring's last descriptor) */
    uint8_t held[HELD_FRAMES][MAX_FRAME]; /* a FIFO of frames waiting for free descriptors */
    size_t held_lens[HELD_FRAMES];
    int held_head, held_count;
    /* poll thread only: the rate cap's bucket, in bits (may run below zero) */
    int64_t tokens_bits, tokens_at_us;
} net = {.lock = PTHREAD_MUTEX_INITIALIZER, .packet_fd = -1, .netlink_fd = -1, .wake_fd = -1};

static pthread_key_t wake_key;
static pthread_once_t wake_key_once = PTHREAD_ONCE_INIT;

int64_t hil_net_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t stack_now(void)
{
    return hil_net_now_us() - net.start_us;
}

static void kick(int fd)
{
    uint64_t one = 1;
    if (write(fd, &one, sizeof one) < 0 && errno != EAGAIN) {
        hil_log(HIL_LOG_ERROR, TAG, "wake-up write failed: errno %d", errno);
    }
}

static void drain(int fd)
{
    uint64_t count;
    while (read(fd, &count, sizeof count) == sizeof count) {
    }
}

void hil_net_default_config(hil_net_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->ifname = "eth0";
    cfg->pool_slots = 32;
    cfg->slot_bytes = 1600;
    cfg->tx_ring = 30;
    cfg->thread_priority = 10;
    cfg->stack.frame_mtu = 1500; /* what esp_smoltcp_glue reports to smoltcp (see docs/smoltcp.md) */
    cfg->stack.max_sockets = 32;
    cfg->stack.tcp_rx_bytes = 16 * 1024;
    cfg->stack.tcp_tx_bytes = 48 * 1024;
    cfg->stack.udp_rx_bytes = 4 * 1024;
    cfg->stack.udp_tx_bytes = 4 * 1024;
    cfg->stack.udp_packets = 16;
    cfg->stack.listen_pool_max = 8;
    cfg->dhcp = true;
}

/* --- the wire --------------------------------------------------------------------------------------- */

static void warn_tx_failure(void)
{
    static int last_errno;
    if (errno != last_errno) {
        last_errno = errno;
        hil_log(HIL_LOG_WARN, TAG, "transmit failed: %s (counted in tx_fails)", strerror(errno));
    }
}

/* Send the held frames, oldest first, while the ring has room; true when nothing is held any more. */
static bool flush_held(void)
{
    while (net.held_count > 0) {
        size_t len = net.held_lens[net.held_head];
        if (send(net.packet_fd, net.held[net.held_head], len, MSG_DONTWAIT) != (ssize_t)len) {
            if (errno == EAGAIN) {
                return false;
            }
            warn_tx_failure(); /* lost after all: a down link, a dropping qdisc */
            atomic_fetch_add(&net.held_lost, 1);
        }
        net.held_head = (net.held_head + 1) % HELD_FRAMES;
        net.held_count--;
    }
    return true;
}

static bool hold(const uint8_t *frame, size_t len)
{
    if (net.held_count == HELD_FRAMES || len > MAX_FRAME) {
        return false;
    }
    int tail = (net.held_head + net.held_count) % HELD_FRAMES;
    memcpy(net.held[tail], frame, len);
    net.held_lens[tail] = len;
    net.held_count++;
    return true;
}

/* Microseconds until the rate cap lets the next frame go (0: now). */
static int64_t rate_wait_us(int64_t now)
{
    if (net.cfg.tx_rate_bps == 0) {
        return 0;
    }
    int64_t bucket = (int64_t)(2 * (1514 + WIRE_OVERHEAD_BYTES) * 8);
    net.tokens_bits += (now - net.tokens_at_us) * (int64_t)net.cfg.tx_rate_bps / 1000000;
    net.tokens_at_us = now;
    if (net.tokens_bits > bucket) {
        net.tokens_bits = bucket;
    }
    return net.tokens_bits >= 0 ? 0 : 1 + -net.tokens_bits * 1000000 / (int64_t)net.cfg.tx_rate_bps;
}

/* smoltcp asks before it builds a frame: no room in the ring (or under the rate cap) holds it back. */
static bool tx_ready(void *ctx)
{
    (void)ctx;
    return flush_held() && rate_wait_us(hil_net_now_us()) == 0;
}

static int transmit(void *ctx, const uint8_t *frame, size_t len)
{
    (void)ctx;
    if (net.cfg.tx_filter != NULL && net.cfg.tx_filter(frame, len, net.cfg.filter_arg) != HIL_NET_PASS) {
        return 0; /* the fault: the frame is never sent, and nothing tells */
    }
    net.tokens_bits -= (int64_t)(len + WIRE_OVERHEAD_BYTES) * 8;
    bool queued_behind = !flush_held();
    if (!queued_behind && send(net.packet_fd, frame, len, MSG_DONTWAIT) == (ssize_t)len) {
        return 0;
    }
    if ((queued_behind || errno == EAGAIN) && hold(frame, len)) {
        /* The ring is full: the frame waits for the next free descriptor, behind those already waiting. */
        atomic_fetch_add(&net.tx_ring_full, 1);
        return 0;
    }
    errno = queued_behind ? EAGAIN : errno;
    /* A down link, a dropping qdisc: a tx_fail, as on the board. */
    warn_tx_failure();
    return -1;
}

static void *rx_thread(void *arg)
{
    (void)arg;
    static uint8_t scratch[65536];
    char control[CMSG_SPACE(sizeof(struct tpacket_auxdata))];
    bool warned = false;
    for (;;) {
        uint32_t index = 0;
        uint8_t *slot = hs_pool_acquire(net.pool, &index);
        struct iovec iov = {.iov_base = slot ? slot : scratch, .iov_len = slot ? net.cfg.slot_bytes : sizeof scratch};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                             .msg_controllen = sizeof control};
        ssize_t n = recvmsg(net.packet_fd, &msg, MSG_TRUNC);
        if (n < 0) {
            if (slot) {
                hs_pool_release(net.pool, index);
            }
            if (errno == EINTR || errno == ENETDOWN) {
                continue;
            }
            hil_log(HIL_LOG_ERROR, TAG, "RX socket failed: errno %d", errno);
            return NULL;
        }
        atomic_fetch_add(&net.rx_frames, 1);
        atomic_fetch_add(&net.rx_bytes, (uint64_t)n);
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level == SOL_PACKET && c->cmsg_type == PACKET_AUXDATA) {
                struct tpacket_auxdata aux;
                memcpy(&aux, CMSG_DATA(c), sizeof aux);
                if (aux.tp_status & TP_STATUS_CSUMNOTREADY) {
                    net.rx_csum_not_ready++;
                    if (!warned) {
                        warned = true;
                        hil_log(HIL_LOG_WARN, TAG,
                                "frame with an unfinished checksum (TX checksum offload on the peer): smoltcp drops "
                                "it; turn offload off on the cable's other end (ethtool -K <if> tx off)");
                    }
                }
            }
        }
        hil_net_verdict_t verdict = HIL_NET_PASS;
        if (slot == NULL || (size_t)n > net.cfg.slot_bytes) {
            verdict = HIL_NET_POOL_DROP; /* no free slot, or a frame larger than a slot */
        } else if (net.cfg.rx_filter != NULL) {
            verdict = net.cfg.rx_filter(slot, (size_t)n, net.cfg.filter_arg);
        }
        if (verdict != HIL_NET_PASS) {
            if (slot) {
                hs_pool_release(net.pool, index);
            }
            if (verdict == HIL_NET_POOL_DROP) {
                hs_pool_count_drop(net.pool); /* esp_smoltcp's frame_pool_drops */
            }
            continue;
        }
        if (hs_pool_submit(net.pool, index, (uint32_t)n)) {
            kick(net.wake_fd);
        }
    }
}

/* --- link ------------------------------------------------------------------------------------------- */

static bool carrier_now(void)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", net.cfg.ifname);
    return ioctl(net.packet_fd, SIOCGIFFLAGS, &ifr) == 0 && (ifr.ifr_flags & IFF_RUNNING);
}

static void emit(hil_net_event_kind_t kind, const hs_event_t *lease)
{
    hil_net_event_t event = {.kind = kind};
    if (lease != NULL) {
        event.ip = lease->ip;
        event.netmask = lease->netmask;
        event.gw = lease->gw;
        event.server = lease->server;
        event.lease_s = lease->lease_s;
    }
    if (net.cfg.on_event != NULL) {
        net.cfg.on_event(&event, net.cfg.event_arg);
    }
}

static void set_link(bool up)
{
    if (atomic_exchange(&net.link_up, up) == up) {
        return;
    }
    hs_stack_set_link(net.stack, up);
    atomic_fetch_add(up ? &net.link_ups : &net.link_downs, 1);
    hil_log(HIL_LOG_INFO, TAG, "ETH link %s", up ? "up" : "down");
    emit(up ? HIL_NET_LINK_UP : HIL_NET_LINK_DOWN, NULL);
}

static void read_netlink(void)
{
    char buf[8192];
    for (;;) {
        ssize_t n = recv(net.netlink_fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n <= 0) {
            return;
        }
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type != RTM_NEWLINK && h->nlmsg_type != RTM_DELLINK) {
                continue;
            }
            const struct ifinfomsg *ifi = NLMSG_DATA(h);
            if (ifi->ifi_index == net.ifindex) {
                set_link(h->nlmsg_type == RTM_NEWLINK && (ifi->ifi_flags & IFF_LOWER_UP));
            }
        }
    }
}

/* --- interface bring-up ----------------------------------------------------------------------------- */

static int write_sysctl(const char *path, const char *value)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    ssize_t n = write(fd, value, strlen(value));
    close(fd);
    return n == (ssize_t)strlen(value) ? 0 : -1;
}

static int bring_up_interface(int fd)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", net.cfg.ifname);
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) != 0) {
        hil_log(HIL_LOG_ERROR, TAG, "interface %s: %s", net.cfg.ifname, strerror(errno));
        return -1;
    }
    short flags = ifr.ifr_flags;
    ifr.ifr_flags = (short)(flags & ~IFF_UP);
    if ((flags & IFF_UP) && ioctl(fd, SIOCSIFFLAGS, &ifr) != 0) {
        hil_log(HIL_LOG_ERROR, TAG, "cannot take %s down to set its MAC: %s", net.cfg.ifname, strerror(errno));
        return -1;
    }
    ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
    memcpy(ifr.ifr_hwaddr.sa_data, net.cfg.mac, 6);
    if (ioctl(fd, SIOCSIFHWADDR, &ifr) != 0) {
        hil_log(HIL_LOG_ERROR, TAG, "cannot set the MAC of %s: %s", net.cfg.ifname, strerror(errno));
        return -1;
    }
    /* The kernel must not speak on this interface: no IPv6 (no link-local, no NDP, no RS). */
    char path[128];
    snprintf(path, sizeof path, "/proc/sys/net/ipv6/conf/%s/disable_ipv6", net.cfg.ifname);
    if (write_sysctl(path, "1") != 0 && errno != ENOENT) {
        hil_log(HIL_LOG_ERROR, TAG, "cannot disable kernel IPv6 on %s (%s)", net.cfg.ifname, strerror(errno));
        return -1;
    }
    memset(&ifr.ifr_addr, 0, sizeof ifr.ifr_addr);
    ifr.ifr_addr.sa_family = AF_INET;
    if (ioctl(fd, SIOCGIFADDR, &ifr) == 0) {
        char text[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr, text, sizeof text);
        hil_log(HIL_LOG_ERROR, TAG,
                "%s has the kernel IPv4 address %s: the kernel would answer ARP/ICMP/TCP beside smoltcp; remove it",
                net.cfg.ifname, text);
        return -1;
    }
    ifr.ifr_flags = (short)(flags | IFF_UP);
    if (ioctl(fd, SIOCSIFFLAGS, &ifr) != 0) {
        hil_log(HIL_LOG_ERROR, TAG, "cannot bring %s up: %s", net.cfg.ifname, strerror(errno));
        return -1;
    }
    return 0;
}

static int open_packet_socket(void)
{
    int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    if (fd < 0) {
        hil_log(HIL_LOG_ERROR, TAG, "AF_PACKET socket: %s (needs CAP_NET_RAW)", strerror(errno));
        return -1;
    }
    int one = 1;
    int rcv = RX_SOCKET_BUFFER;
    int snd = (int)(net.cfg.tx_ring * TX_FRAME_CHARGE / 2);
    setsockopt(fd, SOL_PACKET, PACKET_AUXDATA, &one, sizeof one);
    setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &snd, sizeof snd);
    struct sockaddr_ll addr = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = net.ifindex};
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        hil_log(HIL_LOG_ERROR, TAG, "bind AF_PACKET to %s: %s", net.cfg.ifname, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int open_netlink(void)
{
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
    struct sockaddr_nl addr = {.nl_family = AF_NETLINK, .nl_groups = RTMGRP_LINK};
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        hil_log(HIL_LOG_ERROR, TAG, "netlink link watch: %s", strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    return fd;
}

/* --- the poll thread -------------------------------------------------------------------------------- */

static void complete(request_t **link, int64_t result)
{
    request_t *r = *link;
    *link = r->next;
    int wake_fd = r->wake_fd; /* r belongs to the caller again once done is set */
    r->result = result;
    atomic_store_explicit(&r->done, 1, memory_order_release);
    kick(wake_fd);
}

static void dispatch_events(void)
{
    hs_event_t event;
    static uint32_t bound_ip;
    while (hs_stack_next_event(net.stack, &event)) {
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &event.ip, ip, sizeof ip);
        if (event.kind == HS_EVENT_BOUND) {
            char server[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, &event.server, server, sizeof server);
            hil_log(HIL_LOG_INFO, TAG, "DHCPv4 bound %s from %s, lease %u s", ip, server, (unsigned)event.lease_s);
            if (event.ip != bound_ip) {
                bound_ip = event.ip;
                emit(HIL_NET_GOT_IP, &event);
            }
            emit(HIL_NET_DHCP, &event);
        } else {
            hil_log(HIL_LOG_INFO, TAG, "DHCPv4 lost %s", ip);
            bound_ip = 0;
            emit(HIL_NET_LOST_IP, &event);
        }
    }
}

/* Run every parked request once; returns how many finished. */
static int run_requests(int64_t now)
{
    int finished = 0;
    for (request_t **link = &net.parked; *link != NULL;) {
        request_t *r = *link;
        int64_t result = atomic_load(&r->withdrawn) ? HIL_NET_AGAIN : r->op(net.stack, r->arg);
        if (result != HIL_NET_AGAIN || atomic_load(&r->withdrawn) || now >= r->deadline_us) {
            complete(link, result);
            finished++;
        } else {
            link = &r->next;
        }
    }
    return finished;
}

static int64_t next_wake_us(int64_t now, bool idle_spin)
{
    int64_t delay = hs_stack_poll_delay_us(net.stack, stack_now());
    if (delay == 0 && idle_spin) {
        delay = 1000; /* smoltcp wants a poll but the last ones moved nothing (e.g. link down): no spinning */
    }
    int64_t rate_wait = rate_wait_us(now);
    if (rate_wait > 0 && (delay < 0 || delay > rate_wait)) {
        delay = rate_wait; /* the rate cap lets the next frame go then */
    }
    for (request_t *r = net.parked; r != NULL; r = r->next) {
        int64_t left = r->deadline_us - now;
        if (left < 0) {
            left = 0;
        }
        if (delay < 0 || left < delay) {
            delay = left;
        }
    }
    return delay;
}

static void *poll_thread(void *arg)
{
    (void)arg;
    bool idle_spin = false;
    for (;;) {
        int64_t now = hil_net_now_us();
        int64_t delay = next_wake_us(now, idle_spin);
        /* A held frame: wake when the ring drains (the socket turns writable at half its buffer). */
        struct pollfd fds[3] = {{.fd = net.wake_fd, .events = POLLIN},
                                {.fd = net.netlink_fd, .events = POLLIN},
                                {.fd = net.packet_fd, .events = POLLOUT}};
        struct timespec ts = {.tv_sec = delay / 1000000, .tv_nsec = (delay % 1000000) * 1000};
        if (ppoll(fds, net.held_count ? 3 : 2, delay < 0 ? NULL : &ts, NULL) < 0 && errno != EINTR) {
            hil_log(HIL_LOG_ERROR, TAG, "poll thread: ppoll errno %d", errno);
        }
        drain(net.wake_fd);
        if (fds[1].revents & POLLIN) {
            read_netlink();
        }
        if (net.cfg.on_pass != NULL) {
            net.cfg.on_pass(net.cfg.filter_arg);
        }
        pthread_mutex_lock(&net.lock);
        request_t *fresh = net.incoming;
        net.incoming = NULL;
        pthread_mutex_unlock(&net.lock);
        /* Keep arrival order: append the new requests (pushed LIFO) reversed. */
        request_t **tail = &net.parked;
        while (*tail != NULL) {
            tail = &(*tail)->next;
        }
        request_t *reversed = NULL;
        while (fresh != NULL) {
            request_t *next = fresh->next;
            fresh->next = reversed;
            reversed = fresh;
            fresh = next;
        }
        *tail = reversed;

        hs_stats_t before;
        hs_stack_stats(net.stack, &before);
        bool changed = false;
        /* One poll pass; again only while requests finish (what they queued goes out at once). */
        for (int pass = 0; pass < MAX_PASSES; pass++) {
            changed |= hs_stack_poll(net.stack, stack_now());
            atomic_fetch_add(&net.polls, 1);
            dispatch_events();
            if (run_requests(hil_net_now_us()) == 0) {
                break;
            }
        }
        hs_stats_t after;
        hs_stack_stats(net.stack, &after);
        idle_spin = !changed && after.tx_frames == before.tx_frames && after.rx_frames == before.rx_frames;
    }
    return NULL;
}

/* --- calls from other threads ----------------------------------------------------------------------- */

void hil_net_kick(void)
{
    if (net.wake_fd >= 0) {
        kick(net.wake_fd);
    }
}

static void close_wake_fd(void *value)
{
    close((int)(intptr_t)value - 1);
}

static void make_wake_key(void)
{
    pthread_key_create(&wake_key, close_wake_fd);
}

static int thread_wake_fd(void)
{
    pthread_once(&wake_key_once, make_wake_key);
    intptr_t stored = (intptr_t)pthread_getspecific(wake_key);
    if (stored != 0) {
        return (int)stored - 1;
    }
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) {
        return -1;
    }
    pthread_setspecific(wake_key, (void *)(intptr_t)(fd + 1));
    return fd;
}

int64_t hil_net_call(hil_net_op_fn op, void *arg, int64_t deadline_us, struct pollfd *kernel_fds, int n_kernel_fds)
{
    request_t r = {.op = op, .arg = arg, .deadline_us = deadline_us, .wake_fd = thread_wake_fd()};
    if (r.wake_fd < 0 || net.stack == NULL) {
        return HIL_NET_AGAIN;
    }
    pthread_mutex_lock(&net.lock);
    r.next = net.incoming;
    net.incoming = &r;
    pthread_mutex_unlock(&net.lock);
    kick(net.wake_fd);

    struct pollfd stack_fds[16];
    struct pollfd *fds = n_kernel_fds + 1 <= 16 ? stack_fds : malloc(sizeof *fds * (size_t)(n_kernel_fds + 1));
    if (fds == NULL) {
        fds = stack_fds;
        n_kernel_fds = 0;
    }
    fds[0] = (struct pollfd){.fd = r.wake_fd, .events = POLLIN};
    for (int i = 0; i < n_kernel_fds; i++) {
        fds[i + 1] = kernel_fds[i];
        fds[i + 1].revents = 0;
    }
    int watching = n_kernel_fds;
    while (!atomic_load_explicit(&r.done, memory_order_acquire)) {
        if (poll(fds, (nfds_t)(watching + 1), -1) < 0 && errno != EINTR) {
            watching = 0; /* a bad kernel fd: stop watching them, finish the stack side */
        }
        if (fds[0].revents & POLLIN) {
            drain(r.wake_fd);
        }
        for (int i = 0; i < watching; i++) {
            if (fds[i + 1].revents) {
                atomic_store(&r.withdrawn, 1);
                kick(net.wake_fd);
                watching = 0; /* from now on only wait for the withdrawal to be acknowledged */
            }
        }
    }
    for (int i = 0; i < n_kernel_fds; i++) {
        kernel_fds[i].revents = fds[i + 1].revents;
    }
    if (fds != stack_fds) {
        free(fds);
    }
    return r.result;
}

/* --- start and queries ------------------------------------------------------------------------------ */

/* The EMAC's RX task and the poll task run above the application's tasks on the board (FreeRTOS
 * priorities); here a real-time policy keeps the host's other work from holding them off. */
static void raise_priority(pthread_t thread, const char *name)
{
    if (net.cfg.thread_priority <= 0) {
        return;
    }
    struct sched_param param = {.sched_priority = net.cfg.thread_priority};
    int rc = pthread_setschedparam(thread, SCHED_FIFO, &param);
    if (rc != 0) {
        hil_log(HIL_LOG_WARN, TAG, "%s thread: no real-time priority (%s); it runs with the host's other tasks", name,
                strerror(rc));
    }
}

int hil_net_start(const hil_net_config_t *cfg)
{
    net.cfg = *cfg;
    net.start_us = hil_net_now_us();
    net.ifindex = (int)if_nametoindex(cfg->ifname);
    if (net.ifindex == 0) {
        hil_log(HIL_LOG_ERROR, TAG, "no interface %s in this network namespace", cfg->ifname);
        return -1;
    }
    if (hil_iface_guard(cfg->ifname) != 0) {
        return -1;
    }
    net.packet_fd = open_packet_socket();
    if (net.packet_fd < 0 || bring_up_interface(net.packet_fd) != 0) {
        return -1;
    }
    net.netlink_fd = open_netlink();
    net.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (net.netlink_fd < 0 || net.wake_fd < 0) {
        return -1;
    }
    net.pool = hs_pool_new(cfg->pool_slots, cfg->slot_bytes);
    if (net.pool == NULL) {
        hil_log(HIL_LOG_ERROR, TAG, "frame pool of %u x %u B does not fit the heap", (unsigned)cfg->pool_slots,
                (unsigned)cfg->slot_bytes);
        return -1;
    }
    hil_log(HIL_LOG_INFO, TAG, "frame pool: %u slots × %u B = %u KiB", (unsigned)cfg->pool_slots,
            (unsigned)cfg->slot_bytes, (unsigned)(cfg->pool_slots * cfg->slot_bytes / 1024));
    hs_config_t stack = cfg->stack;
    memcpy(stack.mac, cfg->mac, 6);
    stack.tx = transmit;
    stack.tx_ready = tx_ready;
    stack.tx_ctx = NULL;
    net.tokens_at_us = hil_net_now_us();
    if (getrandom(&stack.random_seed, sizeof stack.random_seed, 0) != sizeof stack.random_seed) {
        stack.random_seed = (uint64_t)hil_net_now_us();
    }
    net.stack = hs_stack_new(&stack, net.pool, stack_now());
    if (cfg->dhcp) {
        hs_stack_start_dhcp(net.stack);
    } else {
        hs_stack_set_static(net.stack, cfg->static_ip, cfg->static_prefix, cfg->static_gw);
    }
    hil_log(HIL_LOG_INFO, TAG, "ETH attached, MAC %02x:%02x:%02x:%02x:%02x:%02x, %s", cfg->mac[0], cfg->mac[1],
            cfg->mac[2], cfg->mac[3], cfg->mac[4], cfg->mac[5],
            cfg->dhcp ? "DHCPv4 client started" : "static IPv4 address");
    /* The carrier as it is now; later changes arrive by netlink. */
    set_link(carrier_now());
    pthread_t thread;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&thread, &attr, rx_thread, NULL);
    if (rc == 0) {
        raise_priority(thread, "RX");
        rc = pthread_create(&thread, &attr, poll_thread, NULL);
    }
    if (rc == 0) {
        raise_priority(thread, "poll");
    }
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        hil_log(HIL_LOG_ERROR, TAG, "cannot start the stack's threads: %s", strerror(rc));
        return -1;
    }
    return 0;
}

static int64_t stats_op(hs_stack_t *stack, void *arg)
{
    hil_net_stats_t *out = arg;
    hs_stack_stats(stack, &out->stack);
    struct tpacket_stats kernel;
    socklen_t len = sizeof kernel;
    if (getsockopt(net.packet_fd, SOL_PACKET, PACKET_STATISTICS, &kernel, &len) == 0) {
        net.rx_kernel_drops += kernel.tp_drops; /* the kernel resets these counters on every read */
    }
    out->rx_kernel_drops = net.rx_kernel_drops;
    return 0;
}

void hil_net_stats(hil_net_stats_t *out)
{
    memset(out, 0, sizeof *out);
    hil_net_call(stats_op, out, HIL_NET_NO_WAIT, NULL, 0);
    out->stack.tx_fails += atomic_load(&net.held_lost);
    hs_pool_stats(net.pool, &out->pool);
    out->link_ups = atomic_load(&net.link_ups);
    out->link_downs = atomic_load(&net.link_downs);
    out->rx_csum_not_ready = atomic_load(&net.rx_csum_not_ready);
    out->polls = atomic_load(&net.polls);
    out->tx_ring_full = atomic_load(&net.tx_ring_full);
    out->rx_frames = atomic_load(&net.rx_frames);
    out->rx_bytes = atomic_load(&net.rx_bytes);
}

static int64_t ip_info_op(hs_stack_t *stack, void *arg)
{
    hs_stack_ip_info(stack, arg);
    return 0;
}

void hil_net_ip_info(hs_ip_info_t *out)
{
    memset(out, 0, sizeof *out);
    hil_net_call(ip_info_op, out, HIL_NET_NO_WAIT, NULL, 0);
}

bool hil_net_link_up(void)
{
    return atomic_load(&net.link_up);
}

typedef struct {
    char *buf;
    size_t len;
} describe_args_t;

static int64_t describe_op(hs_stack_t *stack, void *arg)
{
    describe_args_t *a = arg;
    hs_stack_describe_tcp(stack, a->buf, a->len);
    return 0;
}

void hil_net_describe_tcp(char *buf, size_t len)
{
    describe_args_t a = {.buf = buf, .len = len};
    snprintf(buf, len, "[]");
    hil_net_call(describe_op, &a, HIL_NET_NO_WAIT, NULL, 0);
}

typedef struct {
    uint16_t ethertype;
    hs_tap_fn callback;
    void *ctx;
    const uint8_t *frame;
    size_t len;
} l2_args_t;

static int64_t l2_tap_op(hs_stack_t *stack, void *arg)
{
    l2_args_t *a = arg;
    return hs_l2_tap(stack, a->ethertype, a->callback, a->ctx);
}

int hil_net_l2_tap(uint16_t ethertype, hs_tap_fn callback, void *ctx)
{
    l2_args_t a = {.ethertype = ethertype, .callback = callback, .ctx = ctx};
    int64_t rc = hil_net_call(l2_tap_op, &a, HIL_NET_NO_WAIT, NULL, 0);
    return rc == HIL_NET_AGAIN ? -EAGAIN : (int)rc;
}

static int64_t l2_send_op(hs_stack_t *stack, void *arg)
{
    l2_args_t *a = arg;
    return hs_l2_send(stack, a->frame, a->len);
}

int hil_net_l2_send(const uint8_t *frame, size_t len)
{
    l2_args_t a = {.frame = frame, .len = len};
    int64_t rc = hil_net_call(l2_send_op, &a, HIL_NET_NO_WAIT, NULL, 0);
    return rc == HIL_NET_AGAIN ? -EAGAIN : (int)rc;
}

static int64_t link_local_op(hs_stack_t *stack, void *arg)
{
    hs_stack_set_ipv6_link_local(stack, *(bool *)arg);
    return 0;
}

void hil_net_set_ipv6_link_local(bool on)
{
    hil_net_call(link_local_op, &on, HIL_NET_NO_WAIT, NULL, 0);
}
