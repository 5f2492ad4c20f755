/*
 * hil-firmware: the virtual ESP32-P4's network firmware as one Linux program.
 *
 * Built twice from this file (harness/boards/virtual/stackbuild.py):
 *   smoltcp flavour (HIL_NATIVE_STACK): smoltcp on the DUT interface through an AF_PACKET socket
 *     (firmware/host/runtime), and the firmware's services (firmware/services) unchanged on the
 *     BSD-socket shim (firmware/host/shim);
 *   linux flavour: the same services on the kernel's sockets (the control arm).
 *
 *   hil-firmware [--ifname IF] [--mac MAC] [--static IP/PREFIX[/GW]] [--heap-bytes N]
 *                [--pool-slots N] [--slot-bytes N] [--frame-mtu N] [--max-sockets N] [--listen-pool N]
 *                [--tcp-rx N] [--tcp-tx N] [--udp-rx N] [--udp-tx N] [--udp-packets N]
 *                [--fd-base N] [--fd-count N]
 *                [--iperf3 PORT] [--select-echo TCP_PORT UDP_BASE COUNT] [--tcp-echo PORT] [--udp-echo PORT]
 *                [--ready-timeout S]
 *
 * stdout carries JSON lines (the hil-services protocol, extended):
 *   {"ready":true,"pid":N,"stack":"smoltcp","mac":"..","services":{"iperf3":{"tcp":[5201],"udp":[]},...}}
 *   events as they happen, each with an "event" member (the HIL_EVENT fields):
 *     {"event":"link_up","iface":"eth"}  {"event":"got_ip","iface":"eth","ip":..,"netmask":..,"gw":..,"lease_s":N}
 *     {"event":"dhcp","iface":"eth","state":"bound","server":..,"lease_s":N}  {"event":"lost_ip","iface":"eth","ip":..}
 *   and one reply line (no "event" member) per stdin command:
 *     stats   -> {"select_echo":{..},"iperf3":{..},"net":{<HIL_STATS fields>,...}}
 *     sockets -> the same as stats, plus "fds":{"used":N,"max":N,"base":N}
 *     ip      -> {"ip":..,"netmask":..,"gw":..,"mac":..,"ipv6_ll":..}
 *     heap    -> {"free":N,"min_free":N,"total":N}
 *     quit    -> {"bye":true}, exit 0 (EOF on stdin exits too)
 * Logs (ESP-IDF format, tag net_stack for the stack) go to stderr.
 * HIL_FAULTS (comma-separated) switches on the services' catalogue faults, as for hil-services.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hil_platform.h"
#include "hil_services.h"

#ifdef HIL_NATIVE_STACK
#include "netstack.h"
#include "sockshim.h"
#define STACK_NAME "smoltcp"
#else
#define STACK_NAME "linux"
#endif

#define MAX_SERVICES 8
#define DEFAULT_HEAP_BYTES (8u * 1024u * 1024u)

typedef enum { SVC_IPERF3, SVC_SELECT_ECHO, SVC_TCP_ECHO, SVC_UDP_ECHO } svc_kind_t;

typedef struct {
    svc_kind_t kind;
    uint16_t port, udp_base;
    int udp_count;
} svc_t;

static struct {
    const char *ifname;
    uint8_t mac[6];
    bool have_mac;
    size_t heap_bytes;
    svc_t services[MAX_SERVICES];
    int n_services;
    long ready_timeout_s;
#ifdef HIL_NATIVE_STACK
    hil_net_config_t net;
    hil_shim_config_t shim;
#endif
} opt;

static int ready_pipe[2];
static hil_mutex_t *out_lock;
static char ready_json[2048];
static size_t ready_len;

/* --- output ------------------------------------------------------------------------------------------ */

static void emit_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void emit_line(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    hil_mutex_lock(out_lock);
    vprintf(fmt, ap);
    fputc('\n', stdout);
    fflush(stdout);
    hil_mutex_unlock(out_lock);
    va_end(ap);
}

