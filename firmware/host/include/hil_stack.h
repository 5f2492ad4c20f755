/*
 * The C FFI of firmware/host/stack (smoltcp 0.12 in Rust), the shape of esp_smoltcp_glue's.
 *
 * Threading, as on the board: hs_heap_* and hs_pool_* may be called from any thread; every function
 * taking an hs_stack_t only from the runtime's poll thread. IPv4 addresses are uint32_t in network
 * byte order (struct in_addr.s_addr), ports in host order. Socket calls return >= 0 or -errno.
 */
#ifndef HIL_STACK_H
#define HIL_STACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hs_stack hs_stack_t;
typedef struct hs_pool hs_pool_t;

/* Sends one Ethernet frame (copied before return); < 0 counts a tx_fail. */
typedef int (*hs_tx_fn)(void *ctx, const uint8_t *frame, size_t len);
/* Whether the TX ring has room: while it says no, smoltcp keeps its data queued (back-pressure). */
typedef bool (*hs_tx_ready_fn)(void *ctx);
/* An L2 tap's callback: one received frame, on the poll thread (copy it, do not block). */
typedef void (*hs_tap_fn)(void *ctx, const uint8_t *frame, size_t len);

typedef struct {
    uint8_t mac[6];
    uint32_t frame_mtu;       /* largest frame without FCS (smoltcp's max_transmission_unit) */
    uint32_t max_sockets;     /* smoltcp TCP+UDP sockets (listener pools and closing ones count) */
    uint32_t tcp_rx_bytes;
    uint32_t tcp_tx_bytes;
    uint32_t udp_rx_bytes;
    uint32_t udp_tx_bytes;
    uint32_t udp_packets;     /* datagrams each UDP buffer holds */
    uint32_t listen_pool_max; /* listen() pre-allocates min(backlog, this) sockets */
    uint64_t random_seed;
    hs_tx_fn tx;
    hs_tx_ready_fn tx_ready; /* NULL: always room */
    void *tx_ctx;
} hs_config_t;

typedef struct {
    uint64_t rx_frames, rx_bytes, rx_drops, tx_frames, tx_bytes, tx_fails;
    uint32_t active_sockets;
    uint64_t listen_drops; /* SYNs dropped because a listener's backlog was full (Linux: ListenDrops) */
} hs_stats_t;

typedef struct {
    uint32_t slots, slot_bytes, free, min_free, queued;
    uint64_t drops;
} hs_pool_stats_t;

#define HS_EVENT_BOUND 1 /* a lease was bound or renewed */
#define HS_EVENT_LOST 2  /* the lease is gone; ip is the address lost */
typedef struct {
    uint32_t kind, ip, netmask, gw, server, lease_s;
} hs_event_t;

typedef struct {
    uint32_t ip, netmask, gw;
    uint8_t has_ipv6_ll;
    uint8_t ipv6_ll[16];
} hs_ip_info_t;

typedef struct {
    size_t full_len; /* a datagram's whole length (more than returned when truncated) */
    uint32_t addr;
    uint16_t port;
} hs_recv_info_t;

#define HS_READABLE 1
#define HS_WRITABLE 2
#define HS_ERROR 4
#define HS_HANGUP 8

/* heap budget: every allocation of the firmware is charged here (runtime/heap.c) */
void hs_heap_set_budget(size_t bytes);
bool hs_heap_reserve(size_t bytes);
void hs_heap_release(size_t bytes);
size_t hs_heap_free(void);
size_t hs_heap_min_free(void);
size_t hs_heap_total(void);

/* RX frame pool */
const hs_pool_t *hs_pool_new(uint32_t slots, uint32_t slot_bytes);
void hs_pool_free(const hs_pool_t *pool);
uint8_t *hs_pool_acquire(const hs_pool_t *pool, uint32_t *index);
bool hs_pool_submit(const hs_pool_t *pool, uint32_t index, uint32_t len); /* true: queue was empty */
void hs_pool_release(const hs_pool_t *pool, uint32_t index);
void hs_pool_count_drop(const hs_pool_t *pool);
void hs_pool_stats(const hs_pool_t *pool, hs_pool_stats_t *out);

