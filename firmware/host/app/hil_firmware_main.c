/*
 * hil-firmware: the virtual ESP32-P4's network firmware as one Linux program, the firmware's services
 * (firmware/services) on one of two stacks (firmware_net.h), speaking the hil-services program's
 * stdin/stdout protocol (firmware/services/host/program.c) extended by the stack's own events and commands.
 *
 * Built twice (harness/boards/virtual/stackbuild.py):
 *   smoltcp flavour (HIL_NATIVE_STACK): smoltcp on the interface through AF_PACKET (firmware/host/runtime)
 *     and the BSD-socket shim (firmware/host/shim) under the unchanged services;
 *   linux flavour: the kernel's stack on the interface with busybox udhcpc (the control arm).
 *
 *   hil-firmware [--ifname IF] [--mac MAC] [stack options] [hil-services options]
 *
 * Stack options: net_smoltcp.c (--static, --heap-bytes, --pool-slots, --tx-ring, ...), net_linux.c
 * (--dhcp-script). Everything else goes to the services program (--iperf3, --http, --l2-echo, ...).
 * stdout: the services program's lines, plus events as they happen (the HIL_EVENT fields):
 *   {"event":"link_up","iface":"eth"}  {"event":"got_ip","iface":"eth","ip":..,"netmask":..,"gw":..,"lease_s":N}
 *   {"event":"dhcp","iface":"eth","state":"bound","server":..,"lease_s":N}  {"event":"lost_ip","iface":"eth","ip":..}
 * and the replies of `ip`, `heap`, `sockets` (HIL_RESULT objects); `stats` carries "net": the HIL_STATS fields.
 * Logs (ESP-IDF format, tag net_stack for the stack) go to stderr.
 * HIL_FAULTS (comma-separated) switches on the fault catalogue's mechanisms that live in this firmware:
 * the services' (program.c), the stack's (FW_NET_FAULTS) and the ones below.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "firmware_net.h"
#include "hil_platform.h"
#include "hil_proto.h"
#include "hil_services.h"
#include "program.h"

/* The faults below, as the catalogue names them (harness/boards/virtual/faults.py). */
#define COMMON_FAULTS "link_flap_storm,rust_panic_under_load,task_wdt_under_load"
/* Load that counts as "under load", sampled every LOAD_SAMPLE_MS. */
#define LOAD_MBPS 40.0
#define LOAD_SAMPLE_MS 100u
#define RUST_PANIC_AFTER_BYTES 2000000u
#define WDT_AFTER_MS 1500u
#define FLAP_PERIOD_MS 3000u
#define FLAP_DOWN_MS 300u
#define MAX_ARGS 64

static fw_net_common_t common = {.ifname = "eth0"};

/* --- helpers of both stacks ------------------------------------------------------------------------- */

void fw_usage(const char *why)
{
    fprintf(stderr,
            "hil-firmware (%s): %s\n"
            "usage: hil-firmware [--ifname IF] [--mac MAC] [stack options] [hil-services options]\n"
            "  (stack options: firmware/host/app/net_%s.c; services options: firmware/services/README.md)\n",
            FW_NET_NAME, why, FW_NET_NAME);
    exit(2);
}

long fw_number(const char *text, long lo, long hi, const char *what)
{
    char *end = NULL;
    errno = 0;
    long v = text ? strtol(text, &end, 0) : 0;
    if (text == NULL || *text == '\0' || *end != '\0' || errno != 0 || v < lo || v > hi) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s must be a number in %ld..%ld, got '%s'", what, lo, hi, text ? text : "");
        fw_usage(msg);
    }
    return v;
}

bool fw_fault(const char *faults, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = faults; p != NULL && *p != '\0';) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0) {
            return true;
        }
        p = end ? end + 1 : NULL;
    }
    return false;
}