static void mac_text(const uint8_t *mac, char *buf)
{
    snprintf(buf, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
}

/* --- options ----------------------------------------------------------------------------------------- */

static void usage(const char *why)
{
    fprintf(stderr,
            "hil-firmware (%s): %s\n"
            "usage: hil-firmware [--ifname IF] [--mac MAC] [--static IP/PREFIX[/GW]] [--heap-bytes N]\n"
            "         [--pool-slots N] [--slot-bytes N] [--frame-mtu N] [--max-sockets N] [--listen-pool N]\n"
            "         [--tcp-rx N] [--tcp-tx N] [--udp-rx N] [--udp-tx N] [--udp-packets N] [--fd-base N]\n"
            "         [--fd-count N] [--iperf3 PORT] [--select-echo TCP_PORT UDP_BASE COUNT] [--tcp-echo PORT]\n"
            "         [--udp-echo PORT] [--ready-timeout S]\n",
            STACK_NAME, why);
    exit(2);
}

static long number(const char *text, long lo, long hi, const char *what)
{
    char *end = NULL;
    errno = 0;
    long v = text ? strtol(text, &end, 10) : 0;
    if (text == NULL || *text == '\0' || *end != '\0' || errno != 0 || v < lo || v > hi) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s must be a number in %ld..%ld, got '%s'", what, lo, hi, text ? text : "");
        usage(msg);
    }
    return v;
}

static void parse_mac(const char *text)
{
    unsigned b[6];
    if (text == NULL || sscanf(text, "%2x:%2x:%2x:%2x:%2x:%2x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6 ||
        (b[0] & 1)) {
        usage("--mac needs a unicast MAC like 02:00:00:12:34:56");
    }
    for (int i = 0; i < 6; i++) {
        opt.mac[i] = (uint8_t)b[i];
    }
    opt.have_mac = true;
}

#ifdef HIL_NATIVE_STACK
static void parse_static(const char *text)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%s", text ? text : "");
    char *prefix = strchr(buf, '/');
    char *gw = prefix ? strchr(prefix + 1, '/') : NULL;
    if (prefix == NULL) {
        usage("--static needs IP/PREFIX[/GW]");
    }
    *prefix++ = '\0';
    if (gw) {
        *gw++ = '\0';
    }
    struct in_addr ip;
    struct in_addr router = {0};
    if (inet_pton(AF_INET, buf, &ip) != 1 || (gw && inet_pton(AF_INET, gw, &router) != 1)) {
        usage("--static needs IP/PREFIX[/GW] with dotted IPv4 addresses");
    }
    opt.net.dhcp = false;
    opt.net.static_ip = ip.s_addr;
    opt.net.static_prefix = (uint8_t)number(prefix, 0, 32, "--static PREFIX");
    opt.net.static_gw = router.s_addr;
}

/* Options that set a uint32_t of the stack's configuration. */
static uint32_t *limit_option(const char *name)
{
    static const struct {
        const char *name;
        size_t offset;
    } table[] = {
        {"--pool-slots", offsetof(hil_net_config_t, pool_slots)},
        {"--slot-bytes", offsetof(hil_net_config_t, slot_bytes)},
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
            return (uint32_t *)((char *)&opt.net + table[i].offset);
        }
    }
    return NULL;
}
#endif

