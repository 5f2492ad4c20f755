/* Multicast echo (PROTOCOL.md: 5007/udp) and group membership for `mcast join|leave` (IGMP through the
 * stack's IP_ADD_MEMBERSHIP / IP_DROP_MEMBERSHIP on the echo socket). */
#define _DEFAULT_SOURCE /* struct ip_mreq */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>

#include "hil_platform.h"
#include "hil_services.h"
#include "hooks.h"
#include "net_util.h"

#define TAG "hil_mcast"
#define MAX_DATAGRAM 1472

static atomic_int echo_fd = -1;
static atomic_uint echo_port;

uint16_t hil_mcast_echo_port(void)
{
    return (uint16_t)atomic_load(&echo_port);
}

int hil_mcast_echo_run(uint16_t port)
{
    uint16_t bound = 0;
    int fd = hil_net_bind_udp(port, &bound);
    if (fd < 0) {
        return -1;
    }
    atomic_store(&echo_port, bound);
    atomic_store(&echo_fd, fd);
    hil_log(HIL_LOG_INFO, TAG, "multicast echo: port %u", (unsigned)bound);
    hil_services_notify_ready("mcast_echo", NULL, 0, &bound, 1);
    static uint8_t buf[MAX_DATAGRAM];
    for (;;) {
        /* select() first: on the shim a blocking recvfrom with a timeout returns 0 like an empty datagram. */
        int ready = hil_net_wait_readable(fd, 1000);
        if (ready <= 0) {
            if (ready < 0) {
                hil_sleep_ms(100);
            }
            continue;
        }
        struct sockaddr_in from;
        socklen_t from_len = sizeof from;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &from_len);
        if (n < 0) {
            continue;
        }
        sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&from, from_len);
    }
}

int hil_mcast_membership(const char *group, int join)
{
    struct in_addr addr;
    int fd = atomic_load(&echo_fd);
    if (fd < 0 || inet_pton(AF_INET, group, &addr) != 1 || !IN_MULTICAST(ntohl(addr.s_addr))) {
        return -1;
    }
    if (join && hil_hooks_faults()->mcast_deaf) {
        return 0; /* the fault: answer ok, join nothing */
    }
    struct ip_mreq request;
    memset(&request, 0, sizeof request);
    request.imr_multiaddr = addr;
    request.imr_interface.s_addr = htonl(INADDR_ANY);
    if (setsockopt(fd, IPPROTO_IP, join ? IP_ADD_MEMBERSHIP : IP_DROP_MEMBERSHIP, &request, sizeof request) != 0) {
        hil_log(HIL_LOG_WARN, TAG, "%s %s: errno %d", join ? "join" : "leave", group, errno);
        return -1;
    }
    return 0;
}
