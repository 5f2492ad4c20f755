/* hil-services on the host's own stack: HIL_STATS from kernel counters, the MAC of an interface. */
#ifndef HIL_LINUX_STATS_H
#define HIL_LINUX_STATS_H

#include <stdint.h>

#include "hil_services.h"

/* The nominal heap HIL_STATS reports on the host: 8 MiB, less what the process allocated after start-up. */
#define HIL_LINUX_HEAP_BYTES (8u * 1024u * 1024u)

/* Count from now on interface name and install the stats provider. 0, or -1 (no such interface). */
int hil_linux_stats_start(const char *name);
/* The counters now (what the provider gives); hil_linux_stats_start first. */
void hil_linux_stats_read(hil_stats_t *out);
/* The interface's MAC address. 0, or -1. */
int hil_linux_iface_mac(const char *name, uint8_t mac[6]);

#endif /* HIL_LINUX_STATS_H */