void fw_ip_reply(hil_members_t *m, const char *ip, const char *netmask, const char *gw, const uint8_t mac[6],
                 const char *ipv6_ll)
{
    char text[18];
    snprintf(text, sizeof text, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
    hil_members_str(m, "cmd", "ip");
    hil_members_bool(m, "ok", 1);
    hil_members_str(m, "iface", "eth");
    hil_members_str(m, "ip", ip);
    hil_members_str(m, "netmask", netmask);
    hil_members_str(m, "gw", gw);
    hil_members_str(m, "mac", text);
    hil_members_str(m, "ipv6_ll", ipv6_ll);
}

void fw_sockets_reply(hil_members_t *m, uint64_t active_sockets, uint64_t sockets_max, uint64_t fds_used,
                      uint64_t fds_max, uint64_t fd_base)
{
    hil_select_echo_stats_t echo;
    hil_select_echo_get_stats(&echo);
    char fields[768];
    char object[800];
    if (hil_select_echo_format_stats(fields, sizeof fields, &echo) < 0) {
        fields[0] = '\0';
    }
    snprintf(object, sizeof object, "{%s}", fields);
    hil_members_str(m, "cmd", "sockets");
    hil_members_bool(m, "ok", 1);
    hil_members_u64(m, "active_sockets", active_sockets);
    hil_members_u64(m, "sockets_max", sockets_max);
    hil_members_u64(m, "fds_used", fds_used);
    hil_members_u64(m, "fds_max", fds_max);
    hil_members_u64(m, "fd_base", fd_base);
    hil_members_raw(m, "select_echo", object);
}

void fw_heap_reply(hil_members_t *m, uint64_t total, uint64_t free, uint64_t min_free)
{
    char caps[256];
    snprintf(caps, sizeof caps,
             "{\"default\":{\"total\":%llu,\"free\":%llu,\"min_free\":%llu,\"largest_block\":%llu},"
             "\"internal\":{\"total\":%llu,\"free\":%llu,\"min_free\":%llu,\"largest_block\":%llu}}",
             (unsigned long long)total, (unsigned long long)free, (unsigned long long)min_free,
             (unsigned long long)free, (unsigned long long)total, (unsigned long long)free,
             (unsigned long long)min_free, (unsigned long long)free);
    hil_members_str(m, "cmd", "heap");
    hil_members_bool(m, "ok", 1);
    hil_members_u64(m, "free", free);
    hil_members_u64(m, "min_free", min_free);
    hil_members_u64(m, "largest_block", free);
    hil_members_raw(m, "caps", caps);
}

static const char *ip_text(uint32_t ip, char *buf)
{
    struct in_addr addr = {.s_addr = ip};
    return inet_ntop(AF_INET, &addr, buf, INET_ADDRSTRLEN);
}

void fw_event_link(bool up)
{
    hil_program_event(up ? "\"event\":\"link_up\",\"iface\":\"eth\"" : "\"event\":\"link_down\",\"iface\":\"eth\"");
}

void fw_event_got_ip(uint32_t ip, uint32_t netmask, uint32_t gw, uint32_t lease_s)
{
    char a[INET_ADDRSTRLEN], b[INET_ADDRSTRLEN], c[INET_ADDRSTRLEN], line[192];
    snprintf(line, sizeof line,
             "\"event\":\"got_ip\",\"iface\":\"eth\",\"ip\":\"%s\",\"netmask\":\"%s\",\"gw\":\"%s\",\"lease_s\":%u",
             ip_text(ip, a), ip_text(netmask, b), ip_text(gw, c), (unsigned)lease_s);
    hil_program_event(line);
}

void fw_event_lost_ip(uint32_t ip)
{
    char a[INET_ADDRSTRLEN], line[96];
    snprintf(line, sizeof line, "\"event\":\"lost_ip\",\"iface\":\"eth\",\"ip\":\"%s\"", ip_text(ip, a));
    hil_program_event(line);
}

void fw_event_dhcp(const char *state, uint32_t server, uint32_t lease_s)
{
    char a[INET_ADDRSTRLEN], line[160];
    snprintf(line, sizeof line, "\"event\":\"dhcp\",\"iface\":\"eth\",\"state\":\"%s\",\"server\":\"%s\",\"lease_s\":%u",
             state, ip_text(server, a), (unsigned)lease_s);
    hil_program_event(line);
}

/* --- faults of both stacks -------------------------------------------------------------------------- */

/* rust_panic_under_load / task_wdt_under_load: the firmware's own counters decide when "under load". */
static void load_watch(void *arg)
{
    (void)arg;
    uint64_t sent_under_load = 0;
    uint64_t loaded_ms = 0;
    hil_stats_t last;
    fw_net_stats(&last);
    for (;;) {
        hil_sleep_ms(LOAD_SAMPLE_MS);
        hil_stats_t now;
        fw_net_stats(&now);
        double seconds = (double)(now.uptime_ms - last.uptime_ms) / 1000.0;
        double tx_mbps = seconds > 0 ? (double)(now.tx_bytes - last.tx_bytes) * 8 / seconds / 1e6 : 0;
        double rx_mbps = seconds > 0 ? (double)(now.rx_bytes - last.rx_bytes) * 8 / seconds / 1e6 : 0;
        if (fw_fault(common.faults, "rust_panic_under_load") && tx_mbps > LOAD_MBPS) {
            sent_under_load += now.tx_bytes - last.tx_bytes;
            if (sent_under_load >= RUST_PANIC_AFTER_BYTES) {
                hil_program_crash("rust_panic", "net_poll");
            }
        }
        if (fw_fault(common.faults, "task_wdt_under_load")) {
            loaded_ms = tx_mbps + rx_mbps > LOAD_MBPS ? loaded_ms + (now.uptime_ms - last.uptime_ms) : 0;
            if (loaded_ms >= WDT_AFTER_MS) {
                hil_program_crash("wdt", "net_poll");
            }
        }
        last = now;
    }
}

static void set_interface_up(int fd, bool up)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", common.ifname);
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
        ifr.ifr_flags = (short)(up ? ifr.ifr_flags | IFF_UP : ifr.ifr_flags & ~IFF_UP);
        if (ioctl(fd, SIOCSIFFLAGS, &ifr) != 0) {
            hil_log(HIL_LOG_WARN, "hil", "link flap: %s", strerror(errno));
        }
    }
}