static void parse_args(int argc, char **argv)
{
    opt.ifname = "eth0";
    opt.heap_bytes = DEFAULT_HEAP_BYTES;
    opt.ready_timeout_s = 10;
#ifdef HIL_NATIVE_STACK
    hil_net_default_config(&opt.net);
    hil_shim_default_config(&opt.shim);
#endif
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        svc_t *svc = &opt.services[opt.n_services];
        if (strcmp(o, "--iperf3") == 0 || strcmp(o, "--tcp-echo") == 0 || strcmp(o, "--udp-echo") == 0) {
            if (opt.n_services == MAX_SERVICES) {
                usage("too many services");
            }
            svc->kind = strcmp(o, "--iperf3") == 0 ? SVC_IPERF3 : strcmp(o, "--tcp-echo") == 0 ? SVC_TCP_ECHO
                                                                                             : SVC_UDP_ECHO;
            svc->port = (uint16_t)number(v, 0, 65535, o);
            opt.n_services++;
            i++;
        } else if (strcmp(o, "--select-echo") == 0) {
            if (i + 3 >= argc || opt.n_services == MAX_SERVICES) {
                usage("--select-echo needs TCP_PORT UDP_BASE COUNT");
            }
            svc->kind = SVC_SELECT_ECHO;
            svc->port = (uint16_t)number(argv[++i], 0, 65535, "select-echo TCP_PORT");
            svc->udp_base = (uint16_t)number(argv[++i], 0, 65535, "select-echo UDP_BASE");
            svc->udp_count = (int)number(argv[++i], 0, HIL_SELECT_ECHO_MAX_UDP, "select-echo COUNT");
            opt.n_services++;
        } else if (strcmp(o, "--ready-timeout") == 0) {
            opt.ready_timeout_s = number(v, 1, 3600, o);
            i++;
        } else if (strcmp(o, "--ifname") == 0) {
            if (v == NULL) {
                usage("--ifname needs an interface");
            }
            opt.ifname = v;
            i++;
        } else if (strcmp(o, "--mac") == 0) {
            parse_mac(v);
            i++;
        } else if (strcmp(o, "--heap-bytes") == 0) {
            opt.heap_bytes = (size_t)number(v, 64 * 1024, 1L << 34, o);
            i++;
#ifdef HIL_NATIVE_STACK
        } else if (strcmp(o, "--static") == 0) {
            parse_static(v);
            i++;
        } else if (strcmp(o, "--fd-base") == 0) {
            opt.shim.fd_base = (int)number(v, 3, 1 << 20, o);
            i++;
        } else if (strcmp(o, "--fd-count") == 0) {
            opt.shim.fd_count = (int)number(v, 1, 1024, o);
            i++;
        } else if (limit_option(o) != NULL) {
            *limit_option(o) = (uint32_t)number(v, 1, 1 << 24, o);
            i++;
#endif
        } else {
            char msg[128];
            snprintf(msg, sizeof msg, "unknown option '%s'", o);
            usage(msg);
        }
    }
    if (opt.n_services == 0) {
        usage("no service chosen");
    }
#ifdef HIL_NATIVE_STACK
    if (!opt.have_mac) {
        usage("--mac is required: it is the stack's hardware address");
    }
    opt.net.ifname = opt.ifname;
    memcpy(opt.net.mac, opt.mac, 6);
#endif
}

/* --- services ---------------------------------------------------------------------------------------- */

static void on_ready(const char *service, const uint16_t *tcp, int n_tcp, const uint16_t *udp, int n_udp, void *arg)
{
    (void)arg;
    hil_mutex_lock(out_lock);
    size_t cap = sizeof ready_json;
    ready_len += (size_t)snprintf(ready_json + ready_len, cap - ready_len, "%s\"%s\":{\"tcp\":[",
                                  ready_len ? "," : "", service);
    for (int i = 0; i < n_tcp; i++) {
        ready_len += (size_t)snprintf(ready_json + ready_len, cap - ready_len, "%s%u", i ? "," : "", tcp[i]);
    }
    ready_len += (size_t)snprintf(ready_json + ready_len, cap - ready_len, "],\"udp\":[");
    for (int i = 0; i < n_udp; i++) {
        ready_len += (size_t)snprintf(ready_json + ready_len, cap - ready_len, "%s%u", i ? "," : "", udp[i]);
    }
    ready_len += (size_t)snprintf(ready_json + ready_len, cap - ready_len, "]}");
    hil_mutex_unlock(out_lock);
    char ok = 'R';
    if (write(ready_pipe[1], &ok, 1) != 1) {
        abort();
    }
}

static void service_thread(void *arg)
{
    const svc_t *svc = arg;
    switch (svc->kind) {
    case SVC_IPERF3:
        hil_iperf3_server_run(svc->port);
        break;
    case SVC_SELECT_ECHO:
        hil_select_echo_run(svc->port, svc->udp_base, svc->udp_count);
        break;
    case SVC_TCP_ECHO:
        hil_tcp_echo_run(svc->port);
        break;
    case SVC_UDP_ECHO:
        hil_udp_echo_run(svc->port);
        break;
    }
    char failed = 'F'; /* the services only return when setting up failed */
    if (write(ready_pipe[1], &failed, 1) != 1) {
        abort();
    }
}

