/*
 * hil-firmware's smoltcp flavour: smoltcp through the runtime (poll thread, AF_PACKET, RX frame pool, TX
 * ring, heap budget) and the BSD-socket shim, with the board's sizes.
 *
 * Options: --static IP/PREFIX[/GW] (else DHCP) --heap-bytes N --pool-slots N --slot-bytes N --tx-ring N
 *          --thread-priority N (SCHED_FIFO of the RX and poll threads, 0: none)
 *          --frame-mtu N --max-sockets N --listen-pool N --tcp-rx N --tcp-tx N --udp-rx N --udp-tx N
 *          --udp-packets N --fd-base N --fd-count N
 *
 * The fault catalogue's frame-level mechanisms live here, on the runtime's frame path and poll thread:
 *   rx_pool_starvation  one full-size TCP segment in RX_STARVATION_ONE_IN finds no pool slot (frame_pool_drops)
 *   large_icmp_dropped  ICMP echo requests with more than LARGE_ICMP_PAYLOAD bytes never reach smoltcp
 *   tx_cap_60pct        the interface transmits at most TX_CAP_BPS
 *   rtt_spikes          the poll thread is held off for SPIKE_MS every SPIKE_PERIOD_MS
 *   ipv6_ll_missing     no IPv6 link-local address
 *   no_dhcp_renewal     the DHCP client's renewing and rebinding REQUESTs never leave
 *   dhcp_nak_ignored    a DHCPNAK never reaches the DHCP client
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "firmware_net.h"
#include "hil_platform.h"
#include "hil_services.h"
#include "netstack.h"
#include "sockshim.h"

const char *const FW_NET_NAME = "smoltcp";
const char *const FW_NET_FAULTS = "rx_pool_starvation,large_icmp_dropped,tx_cap_60pct,rtt_spikes,ipv6_ll_missing,"
                                  "no_dhcp_renewal,dhcp_nak_ignored,"
                                  /* the shim's (sockshim.h): the published esp_smoltcp_lwip_compat's defects */
                                  "shim_udp_select_consumes,shim_fin_not_readable,shim_close_without_fin,"
                                  "shim_loopback_recv_ignored,shim_loopback_port0_refused";

#define DEFAULT_HEAP_BYTES (8u * 1024u * 1024u)
#define RX_STARVATION_ONE_IN 150u
#define FULL_SEGMENT_MIN_IP_BYTES 1400u
#define LARGE_ICMP_PAYLOAD 1000u
#define TX_CAP_BPS 60000000u
#define SPIKE_PERIOD_MS 500u
#define SPIKE_MS 30u
#define ETH_HEADER 14u
#define DHCP_MESSAGE_TYPE 53u
#define DHCP_REQUEST 3u
#define DHCP_NAK 6u

static struct {
    hil_net_config_t net;
    hil_shim_config_t shim;
    size_t heap_bytes;
    const char *faults;
} cfg;
static bool configured;

static void configure_defaults(void)
{
    if (!configured) {
        hil_net_default_config(&cfg.net);
        hil_shim_default_config(&cfg.shim);
        cfg.heap_bytes = DEFAULT_HEAP_BYTES;
        configured = true;
    }
}

/* --- options ----------------------------------------------------------------------------------------- */

static void parse_static(const char *text)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%s", text ? text : "");
    char *prefix = strchr(buf, '/');
    char *gw = prefix ? strchr(prefix + 1, '/') : NULL;
    if (prefix == NULL) {
        fw_usage("--static needs IP/PREFIX[/GW]");
    }
    *prefix++ = '\0';
    if (gw) {
        *gw++ = '\0';
    }
    struct in_addr ip;
    struct in_addr router = {0};
    if (inet_pton(AF_INET, buf, &ip) != 1 || (gw && inet_pton(AF_INET, gw, &router) != 1)) {
        fw_usage("--static needs IP/PREFIX[/GW] with dotted IPv4 addresses");
    }
    cfg.net.dhcp = false;
    cfg.net.static_ip = ip.s_addr;
    cfg.net.static_prefix = (uint8_t)fw_number(prefix, 0, 32, "--static PREFIX");
    cfg.net.static_gw = router.s_addr;
}