/* interface */
hs_stack_t *hs_stack_new(const hs_config_t *config, const hs_pool_t *pool, int64_t now_us);
void hs_stack_free(hs_stack_t *stack);
bool hs_stack_poll(hs_stack_t *stack, int64_t now_us);
int64_t hs_stack_poll_delay_us(hs_stack_t *stack, int64_t now_us); /* -1: wait for a frame */
void hs_stack_set_link(hs_stack_t *stack, bool up);
void hs_stack_start_dhcp(hs_stack_t *stack);
void hs_stack_set_static(hs_stack_t *stack, uint32_t ip, uint8_t prefix, uint32_t gw);
bool hs_stack_next_event(hs_stack_t *stack, hs_event_t *out);
void hs_stack_ip_info(hs_stack_t *stack, hs_ip_info_t *out);
void hs_stack_stats(hs_stack_t *stack, hs_stats_t *out);
void hs_stack_set_ipv6_link_local(hs_stack_t *stack, bool on); /* on by default */
/* The L2 tap table (esp_smoltcp_l2_tap): frames of a tapped EtherType go to the callback instead of
 * smoltcp (counted as received). callback NULL clears. 0, -ENOSPC (4 taps at most) or -ENOENT. */
int hs_l2_tap(hs_stack_t *stack, uint16_t ethertype, hs_tap_fn callback, void *ctx);
/* esp_smoltcp_l2_send: one raw frame, counted like the stack's own. 0, -EMSGSIZE, -ENETDOWN, -ENOBUFS. */
int hs_l2_send(hs_stack_t *stack, const uint8_t *frame, size_t len);
int hs_mcast_join(hs_stack_t *stack, uint32_t group);
int hs_mcast_leave(hs_stack_t *stack, uint32_t group);

/* sockets (ids > 0) */
int64_t hs_socket(hs_stack_t *stack, bool tcp);
int hs_bind(hs_stack_t *stack, uint32_t id, uint32_t addr, uint16_t port);
int hs_listen(hs_stack_t *stack, uint32_t id, int backlog);
int64_t hs_accept(hs_stack_t *stack, uint32_t id, uint32_t *addr, uint16_t *port);
int hs_connect(hs_stack_t *stack, uint32_t id, uint32_t addr, uint16_t port); /* TCP: -EINPROGRESS */
int64_t hs_send(hs_stack_t *stack, uint32_t id, const uint8_t *data, size_t len, bool has_to, uint32_t addr,
                uint16_t port);
int64_t hs_recv(hs_stack_t *stack, uint32_t id, uint8_t *buf, size_t len, bool peek, hs_recv_info_t *info);
int hs_shutdown(hs_stack_t *stack, uint32_t id, int how);
int hs_close(hs_stack_t *stack, uint32_t id);
int hs_poll_socket(hs_stack_t *stack, uint32_t id); /* HS_READABLE | HS_WRITABLE | HS_ERROR | HS_HANGUP */
int hs_local_endpoint(hs_stack_t *stack, uint32_t id, uint32_t *addr, uint16_t *port);
int hs_peer_endpoint(hs_stack_t *stack, uint32_t id, uint32_t *addr, uint16_t *port);
int hs_take_error(hs_stack_t *stack, uint32_t id);
int hs_set_tcp_options(hs_stack_t *stack, uint32_t id, int nodelay, int keepalive); /* -1: unchanged */
int hs_tcp_options(hs_stack_t *stack, uint32_t id); /* bit 0 nodelay, bit 1 keepalive */
int hs_queues(hs_stack_t *stack, uint32_t id, size_t *recv_queue, size_t *send_queue);
int hs_tcp_state(hs_stack_t *stack, uint32_t id, char *buf, size_t len);
/* Every TCP socket (listener pools and closing ones too) as a JSON array; returns the full length. */
size_t hs_stack_describe_tcp(hs_stack_t *stack, char *buf, size_t len);

/* The published esp_smoltcp_glue's own calls, with the same smoltcp calls, for the shim's fault switches
 * (HIL_FAULTS shim_*, docs/faults.md); the healthy firmware never calls them. */
/* smoltcp_udp_recvfrom = UDP recv_slice: bytes, -EAGAIN empty, -EMSGSIZE truncated (the datagram is gone) */
int64_t hs_glue_udp_recv_slice(hs_stack_t *stack, uint32_t id, uint8_t *buf, size_t len);
/* smoltcp_tcp_is_connected = may_recv() || may_send() (still 1 in CLOSE-WAIT): 1, 0 or -errno */
int hs_glue_tcp_is_connected(hs_stack_t *stack, uint32_t id);
/* smoltcp_tcp_close / smoltcp_udp_close: close() and remove the socket at once (no FIN leaves) */
int hs_glue_close(hs_stack_t *stack, uint32_t id);

#ifdef __cplusplus
}
#endif

#endif /* HIL_STACK_H */
