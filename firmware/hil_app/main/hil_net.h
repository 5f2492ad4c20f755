/*
 * The TCP/IP stack under test, behind one small interface: esp-smoltcp (hil_net_smoltcp.c) or plain
 * lwIP (hil_net_lwip.c), chosen by CONFIG_HIL_NET_STACK_* (main/Kconfig.projbuild). Everything else in
 * the app talks BSD sockets, which both stacks serve.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "esp_err.h"
#include "esp_eth_driver.h"
#include "hil_proto.h"

typedef enum {
    HIL_NET_LINK_UP,
    HIL_NET_LINK_DOWN,
    HIL_NET_GOT_IP,
    HIL_NET_LOST_IP,
    HIL_NET_NTP_SYNCED,
} hil_net_event_t;

/* Called on the stack's own task: queue, never print. */
typedef void (*hil_net_event_cb_t)(hil_net_event_t event, void *user);
/* An L2 frame of a tapped EtherType (with its 14-byte Ethernet header), on the stack's RX path. */
typedef void (*hil_net_l2_cb_t)(const uint8_t *frame, size_t len, int64_t hw_timestamp_ns, void *user);

typedef struct {
    const char *name;  /* "smoltcp" or "lwip", for HIL_HELLO.stack */
    int fd_base;       /* first BSD-socket descriptor */
    int fds_max;       /* size of the descriptor table */
    int sockets_max;   /* the stack's own socket limit (smoltcp socket handles, lwIP netconns) */
} hil_net_limits_t;

/* Stack, NVS and the default event loop; call once, before anything posts events. */
esp_err_t hil_net_init(void);
esp_err_t hil_net_attach_eth(esp_eth_handle_t eth, hil_net_event_cb_t cb, void *user);
esp_err_t hil_net_wait_for_ip(uint32_t timeout_ms);

uint32_t hil_net_ipv4(void);    /* network byte order in memory; 0 when unset */
uint32_t hil_net_netmask(void);
uint32_t hil_net_gateway(void);
esp_err_t hil_net_ipv6_link_local(uint8_t out[16]);

/* Fills the stack's counters of a HIL_STATS object (not heap or uptime). */
void hil_net_counters(hil_stats_t *stats);
/* Sockets the stack holds now (smoltcp: TCP+UDP sockets incl. listener pools; lwIP: open descriptors). */
uint32_t hil_net_active_sockets(void);
const hil_net_limits_t *hil_net_limits(void);

/* At most HIL_NET_L2_TAPS EtherTypes; cb NULL clears. */
#define HIL_NET_L2_TAPS 4
esp_err_t hil_net_l2_tap(uint16_t ethertype, hil_net_l2_cb_t cb, void *user);
esp_err_t hil_net_l2_send(const uint8_t *frame, size_t len);

/* The tap table both stacks share (hil_eth.c); each stack hands its frames to the entry of their EtherType. */
typedef struct {
    uint16_t ethertype; /* 0 = free */
    hil_net_l2_cb_t cb;
    void *user;
} hil_net_tap_t;
/* Set (cb non-NULL) or clear the tap of `ethertype`: the entry, or NULL when the table is full (set) or the
 * EtherType has no tap (clear). */
hil_net_tap_t *hil_net_tap_set(uint16_t ethertype, hil_net_l2_cb_t cb, void *user);
/* The tap of `ethertype`, or NULL. */
const hil_net_tap_t *hil_net_tap_find(uint16_t ethertype);

/* Versions of the stack's components for HIL_HELLO.components: a JSON object. */
const char *hil_net_components_json(void);
