/*
 * The network under hil-firmware's services, one of two (firmware/host/app):
 *   net_smoltcp.c: smoltcp through the runtime (firmware/host/runtime) and the BSD-socket shim;
 *   net_linux.c:   the kernel's own stack on the interface, with busybox udhcpc as DHCP client.
 * Both report the same events, stats and console commands, so the virtual board's console does not
 * know which one runs.
 */
#ifndef HIL_FIRMWARE_NET_H
#define HIL_FIRMWARE_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hil_proto.h"

/* The stack's name in the ready line ("smoltcp" or "linux") and the HIL_FAULTS names it implements. */
extern const char *const FW_NET_NAME;
extern const char *const FW_NET_FAULTS;

/* Settings common to both (hil_firmware_main.c parses them). */
typedef struct {
    const char *ifname;
    uint8_t mac[6];
    bool have_mac;
    const char *faults; /* HIL_FAULTS */
} fw_net_common_t;

/* A stack option at argv[i] ("--static", "--pool-slots", ...): how many words it takes (2), 0 when it is
 * not one of this stack's options. Exits 2 (usage) on a bad value. */
int fw_net_option(int argc, char **argv, int i);

/* Bring the interface and the stack up, install the services' stats provider and L2 driver, apply this
 * stack's faults. 0, or -1 (logged). Events go out through hil_program_event from now on. */
int fw_net_start(const fw_net_common_t *common);

/* HIL_STATS counters now. */
void fw_net_stats(hil_stats_t *out);

/* The console commands `ip`, `heap` and `sockets` (PROTOCOL.md): HIL_RESULT members into out; 0 for
 * another command word. */
int fw_net_command(int argc, char **argv, char *out, size_t len);

/* Diagnostic counters beyond HIL_STATS, as JSON members. Returns their length. */
int fw_net_stats_extra(char *out, size_t len);

/* Helpers shared by both (hil_firmware_main.c). */
void fw_usage(const char *why);
long fw_number(const char *text, long lo, long hi, const char *what);
bool fw_fault(const char *faults, const char *name);
/* The `ip`, `heap` and `sockets` replies (PROTOCOL.md), from what each stack knows. */
void fw_ip_reply(hil_members_t *m, const char *ip, const char *netmask, const char *gw, const uint8_t mac[6],
                 const char *ipv6_ll);
void fw_heap_reply(hil_members_t *m, uint64_t total, uint64_t free, uint64_t min_free);
void fw_sockets_reply(hil_members_t *m, uint64_t active_sockets, uint64_t sockets_max, uint64_t fds_used,
                      uint64_t fds_max, uint64_t fd_base);
/* The HIL_EVENT link_up/link_down, got_ip (addresses in network byte order), lost_ip and dhcp lines. */
void fw_event_link(bool up);
void fw_event_got_ip(uint32_t ip, uint32_t netmask, uint32_t gw, uint32_t lease_s);
void fw_event_lost_ip(uint32_t ip);
void fw_event_dhcp(const char *state, uint32_t server, uint32_t lease_s);

#endif /* HIL_FIRMWARE_NET_H */
