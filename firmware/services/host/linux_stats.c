/*
 * HIL_STATS for hil-services on the host's own stack (the virtual board's linux arm): real kernel
 * counters of one interface, counted from start-up like an EMAC counts from esp_eth_start.
 *   rx/tx frames and bytes: the interface's packet and byte counters;
 *   rx_drops: what the IP/TCP/UDP layers discarded (/proc/net/snmp), like smoltcp dropping a packet;
 *   tx_fails: tx_errors + tx_dropped; frame_pool_drops: rx_dropped + rx_missed_errors + rx_fifo_errors;
 *   link_ups/link_downs: carrier_up_count/carrier_down_count;
 *   active_sockets: TCP and UDP sockets of the network namespace (/proc/net/{tcp,udp}{,6});
 *   heap_free: a nominal 8 MiB heap less what this process allocated beyond start-up (mallinfo2),
 *   heap_min_free its lowest value so far.
 */
#define _GNU_SOURCE
#include "linux_stats.h"

#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hil_platform.h"

#define HEAP_SIZE HIL_LINUX_HEAP_BYTES

typedef struct {
    uint64_t rx_packets, rx_bytes, tx_packets, tx_bytes, tx_errors, tx_dropped, rx_dropped, rx_missed, rx_fifo;
    uint64_t carrier_up, carrier_down, snmp_drops;
} raw_t;

static char iface[32];
static raw_t base;
static uint64_t heap_base;
static uint64_t heap_min_free = HEAP_SIZE;
static hil_mutex_t *lock;

static uint64_t read_counter(const char *name)
{
    char path[160];
    snprintf(path, sizeof path, "/sys/class/net/%s/%s", iface, name);
    FILE *f = fopen(path, "r");
    uint64_t value = 0;
    if (f != NULL) {
        if (fscanf(f, "%" SCNu64, &value) != 1) {
            value = 0;
        }
        fclose(f);
    }
    return value;
}

/* Sum of the named columns of one protocol's pair of lines in /proc/net/snmp. */
static uint64_t snmp_sum(const char *proto, const char *const *names)
{
    FILE *f = fopen("/proc/net/snmp", "r");
    if (f == NULL) {
        return 0;
    }
    char header[1024];
    char values[1024];
    uint64_t total = 0;
    size_t proto_len = strlen(proto);
    while (fgets(header, sizeof header, f) != NULL && fgets(values, sizeof values, f) != NULL) {
        if (strncmp(header, proto, proto_len) != 0 || header[proto_len] != ':') {
            continue;
        }
        char *hsave = NULL;
        char *vsave = NULL;
        char *h = strtok_r(header + proto_len + 1, " \n", &hsave);
        char *v = strtok_r(values + proto_len + 1, " \n", &vsave);
        for (; h != NULL && v != NULL; h = strtok_r(NULL, " \n", &hsave), v = strtok_r(NULL, " \n", &vsave)) {
            for (const char *const *n = names; *n != NULL; n++) {
                if (strcmp(h, *n) == 0) {
                    total += strtoull(v, NULL, 10);
                }
            }
        }
    }
    fclose(f);
    return total;
}

static uint64_t snmp_drops(void)
{
    static const char *const ip[] = {"InDiscards", "InHdrErrors", "InAddrErrors", NULL};
    static const char *const tcp[] = {"InErrs", NULL};
    static const char *const udp[] = {"InErrors", "RcvbufErrors", NULL};
    return snmp_sum("Ip", ip) + snmp_sum("Tcp", tcp) + snmp_sum("Udp", udp);
}

static uint64_t socket_count(void)
{
    static const char *const tables[] = {"/proc/net/tcp", "/proc/net/tcp6", "/proc/net/udp", "/proc/net/udp6"};
    uint64_t count = 0;
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        FILE *f = fopen(tables[i], "r");
        if (f == NULL) {
            continue;
        }
        char line[512];
        for (int lineno = 0; fgets(line, sizeof line, f) != NULL; lineno++) {
            count += lineno > 0; /* the first line is the header */
        }
        fclose(f);
    }
    return count;
}