/* link_flap_storm: the PHY drops the carrier for FLAP_DOWN_MS every FLAP_PERIOD_MS. */
static void link_flapper(void *arg)
{
    (void)arg;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0); /* any socket carries interface ioctls */
    for (;;) {
        hil_sleep_ms(FLAP_PERIOD_MS - FLAP_DOWN_MS);
        set_interface_up(fd, false);
        hil_sleep_ms(FLAP_DOWN_MS);
        set_interface_up(fd, true);
    }
}

static int start_common_faults(void)
{
    int rc = 0;
    if (fw_fault(common.faults, "rust_panic_under_load") || fw_fault(common.faults, "task_wdt_under_load")) {
        rc |= hil_thread_start("load_watch", load_watch, NULL, 8192, 5);
    }
    if (fw_fault(common.faults, "link_flap_storm")) {
        rc |= hil_thread_start("link_flap", link_flapper, NULL, 8192, 5);
    }
    return rc;
}

/* --- the program -------------------------------------------------------------------------------------- */

static void parse_mac(const char *text)
{
    unsigned b[6];
    char tail;
    if (text == NULL ||
        sscanf(text, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &tail) != 6 ||
        (b[0] & 1)) {
        fw_usage("--mac needs a unicast MAC like 02:00:00:12:34:56");
    }
    for (int i = 0; i < 6; i++) {
        common.mac[i] = (uint8_t)b[i];
    }
    common.have_mac = true;
}

static int stats_provider(hil_stats_t *out, void *arg)
{
    (void)arg;
    fw_net_stats(out);
    return 0;
}

int main(int argc, char **argv)
{
    /* The services program gets every option that is neither common nor the stack's. */
    static char *rest[MAX_ARGS];
    int n_rest = 0;
    rest[n_rest++] = argv[0];
    for (int i = 1; i < argc; i++) {
        int taken = 0;
        if (strcmp(argv[i], "--ifname") == 0 || strcmp(argv[i], "--mac") == 0) {
            if (i + 1 >= argc) {
                fw_usage("--ifname and --mac need a value");
            }
            if (argv[i][2] == 'i') {
                common.ifname = argv[i + 1];
            } else {
                parse_mac(argv[i + 1]);
            }
            taken = 2;
        } else {
            taken = fw_net_option(argc, argv, i);
        }
        if (taken == 0) {
            if (n_rest == MAX_ARGS - 1) {
                fw_usage("too many options");
            }
            rest[n_rest++] = argv[i];
            taken = 1;
        }
        i += taken - 1;
    }
    if (!common.have_mac) {
        fw_usage("--mac is required: it is the board's hardware address");
    }
    hil_program_check(n_rest, rest); /* bad options end here, before the stack touches the interface */
    common.faults = getenv("HIL_FAULTS") ? getenv("HIL_FAULTS") : "";
    signal(SIGPIPE, SIG_IGN); /* a peer that vanishes mid-send must not kill the firmware */
    hil_services_set_mac(common.mac);
    hil_services_set_stats_provider(stats_provider, NULL);
    static char own_faults[1024];
    snprintf(own_faults, sizeof own_faults, "%s,%s", COMMON_FAULTS, FW_NET_FAULTS);
    hil_program_hooks_t hooks = {
        .stack = FW_NET_NAME, .faults = own_faults, .command = fw_net_command, .stats_extra = fw_net_stats_extra};
    hil_program_set_hooks(&hooks);
    if (fw_net_start(&common) != 0 || start_common_faults() != 0) {
        printf("{\"ready\":false,\"error\":\"the network stack did not start; see stderr\"}\n");
        return 1;
    }
    return hil_program_run(n_rest, rest);
}