static bool listed(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; p != NULL && *p != '\0';) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0) {
            return true;
        }
        p = end ? end + 1 : NULL;
    }
    return false;
}

static void apply_faults(void)
{
    const char *list = getenv("HIL_FAULTS");
    hil_select_echo_faults_t faults = {0};
    if (list != NULL && listed(list, "socket_slot_leak")) {
        faults.slot_leak_after = 24; /* where the historical handle map ran out */
    }
    faults.udp_never_readable = list != NULL && listed(list, "udp_never_readable");
    hil_select_echo_set_faults(&faults);
}

/* 0 when every service is bound, else a JSON error text. */
static const char *start_services(void)
{
    hil_services_set_ready_hook(on_ready, NULL);
    apply_faults();
    for (int i = 0; i < opt.n_services; i++) {
        if (hil_thread_start("hil_svc", service_thread, &opt.services[i], 16384, 5) != 0) {
            return "cannot start a service thread";
        }
    }
    uint64_t deadline = hil_time_us() + (uint64_t)opt.ready_timeout_s * 1000000u;
    for (int ready = 0; ready < opt.n_services;) {
        struct pollfd pfd = {.fd = ready_pipe[0], .events = POLLIN};
        int64_t left_ms = ((int64_t)deadline - (int64_t)hil_time_us()) / 1000;
        if (left_ms <= 0 || poll(&pfd, 1, (int)left_ms) == 0) {
            return "services not bound in time";
        }
        char c;
        if (read(ready_pipe[0], &c, 1) == 1) {
            if (c != 'R') {
                return "a service failed to start; see stderr";
            }
            ready++;
        }
    }
    return NULL;
}

/* --- the stack's side -------------------------------------------------------------------------------- */

#ifdef HIL_NATIVE_STACK
static const char *ip_text(uint32_t ip, char *buf)
{
    inet_ntop(AF_INET, &ip, buf, INET_ADDRSTRLEN);
    return buf;
}

static void on_net_event(const hil_net_event_t *e, void *arg)
{
    (void)arg;
    char ip[INET_ADDRSTRLEN], mask[INET_ADDRSTRLEN], gw[INET_ADDRSTRLEN], server[INET_ADDRSTRLEN];
    switch (e->kind) {
    case HIL_NET_LINK_UP:
    case HIL_NET_LINK_DOWN:
        emit_line("{\"event\":\"%s\",\"iface\":\"eth\"}", e->kind == HIL_NET_LINK_UP ? "link_up" : "link_down");
        break;
    case HIL_NET_GOT_IP:
        emit_line("{\"event\":\"got_ip\",\"iface\":\"eth\",\"ip\":\"%s\",\"netmask\":\"%s\",\"gw\":\"%s\","
                  "\"lease_s\":%" PRIu32 "}",
                  ip_text(e->ip, ip), ip_text(e->netmask, mask), ip_text(e->gw, gw), e->lease_s);
        break;
    case HIL_NET_LOST_IP:
        emit_line("{\"event\":\"lost_ip\",\"iface\":\"eth\",\"ip\":\"%s\"}", ip_text(e->ip, ip));
        break;
    case HIL_NET_DHCP:
        emit_line("{\"event\":\"dhcp\",\"iface\":\"eth\",\"state\":\"bound\",\"server\":\"%s\",\"lease_s\":%" PRIu32
                  "}",
                  ip_text(e->server, server), e->lease_s);
        break;
    }
}