static raw_t read_raw(void)
{
    raw_t r = {
        .rx_packets = read_counter("statistics/rx_packets"),
        .rx_bytes = read_counter("statistics/rx_bytes"),
        .tx_packets = read_counter("statistics/tx_packets"),
        .tx_bytes = read_counter("statistics/tx_bytes"),
        .tx_errors = read_counter("statistics/tx_errors"),
        .tx_dropped = read_counter("statistics/tx_dropped"),
        .rx_dropped = read_counter("statistics/rx_dropped"),
        .rx_missed = read_counter("statistics/rx_missed_errors"),
        .rx_fifo = read_counter("statistics/rx_fifo_errors"),
        .carrier_up = read_counter("carrier_up_count"),
        .carrier_down = read_counter("carrier_down_count"),
        .snmp_drops = snmp_drops(),
    };
    return r;
}

static uint64_t heap_in_use(void)
{
    struct mallinfo2 info = mallinfo2();
    return (uint64_t)info.uordblks + (uint64_t)info.hblkhd;
}

static uint64_t since(uint64_t now, uint64_t then)
{
    return now > then ? now - then : 0;
}

static int provide(hil_stats_t *out, void *arg)
{
    (void)arg;
    hil_linux_stats_read(out);
    return 0;
}

void hil_linux_stats_read(hil_stats_t *out)
{
    raw_t now = read_raw();
    uint64_t used = since(heap_in_use(), heap_base);
    uint64_t heap_free = used < HEAP_SIZE ? HEAP_SIZE - used : 0;
    hil_mutex_lock(lock);
    if (heap_free < heap_min_free) {
        heap_min_free = heap_free;
    }
    out->heap_min_free = heap_min_free;
    hil_mutex_unlock(lock);
    out->iface = "eth";
    out->rx_frames = since(now.rx_packets, base.rx_packets);
    out->rx_bytes = since(now.rx_bytes, base.rx_bytes);
    out->rx_drops = since(now.snmp_drops, base.snmp_drops);
    out->tx_frames = since(now.tx_packets, base.tx_packets);
    out->tx_bytes = since(now.tx_bytes, base.tx_bytes);
    out->tx_fails = since(now.tx_errors + now.tx_dropped, base.tx_errors + base.tx_dropped);
    out->link_ups = since(now.carrier_up, base.carrier_up);
    out->link_downs = since(now.carrier_down, base.carrier_down);
    out->active_sockets = socket_count();
    out->frame_pool_drops =
        since(now.rx_dropped + now.rx_missed + now.rx_fifo, base.rx_dropped + base.rx_missed + base.rx_fifo);
    out->heap_free = heap_free;
    out->uptime_ms = hil_time_ms();
}

int hil_linux_stats_start(const char *name)
{
    char path[160];
    if (strlen(name) >= sizeof iface) {
        return -1;
    }
    snprintf(iface, sizeof iface, "%s", name);
    snprintf(path, sizeof path, "/sys/class/net/%s/statistics/rx_packets", iface);
    FILE *probe = fopen(path, "r");
    if (probe == NULL || (lock = hil_mutex_create()) == NULL) {
        if (probe != NULL) {
            fclose(probe);
        }
        return -1;
    }
    fclose(probe);
    base = read_raw();
    heap_base = heap_in_use();
    hil_services_set_stats_provider(provide, NULL);
    return 0;
}

int hil_linux_iface_mac(const char *name, uint8_t mac[6])
{
    char path[160];
    snprintf(path, sizeof path, "/sys/class/net/%s/address", name);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    unsigned b[6];
    int n = fscanf(f, "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]);
    fclose(f);
    if (n != 6) {
        return -1;
    }
    for (int i = 0; i < 6; i++) {
        mac[i] = (uint8_t)b[i];
    }
    return 0;
}