/* Options that set a uint32_t of the runtime's configuration. */
static uint32_t *limit_option(const char *name)
{
    static const struct {
        const char *name;
        size_t offset;
    } table[] = {
        {"--pool-slots", offsetof(hil_net_config_t, pool_slots)},
        {"--slot-bytes", offsetof(hil_net_config_t, slot_bytes)},
        {"--tx-ring", offsetof(hil_net_config_t, tx_ring)},
        {"--frame-mtu", offsetof(hil_net_config_t, stack.frame_mtu)},
        {"--max-sockets", offsetof(hil_net_config_t, stack.max_sockets)},
        {"--listen-pool", offsetof(hil_net_config_t, stack.listen_pool_max)},
        {"--tcp-rx", offsetof(hil_net_config_t, stack.tcp_rx_bytes)},
        {"--tcp-tx", offsetof(hil_net_config_t, stack.tcp_tx_bytes)},
        {"--udp-rx", offsetof(hil_net_config_t, stack.udp_rx_bytes)},
        {"--udp-tx", offsetof(hil_net_config_t, stack.udp_tx_bytes)},
        {"--udp-packets", offsetof(hil_net_config_t, stack.udp_packets)},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (strcmp(name, table[i].name) == 0) {
            return (uint32_t *)((char *)&cfg.net + table[i].offset);
        }
    }
    return NULL;
}

int fw_net_option(int argc, char **argv, int i)
{
    configure_defaults();
    const char *o = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(o, "--static") == 0) {
        parse_static(v);
    } else if (strcmp(o, "--heap-bytes") == 0) {
        cfg.heap_bytes = (size_t)fw_number(v, 64 * 1024, 1L << 34, o);
    } else if (strcmp(o, "--thread-priority") == 0) {
        cfg.net.thread_priority = (int)fw_number(v, 0, 99, o);
    } else if (strcmp(o, "--fd-base") == 0) {
        cfg.shim.fd_base = (int)fw_number(v, 3, 1 << 20, o);
    } else if (strcmp(o, "--fd-count") == 0) {
        cfg.shim.fd_count = (int)fw_number(v, 1, 1024, o);
    } else if (limit_option(o) != NULL) {
        *limit_option(o) = (uint32_t)fw_number(v, 1, 1 << 24, o);
    } else {
        return 0;
    }
    return 2;
}

/* --- events ------------------------------------------------------------------------------------------ */

static void on_net_event(const hil_net_event_t *e, void *arg)
{
    (void)arg;
    switch (e->kind) {
    case HIL_NET_LINK_UP:
    case HIL_NET_LINK_DOWN:
        fw_event_link(e->kind == HIL_NET_LINK_UP);
        break;
    case HIL_NET_GOT_IP:
        fw_event_got_ip(e->ip, e->netmask, e->gw, e->lease_s);
        break;
    case HIL_NET_LOST_IP:
        fw_event_lost_ip(e->ip);
        break;
    case HIL_NET_DHCP:
        fw_event_dhcp("bound", e->server, e->lease_s);
        break;
    }
}

/* --- faults on the frame path ------------------------------------------------------------------------ */

/* The IPv4 header of an Ethernet frame and its protocol, or NULL. */
static const uint8_t *ipv4_packet(const uint8_t *frame, size_t len, uint8_t *protocol, size_t *ip_len)
{
    if (len < ETH_HEADER + 20 || frame[12] != 0x08 || frame[13] != 0x00 || (frame[ETH_HEADER] >> 4) != 4) {
        return NULL;
    }
    const uint8_t *ip = frame + ETH_HEADER;
    *protocol = ip[9];
    *ip_len = (size_t)(ip[2] << 8 | ip[3]);
    return ip;
}