static int net_fields(char *buf, size_t len)
{
    hil_net_stats_t s;
    hil_net_stats(&s);
    return snprintf(buf, len,
                    "\"iface\":\"eth\",\"rx_frames\":%" PRIu64 ",\"rx_bytes\":%" PRIu64 ",\"rx_drops\":%" PRIu64
                    ",\"tx_frames\":%" PRIu64 ",\"tx_bytes\":%" PRIu64 ",\"tx_fails\":%" PRIu64
                    ",\"link_ups\":%" PRIu64 ",\"link_downs\":%" PRIu64 ",\"active_sockets\":%" PRIu32
                    ",\"frame_pool_drops\":%" PRIu64 ",\"heap_free\":%zu,\"heap_min_free\":%zu,\"uptime_ms\":%" PRIu32
                    ",\"rx_kernel_drops\":%" PRIu64 ",\"rx_csum_not_ready\":%" PRIu64 ",\"pool_min_free\":%" PRIu32
                    ",\"polls\":%" PRIu64,
                    s.stack.rx_frames, s.stack.rx_bytes, s.stack.rx_drops + s.rx_kernel_drops, s.stack.tx_frames,
                    s.stack.tx_bytes, s.stack.tx_fails, s.link_ups, s.link_downs, s.stack.active_sockets,
                    s.pool.drops, hs_heap_free(), hs_heap_min_free(), hil_time_ms(), s.rx_kernel_drops,
                    s.rx_csum_not_ready, s.pool.min_free, s.polls);
}

static void print_ip(void)
{
    hs_ip_info_t info;
    hil_net_ip_info(&info);
    char ip[INET_ADDRSTRLEN], mask[INET_ADDRSTRLEN], gw[INET_ADDRSTRLEN], mac[18], ll[INET6_ADDRSTRLEN] = "";
    mac_text(opt.mac, mac);
    if (info.has_ipv6_ll && hil_net_link_up()) {
        inet_ntop(AF_INET6, info.ipv6_ll, ll, sizeof ll);
    }
    emit_line("{\"ip\":\"%s\",\"netmask\":\"%s\",\"gw\":\"%s\",\"mac\":\"%s\",\"ipv6_ll\":\"%s\"}",
              ip_text(info.ip, ip), ip_text(info.netmask, mask), ip_text(info.gw, gw), mac, ll);
}

static void print_heap(void)
{
    emit_line("{\"free\":%zu,\"min_free\":%zu,\"total\":%zu}", hs_heap_free(), hs_heap_min_free(), hs_heap_total());
}

static void print_fds(char *buf, size_t len)
{
    hil_shim_stats_t s;
    hil_shim_stats(&s);
    int n = snprintf(buf, len, ",\"fds\":{\"used\":%d,\"max\":%d,\"base\":%d},\"tcp\":", s.fds_used, s.fd_count,
                     s.fd_base);
    if (n > 0 && (size_t)n < len) {
        hil_net_describe_tcp(buf + n, len - (size_t)n);
    }
}

static int start_stack(void)
{
    hs_heap_set_budget(opt.heap_bytes);
    opt.net.on_event = on_net_event;
    if (hil_net_start(&opt.net) != 0) {
        return -1;
    }
    return hil_shim_init(&opt.shim);
}
#else
/* The control arm: the kernel's stack answers; its counters come from the interface. */
static int net_fields(char *buf, size_t len)
{
    static const char *names[] = {"rx_packets", "rx_bytes", "rx_dropped", "tx_packets", "tx_bytes", "tx_errors"};
    static const char *fields[] = {"rx_frames", "rx_bytes", "rx_drops", "tx_frames", "tx_bytes", "tx_fails"};
    int off = snprintf(buf, len, "\"iface\":\"eth\",\"uptime_ms\":%" PRIu32, hil_time_ms());
    for (size_t i = 0; i < sizeof names / sizeof names[0] && off > 0 && (size_t)off < len; i++) {
        char path[160];
        unsigned long long value = 0;
        snprintf(path, sizeof path, "/sys/class/net/%s/statistics/%s", opt.ifname, names[i]);
        FILE *f = fopen(path, "r");
        if (f != NULL) {
            if (fscanf(f, "%llu", &value) != 1) {
                value = 0;
            }
            fclose(f);
        }
        off += snprintf(buf + off, len - (size_t)off, ",\"%s\":%llu", fields[i], value);
    }
    return off;
}

static void print_ip(void)
{
    emit_line("{\"error\":\"the linux flavour reports addresses with ip(8)\"}");
}

static void print_heap(void)
{
    emit_line("{\"error\":\"the linux flavour has no heap budget\"}");
}

static void print_fds(char *buf, size_t len)
{
    buf[0] = '\0';
    (void)len;
}

