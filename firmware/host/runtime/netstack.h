/*
 * The native firmware's network runtime, the shape of esp_smoltcp: ONE poll thread owns the smoltcp
 * stack (firmware/host/stack) and nothing else touches it. A receive thread (the EMAC driver's part)
 * reads frames from an AF_PACKET socket on the interface into the RX frame pool; the poll thread
 * sleeps until a frame is queued, a request arrives, the link changes or smoltcp's poll delay
 * expires, then runs one poll pass. Everything else reaches the stack by `hil_net_call`.
 */
#ifndef HIL_NETSTACK_H
#define HIL_NETSTACK_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

#include "hil_stack.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    HIL_NET_LINK_UP,
    HIL_NET_LINK_DOWN,
    HIL_NET_GOT_IP,  /* ip, netmask, gw, lease_s (first lease, or a new address) */
    HIL_NET_LOST_IP, /* ip */
    HIL_NET_DHCP,    /* a lease was bound or renewed: ip, server, lease_s */
} hil_net_event_kind_t;

typedef struct {
    hil_net_event_kind_t kind;
    uint32_t ip, netmask, gw, server, lease_s;
} hil_net_event_t;

/* Called on the poll thread: keep it short, never call hil_net_call from it. */
typedef void (*hil_net_event_fn)(const hil_net_event_t *event, void *arg);

/* What a frame filter decides (the fault catalogue's frame-level faults use them). */
typedef enum {
    HIL_NET_PASS,      /* the frame goes on */
    HIL_NET_DROP,      /* it vanishes, counted nowhere (a receive path that loses it, a send that never happens) */
    HIL_NET_POOL_DROP, /* received frames only: dropped and counted in frame_pool_drops */
} hil_net_verdict_t;
/* rx: called on the receive thread for every frame before it takes a pool slot; tx: on the poll thread
 * for every frame smoltcp sends. */
typedef hil_net_verdict_t (*hil_net_filter_fn)(const uint8_t *frame, size_t len, void *arg);

typedef struct {
    const char *ifname;
    uint8_t mac[6];
    uint32_t pool_slots;  /* RX frame pool (CONFIG_NETSTACK_RX_POOL_*) */
    uint32_t slot_bytes;
    uint32_t tx_ring;     /* frames the TX ring holds (CONFIG_ETH_DMA_TX_BUFFER_NUM); full: back-pressure */
    uint64_t tx_rate_bps; /* 0, or the most the interface transmits (bits/s, with the wire's per-frame overhead) */
    int thread_priority;  /* SCHED_FIFO priority of the RX and poll threads; 0: the host's normal policy */
    hs_config_t stack;    /* mac, tx, tx_ctx and random_seed are filled in by hil_net_start */
    bool dhcp;            /* else the static address below */
    uint32_t static_ip, static_gw;
    uint8_t static_prefix;
    hil_net_event_fn on_event;
    void *event_arg;
    hil_net_filter_fn rx_filter, tx_filter; /* NULL: every frame passes */
    void (*on_pass)(void *arg);             /* on the poll thread before every pass (NULL: nothing) */
    void *filter_arg;                       /* for the filters and on_pass */
} hil_net_config_t;

/* Defaults: the board's values (esp_smoltcp Kconfig defaults and the glue's buffer sizes). */
void hil_net_default_config(hil_net_config_t *cfg);

/* Bring the interface up (MAC set, IPv6 off, no IPv4 address: the kernel must stay silent on it),
 * create the pool and the stack, start the threads. Returns 0, or -1 with the reason logged. */
int hil_net_start(const hil_net_config_t *cfg);

/* An operation run on the poll thread. Return HIL_NET_AGAIN to be retried after every poll pass. */
#define HIL_NET_AGAIN INT64_MIN
typedef int64_t (*hil_net_op_fn)(hs_stack_t *stack, void *arg);

/* Deadlines are hil_net_now_us() values. */
#define HIL_NET_NO_WAIT 0
#define HIL_NET_FOREVER INT64_MAX

/*
 * Run `op` on the poll thread and block until it returns something other than HIL_NET_AGAIN or the
 * deadline passes (then HIL_NET_AGAIN is returned). `kernel_fds` (may be NULL) are real file
 * descriptors waited on at the same time: when one is ready first, the operation is withdrawn and
 * HIL_NET_AGAIN returned, with their revents filled in.
 */
int64_t hil_net_call(hil_net_op_fn op, void *arg, int64_t deadline_us, struct pollfd *kernel_fds, int n_kernel_fds);

/* Wake the poll thread: every waiting call looks again (something outside smoltcp changed, e.g. the
 * shim's loopback queue). */
void hil_net_kick(void);

/* Monotonic microseconds (the stack's clock). */
int64_t hil_net_now_us(void);

typedef struct {
    hs_stats_t stack;            /* what smoltcp's device saw (rx: frames the stack took, tapped ones included) */
    hs_pool_stats_t pool;
    uint64_t rx_frames, rx_bytes; /* every frame the interface delivered, whatever became of it (a NIC's count) */
    uint64_t link_ups, link_downs;
    uint64_t rx_kernel_drops;   /* frames the kernel dropped before the RX thread read them */
    uint64_t rx_csum_not_ready; /* frames handed over with an unfinished checksum (offload on the peer) */
    uint64_t polls;             /* poll passes of the poll thread */
    uint64_t tx_ring_full;      /* times the TX ring was full and held smoltcp back */
} hil_net_stats_t;

void hil_net_stats(hil_net_stats_t *out);
/* The L2 tap (esp_smoltcp_l2_tap / esp_smoltcp_l2_send) from any thread: the callback runs on the poll
 * thread. Returns 0 or a negated errno (see hs_l2_tap / hs_l2_send). */
int hil_net_l2_tap(uint16_t ethertype, hs_tap_fn callback, void *ctx);
int hil_net_l2_send(const uint8_t *frame, size_t len);
/* Take the IPv6 link-local address away (the ipv6_ll_missing fault) or give it back. */
void hil_net_set_ipv6_link_local(bool on);
void hil_net_ip_info(hs_ip_info_t *out);
bool hil_net_link_up(void);
/* The stack's TCP sockets as a JSON array (see hs_stack_describe_tcp). */
void hil_net_describe_tcp(char *buf, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* HIL_NETSTACK_H */