/* The DHCP message type of a BOOTP packet from `sport`, and its ciaddr (network order); 0 when it is none. */
static unsigned dhcp_type(const uint8_t *frame, size_t len, uint16_t sport, uint32_t *ciaddr)
{
    uint8_t protocol;
    size_t ip_len;
    const uint8_t *ip = ipv4_packet(frame, len, &protocol, &ip_len);
    size_t ihl = ip ? (size_t)(ip[0] & 0x0f) * 4 : 0;
    const uint8_t *udp = ip ? ip + ihl : NULL;
    const uint8_t *end = frame + len;
    if (ip == NULL || protocol != 17 || udp + 8 + 240 > end || (udp[0] << 8 | udp[1]) != sport) {
        return 0;
    }
    const uint8_t *bootp = udp + 8;
    memcpy(ciaddr, bootp + 12, 4);
    for (const uint8_t *opt = bootp + 240; opt + 2 <= end && opt[0] != 255;) {
        if (opt[0] == 0) {
            opt++;
            continue;
        }
        if (opt[0] == DHCP_MESSAGE_TYPE && opt[1] >= 1 && opt + 3 <= end) {
            return opt[2];
        }
        opt += 2 + opt[1];
    }
    return 0;
}

static hil_net_verdict_t rx_filter(const uint8_t *frame, size_t len, void *arg)
{
    (void)arg;
    uint8_t protocol = 0;
    size_t ip_len = 0;
    const uint8_t *ip = ipv4_packet(frame, len, &protocol, &ip_len);
    if (ip == NULL) {
        return HIL_NET_PASS;
    }
    if (protocol == 6 && ip_len >= FULL_SEGMENT_MIN_IP_BYTES && fw_fault(cfg.faults, "rx_pool_starvation")) {
        uint32_t dice;
        if (getrandom(&dice, sizeof dice, 0) == sizeof dice && dice % RX_STARVATION_ONE_IN == 0) {
            return HIL_NET_POOL_DROP;
        }
    }
    size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
    if (protocol == 1 && ETH_HEADER + ihl < len && ip[ihl] == 8 && ip_len > ihl + 8 + LARGE_ICMP_PAYLOAD &&
        fw_fault(cfg.faults, "large_icmp_dropped")) {
        return HIL_NET_DROP;
    }
    uint32_t ciaddr;
    if (protocol == 17 && fw_fault(cfg.faults, "dhcp_nak_ignored") && dhcp_type(frame, len, 67, &ciaddr) == DHCP_NAK) {
        return HIL_NET_DROP;
    }
    return HIL_NET_PASS;
}

static hil_net_verdict_t tx_filter(const uint8_t *frame, size_t len, void *arg)
{
    (void)arg;
    uint32_t ciaddr = 0;
    /* Renewing and rebinding REQUESTs carry the leased address in ciaddr; the first REQUEST does not. */
    if (dhcp_type(frame, len, 68, &ciaddr) == DHCP_REQUEST && ciaddr != 0) {
        return HIL_NET_DROP;
    }
    return HIL_NET_PASS;
}

static void hold_off_poll_thread(void *arg)
{
    (void)arg;
    uint32_t phase = hil_time_ms() % SPIKE_PERIOD_MS;
    if (phase < SPIKE_MS) {
        hil_sleep_ms(SPIKE_MS - phase); /* the higher-priority task that holds the poll task off */
    }
}

/* --- start ------------------------------------------------------------------------------------------- */

static int l2_tap(uint16_t ethertype, hil_l2_rx_fn callback, void *arg, void *ctx)
{
    (void)ctx;
    return hil_net_l2_tap(ethertype, callback, arg) == 0 ? 0 : -1;
}

static int l2_send(const uint8_t *frame, size_t len, void *ctx)
{
    (void)ctx;
    return hil_net_l2_send(frame, len) == 0 ? 0 : -1;
}

int fw_net_start(const fw_net_common_t *common)
{
    configure_defaults();
    cfg.faults = common->faults;
    hs_heap_set_budget(cfg.heap_bytes);
    cfg.net.ifname = common->ifname;
    memcpy(cfg.net.mac, common->mac, 6);
    cfg.net.on_event = on_net_event;
    if (fw_fault(cfg.faults, "rx_pool_starvation") || fw_fault(cfg.faults, "large_icmp_dropped") ||
        fw_fault(cfg.faults, "dhcp_nak_ignored")) {
        cfg.net.rx_filter = rx_filter;
    }
    if (fw_fault(cfg.faults, "no_dhcp_renewal")) {
        cfg.net.tx_filter = tx_filter;
    }
    if (fw_fault(cfg.faults, "rtt_spikes")) {
        cfg.net.on_pass = hold_off_poll_thread;
    }
    if (fw_fault(cfg.faults, "tx_cap_60pct")) {
        cfg.net.tx_rate_bps = TX_CAP_BPS;
    }
    if (hil_net_start(&cfg.net) != 0 || hil_shim_init(&cfg.shim) != 0) {
        return -1;
    }
    if (fw_fault(cfg.faults, "ipv6_ll_missing")) {
        hil_net_set_ipv6_link_local(false);
    }
    hil_l2_driver_t driver = {.tap = l2_tap, .send = l2_send};
    hil_services_set_l2_driver(&driver);
    return 0;
}