static int start_stack(void)
{
    return 0;
}
#endif

/* --- commands ---------------------------------------------------------------------------------------- */

static void print_stats(bool with_fds)
{
    hil_select_echo_stats_t echo;
    hil_iperf3_stats_t iperf;
    char echo_fields[768];
    char net[1024];
    static char fds[8192]; /* main thread only */
    fds[0] = '\0';
    hil_select_echo_get_stats(&echo);
    hil_iperf3_get_stats(&iperf);
    if (hil_select_echo_format_stats(echo_fields, sizeof echo_fields, &echo) < 0) {
        echo_fields[0] = '\0';
    }
    net_fields(net, sizeof net);
    if (with_fds) {
        print_fds(fds, sizeof fds);
    }
    emit_line("{\"select_echo\":{%s},\"iperf3\":{\"tests_done\":%" PRIu32 ",\"tests_failed\":%" PRIu32
              ",\"access_denied\":%" PRIu32 "},\"net\":{%s}%s}",
              echo_fields, iperf.tests_done, iperf.tests_failed, iperf.access_denied, net, fds);
}

/* Returns true when the program should exit. */
static bool handle_command(char *line)
{
    line[strcspn(line, "\r")] = '\0';
    if (strcmp(line, "stats") == 0 || strcmp(line, "sockets") == 0) {
        print_stats(strcmp(line, "sockets") == 0);
    } else if (strcmp(line, "ip") == 0) {
        print_ip();
    } else if (strcmp(line, "heap") == 0) {
        print_heap();
    } else if (strcmp(line, "quit") == 0) {
        emit_line("{\"bye\":true}");
        return true;
    } else if (line[0] != '\0') {
        emit_line("{\"error\":\"unknown command; use stats, sockets, ip, heap or quit\"}");
    }
    return false;
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN); /* a peer that vanishes mid-send must not kill the firmware */
    out_lock = hil_mutex_create();
    if (out_lock == NULL || pipe(ready_pipe) != 0) {
        perror("hil-firmware: setup");
        return 1;
    }
    if (start_stack() != 0) {
        emit_line("{\"ready\":false,\"error\":\"the network stack did not start; see stderr\"}");
        return 1;
    }
    const char *error = start_services();
    if (error != NULL) {
        emit_line("{\"ready\":false,\"error\":\"%s\"}", error);
        return 1;
    }
    char mac[18];
    mac_text(opt.mac, mac);
    hil_mutex_lock(out_lock);
    printf("{\"ready\":true,\"pid\":%ld,\"stack\":\"%s\",\"mac\":\"%s\",\"services\":{%s}}\n", (long)getpid(),
           STACK_NAME, opt.have_mac ? mac : "", ready_json);
    fflush(stdout);
    hil_mutex_unlock(out_lock);

    /* stdin with read(), not stdio: several commands arriving together must all be answered. */
    char line[256];
    size_t used = 0;
    for (;;) {
        struct pollfd fds[2] = {{.fd = STDIN_FILENO, .events = POLLIN}, {.fd = ready_pipe[0], .events = POLLIN}};
        int rc = poll(fds, 2, -1);
        if (rc < 0 && errno != EINTR) {
            return 1;
        }
        if (rc > 0 && (fds[1].revents & POLLIN)) {
            hil_log(HIL_LOG_ERROR, "hil", "a service stopped");
            return 1;
        }
        if (rc <= 0 || !(fds[0].revents & (POLLIN | POLLHUP))) {
            continue;
        }
        ssize_t n = read(STDIN_FILENO, line + used, sizeof line - 1 - used);
        if (n <= 0) {
            return 0; /* stdin closed: the owner is gone */
        }
        used += (size_t)n;
        line[used] = '\0';
        char *start = line;
        for (char *nl; (nl = strchr(start, '\n')) != NULL; start = nl + 1) {
            *nl = '\0';
            if (handle_command(start)) {
                return 0;
            }
        }
        used = strlen(start);
        memmove(line, start, used + 1);
        if (used == sizeof line - 1) {
            used = 0; /* an endless line is not a command */
        }
    }
}