/* --- stats and commands ------------------------------------------------------------------------------ */

void fw_net_stats(hil_stats_t *out)
{
    hil_net_stats_t s;
    hil_net_stats(&s);
    *out = (hil_stats_t){
        .iface = "eth",
        .rx_frames = s.rx_frames,
        .rx_bytes = s.rx_bytes,
        .rx_drops = s.stack.rx_drops + s.rx_kernel_drops,
        .tx_frames = s.stack.tx_frames,
        .tx_bytes = s.stack.tx_bytes,
        .tx_fails = s.stack.tx_fails,
        .link_ups = s.link_ups,
        .link_downs = s.link_downs,
        .active_sockets = s.stack.active_sockets,
        .frame_pool_drops = s.pool.drops,
        .heap_free = hs_heap_free(),
        .heap_min_free = hs_heap_min_free(),
        .uptime_ms = hil_time_ms(),
    };
}

int fw_net_stats_extra(char *out, size_t len)
{
    hil_net_stats_t s;
    hil_net_stats(&s);
    return snprintf(out, len,
                    "\"stack_rx_frames\":%" PRIu64 ",\"rx_kernel_drops\":%" PRIu64 ",\"rx_csum_not_ready\":%" PRIu64
                    ",\"pool_min_free\":%" PRIu32 ",\"polls\":%" PRIu64 ",\"tx_ring_full\":%" PRIu64
                    ",\"listen_drops\":%" PRIu64,
                    s.stack.rx_frames, s.rx_kernel_drops, s.rx_csum_not_ready, s.pool.min_free, s.polls,
                    s.tx_ring_full, s.stack.listen_drops);
}

static void reply_ip(hil_members_t *m)
{
    hs_ip_info_t info;
    hil_net_ip_info(&info);
    char ip[INET_ADDRSTRLEN], mask[INET_ADDRSTRLEN], gw[INET_ADDRSTRLEN], ll[INET6_ADDRSTRLEN] = "";
    inet_ntop(AF_INET, &info.ip, ip, sizeof ip);
    inet_ntop(AF_INET, &info.netmask, mask, sizeof mask);
    inet_ntop(AF_INET, &info.gw, gw, sizeof gw);
    if (info.has_ipv6_ll && hil_net_link_up()) {
        inet_ntop(AF_INET6, info.ipv6_ll, ll, sizeof ll);
    }
    fw_ip_reply(m, ip, mask, gw, cfg.net.mac, ll);
}

static void reply_sockets(hil_members_t *m)
{
    hil_net_stats_t s;
    hil_net_stats(&s);
    hil_shim_stats_t fds;
    hil_shim_stats(&fds);
    static char tcp[8192]; /* the command thread's only */
    hil_net_describe_tcp(tcp, sizeof tcp);
    fw_sockets_reply(m, s.stack.active_sockets, cfg.net.stack.max_sockets, (uint64_t)fds.fds_used,
                     (uint64_t)fds.fd_count, (uint64_t)fds.fd_base);
    hil_members_raw(m, "tcp", tcp);
}

int fw_net_command(int argc, char **argv, char *out, size_t len)
{
    hil_members_t m;
    hil_members_init(&m, out, len);
    if (argc == 1 && strcmp(argv[0], "ip") == 0) {
        reply_ip(&m);
    } else if (argc == 1 && strcmp(argv[0], "heap") == 0) {
        fw_heap_reply(&m, hs_heap_total(), hs_heap_free(), hs_heap_min_free());
    } else if (argc == 1 && strcmp(argv[0], "sockets") == 0) {
        reply_sockets(&m);
    } else {
        return 0;
    }
    return 1;
}
