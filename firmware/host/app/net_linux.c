/*
 * hil-firmware's linux flavour, the control arm: the kernel's own stack on the interface (the stand-in
 * for lwIP), busybox udhcpc as the DHCP client, the L2 tap as AF_PACKET sockets, HIL_STATS from the
 * interface's kernel counters (firmware/services/host/linux_stats.c).
 *
 * Options: --dhcp-script PATH  the udhcpc script (firmware/host/app/udhcpc.sh; default: udhcpc.sh beside the
 *          program, where the build puts it): it applies the lease and reports each udhcpc event as one
 *          line to the pipe named by $HIL_DHCP_EVENTS (udhcpc keeps no descriptor of ours open for its
 *          script), read here and turned into events.
 *
 * The fault catalogue's frame-level mechanisms live in the smoltcp runtime; this flavour has none of them.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/if_packet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "firmware_net.h"
#include "hil_platform.h"
#include "hil_services.h"
#include "iface_guard.h"
#include "linux_stats.h"

#define TAG "net_stack"
#ifndef IFF_LOWER_UP
#define IFF_LOWER_UP 0x10000 /* linux/if.h; net/if.h (needed for ifreq) does not define it */
#endif
#define PACKET_OUTGOING_TYPE 4 /* sll_pkttype of what this host sent: a tap must not see its own echoes */
#define FRAME_MAX 1518
#define SOCKETS_MAX 1024 /* the process's descriptor table stands in for lwIP's socket limit */

const char *const FW_NET_NAME = "linux";
const char *const FW_NET_FAULTS = "";

static struct {
    const char *ifname;
    uint8_t mac[6];
    const char *dhcp_script;
    int ifindex;
    uint32_t ip; /* the leased address (network order), 0 without a lease */
} lx;

typedef struct {
    int fd; /* -1: free */
    uint16_t ethertype;
    hil_l2_rx_fn callback;
    void *arg;
} tap_t;

static tap_t taps[HIL_L2_TAPS] = {{.fd = -1}, {.fd = -1}, {.fd = -1}, {.fd = -1}};
static pthread_mutex_t taps_lock = PTHREAD_MUTEX_INITIALIZER;
static int taps_wake[2] = {-1, -1}; /* a byte here makes the reader re-read the table */

int fw_net_option(int argc, char **argv, int i)
{
    if (strcmp(argv[i], "--dhcp-script") == 0) {
        if (i + 1 >= argc) {
            fw_usage("--dhcp-script needs the path of firmware/host/app/udhcpc.sh");
        }
        lx.dhcp_script = argv[i + 1];
        return 2;
    }
    return 0;
}

/* --- the interface ------------------------------------------------------------------------------------ */

static int set_flags(int fd, short set, short clear)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", lx.ifname);
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) != 0) {
        return -1;
    }
    ifr.ifr_flags = (short)((ifr.ifr_flags | set) & ~clear);
    return ioctl(fd, SIOCSIFFLAGS, &ifr);
}

static int bring_up_interface(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", lx.ifname);
    ifr.ifr_hwaddr.sa_family = ARPHRD_ETHER;
    memcpy(ifr.ifr_hwaddr.sa_data, lx.mac, 6);
    int rc = fd < 0 || set_flags(fd, 0, IFF_UP) != 0 || ioctl(fd, SIOCSIFHWADDR, &ifr) != 0;
    /* The kernel is this flavour's stack: IPv6 on (link-local, NDP), the interface up. */
    char path[128];
    snprintf(path, sizeof path, "/proc/sys/net/ipv6/conf/%s/disable_ipv6", lx.ifname);
    int sysctl = open(path, O_WRONLY | O_CLOEXEC);
    if (sysctl >= 0) {
        rc |= write(sysctl, "0", 1) != 1;
        close(sysctl);
    }
    rc = rc || set_flags(fd, IFF_UP, 0) != 0;
    if (rc) {
        hil_log(HIL_LOG_ERROR, TAG, "cannot set up %s: %s", lx.ifname, strerror(errno));
    }
    if (fd >= 0) {
        close(fd);
    }
    return rc ? -1 : 0;
}

/* Carrier changes, as esp_eth reports them: link_up / link_down events. */
static void link_watch(void *arg)
{
    int fd = (int)(intptr_t)arg;
    bool up = false;
    char buf[8192];
    for (bool first = true;; first = false) {
        bool now = up;
        if (first) {
            struct ifreq ifr;
            memset(&ifr, 0, sizeof ifr);
            snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", lx.ifname);
            now = ioctl(fd, SIOCGIFFLAGS, &ifr) == 0 && (ifr.ifr_flags & IFF_RUNNING);
        } else {
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            for (struct nlmsghdr *h = (struct nlmsghdr *)buf; n > 0 && NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
                const struct ifinfomsg *ifi = NLMSG_DATA(h);
                if ((h->nlmsg_type == RTM_NEWLINK || h->nlmsg_type == RTM_DELLINK) && ifi->ifi_index == lx.ifindex) {
                    now = h->nlmsg_type == RTM_NEWLINK && (ifi->ifi_flags & IFF_LOWER_UP);
                }
            }
        }
        if (now != up) {
            up = now;
            hil_log(HIL_LOG_INFO, TAG, "ETH link %s", up ? "up" : "down");
            fw_event_link(up);
        }
    }
}

static int start_link_watch(void)
{
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    struct sockaddr_nl addr = {.nl_family = AF_NETLINK, .nl_groups = RTMGRP_LINK};
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        hil_log(HIL_LOG_ERROR, TAG, "netlink link watch: %s", strerror(errno));
        return -1;
    }
    return hil_thread_start("link_watch", link_watch, (void *)(intptr_t)fd, 16384, 5);
}

/* --- DHCP: busybox udhcpc ----------------------------------------------------------------------------- */

/* One line of the script: "<event> <ip> <netmask> <router> <lease> <server>" (missing values: "-"). */
static void on_dhcp_line(char *line)
{
    char event[16], ip[20], mask[20], router[20], server[20];
    unsigned lease = 0;
    if (sscanf(line, "%15s %19s %19s %19s %u %19s", event, ip, mask, router, &lease, server) != 6) {
        hil_log(HIL_LOG_WARN, TAG, "udhcpc script said '%s'", line);
        return;
    }
    struct in_addr a = {0}, m = {0}, r = {0}, s = {0};
    inet_pton(AF_INET, ip, &a);
    inet_pton(AF_INET, mask, &m);
    inet_pton(AF_INET, router, &r);
    inet_pton(AF_INET, server, &s);
    if (strcmp(event, "bound") == 0 || strcmp(event, "renew") == 0) {
        hil_log(HIL_LOG_INFO, TAG, "DHCPv4 bound %s from %s, lease %u s", ip, server, lease);
        if (a.s_addr != lx.ip) {
            lx.ip = a.s_addr;
            fw_event_got_ip(a.s_addr, m.s_addr, r.s_addr, lease);
        }
        fw_event_dhcp("bound", s.s_addr, lease);
    } else if (strcmp(event, "deconfig") == 0 || strcmp(event, "leasefail") == 0) {
        if (lx.ip != 0) {
            struct in_addr lost = {.s_addr = lx.ip};
            hil_log(HIL_LOG_INFO, TAG, "DHCPv4 lost %s", inet_ntoa(lost));
            fw_event_lost_ip(lx.ip);
            lx.ip = 0;
        }
    } else if (strcmp(event, "nak") == 0) {
        fw_event_dhcp("nak", s.s_addr, 0);
    }
}

static void dhcp_reader(void *arg)
{
    FILE *events = fdopen((int)(intptr_t)arg, "r");
    char line[256];
    while (events != NULL && fgets(line, sizeof line, events) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        on_dhcp_line(line);
    }
    hil_log(HIL_LOG_ERROR, TAG, "udhcpc ended");
}

static int start_dhcp(void)
{
    int events[2];
    static char beside[4096];
    if (lx.dhcp_script == NULL) {
        ssize_t n = readlink("/proc/self/exe", beside, sizeof beside - 16);
        char *slash = n > 0 ? memrchr(beside, '/', (size_t)n) : NULL;
        if (slash == NULL) {
            return -1;
        }
        strcpy(slash, "/udhcpc.sh");
        lx.dhcp_script = beside;
    }
    if (access(lx.dhcp_script, X_OK) != 0) {
        hil_log(HIL_LOG_ERROR, TAG, "the udhcpc script %s is missing or not executable", lx.dhcp_script);
        return -1;
    }
    if (pipe2(events, O_CLOEXEC) != 0) {
        return -1;
    }
    char pipe_path[64];
    snprintf(pipe_path, sizeof pipe_path, "/proc/%ld/fd/%d", (long)getpid(), events[1]);
    pid_t pid = fork();
    if (pid == 0) {
        /* udhcpc dies with the firmware, as the board's DHCP client dies with a reset. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int devnull = open("/dev/null", O_RDWR);
        if (devnull < 0 || dup2(devnull, STDIN_FILENO) < 0 || dup2(devnull, STDOUT_FILENO) < 0 ||
            dup2(devnull, STDERR_FILENO) < 0 || setenv("HIL_DHCP_EVENTS", pipe_path, 1) != 0) {
            _exit(127);
        }
        /* Foreground; 3 DISCOVERs 1 s apart, then again after 1 s; the script is the only output. */
        execlp("busybox", "busybox", "udhcpc", "-f", "-i", lx.ifname, "-s", lx.dhcp_script, "-t", "3", "-T", "1",
               "-A", "1", (char *)NULL);
        _exit(127);
    }
    if (pid < 0) {
        return -1;
    }
    /* The write end stays open here: the script reopens it by its /proc path for every event. */
    return hil_thread_start("dhcp", dhcp_reader, (void *)(intptr_t)events[0], 16384, 5);
}

/* --- L2 tap: one AF_PACKET socket per EtherType ------------------------------------------------------- */

static void tap_reader(void *arg)
{
    (void)arg;
    static uint8_t frame[FRAME_MAX];
    for (;;) {
        struct pollfd fds[HIL_L2_TAPS + 1];
        tap_t seen[HIL_L2_TAPS];
        int n = 0;
        fds[n++] = (struct pollfd){.fd = taps_wake[0], .events = POLLIN};
        pthread_mutex_lock(&taps_lock);
        for (int i = 0; i < HIL_L2_TAPS; i++) {
            if (taps[i].fd >= 0) {
                seen[n - 1] = taps[i];
                fds[n++] = (struct pollfd){.fd = taps[i].fd, .events = POLLIN};
            }
        }
        pthread_mutex_unlock(&taps_lock);
        if (poll(fds, (nfds_t)n, -1) <= 0) {
            continue;
        }
        if (fds[0].revents & POLLIN) {
            char drop[16];
            if (read(taps_wake[0], drop, sizeof drop) < 0) {
                hil_log(HIL_LOG_WARN, TAG, "tap wake-up: %s", strerror(errno));
            }
            continue; /* the table changed: a socket polled above may be closed */
        }
        for (int i = 1; i < n; i++) {
            if (!(fds[i].revents & POLLIN)) {
                continue;
            }
            struct sockaddr_ll from;
            socklen_t from_len = sizeof from;
            ssize_t len = recvfrom(fds[i].fd, frame, sizeof frame, MSG_DONTWAIT, (struct sockaddr *)&from, &from_len);
            if (len > 0 && from.sll_pkttype != PACKET_OUTGOING_TYPE) {
                seen[i - 1].callback(seen[i - 1].arg, frame, (size_t)len);
            }
        }
    }
}

static int l2_tap(uint16_t ethertype, hil_l2_rx_fn callback, void *arg, void *ctx)
{
    (void)ctx;
    int rc = -1;
    pthread_mutex_lock(&taps_lock);
    for (int i = 0; i < HIL_L2_TAPS && rc != 0; i++) {
        if (callback == NULL && taps[i].fd >= 0 && taps[i].ethertype == ethertype) {
            close(taps[i].fd);
            taps[i].fd = -1;
            rc = 0;
        } else if (callback != NULL && taps[i].fd < 0) {
            int fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ethertype));
            struct sockaddr_ll addr = {
                .sll_family = AF_PACKET, .sll_protocol = htons(ethertype), .sll_ifindex = lx.ifindex};
            if (fd >= 0 && bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0) {
                taps[i] = (tap_t){.fd = fd, .ethertype = ethertype, .callback = callback, .arg = arg};
                rc = 0;
            } else if (fd >= 0) {
                close(fd);
            }
            break;
        }
    }
    pthread_mutex_unlock(&taps_lock);
    if (rc == 0 && write(taps_wake[1], "t", 1) != 1) {
        hil_log(HIL_LOG_WARN, TAG, "tap wake-up: %s", strerror(errno));
    }
    return rc;
}

static int l2_send(const uint8_t *frame, size_t len, void *ctx)
{
    (void)ctx;
    static int fd = -1; /* the echo task's only */
    if (fd < 0) {
        fd = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    }
    struct sockaddr_ll to = {.sll_family = AF_PACKET, .sll_ifindex = lx.ifindex, .sll_halen = 6};
    memcpy(to.sll_addr, frame, 6);
    return sendto(fd, frame, len, 0, (struct sockaddr *)&to, sizeof to) == (ssize_t)len ? 0 : -1;
}

/* --- start ------------------------------------------------------------------------------------------- */

int fw_net_start(const fw_net_common_t *common)
{
    lx.ifname = common->ifname;
    memcpy(lx.mac, common->mac, 6);
    lx.ifindex = (int)if_nametoindex(lx.ifname);
    if (lx.ifindex == 0) {
        hil_log(HIL_LOG_ERROR, TAG, "no interface %s in this network namespace", lx.ifname);
        return -1;
    }
    if (hil_iface_guard(lx.ifname) != 0) {
        return -1;
    }
    if (bring_up_interface() != 0 || hil_linux_stats_start(lx.ifname) != 0 || pipe2(taps_wake, O_CLOEXEC) != 0) {
        return -1;
    }
    const uint8_t *b = lx.mac;
    hil_log(HIL_LOG_INFO, TAG, "ETH attached, MAC %02x:%02x:%02x:%02x:%02x:%02x, DHCPv4 client started (udhcpc)",
            b[0], b[1], b[2], b[3], b[4], b[5]);
    hil_l2_driver_t driver = {.tap = l2_tap, .send = l2_send};
    hil_services_set_l2_driver(&driver);
    if (start_link_watch() != 0 || start_dhcp() != 0 || hil_thread_start("l2_taps", tap_reader, NULL, 16384, 5) != 0) {
        return -1;
    }
    return 0;
}

/* --- stats and commands ------------------------------------------------------------------------------ */

void fw_net_stats(hil_stats_t *out)
{
    hil_linux_stats_read(out);
}

int fw_net_stats_extra(char *out, size_t len)
{
    (void)len;
    out[0] = '\0';
    return 0;
}

static uint32_t default_gateway(void)
{
    FILE *routes = fopen("/proc/net/route", "r");
    char name[IF_NAMESIZE + 1];
    unsigned dest, gw, flags;
    char line[256];
    uint32_t found = 0;
    while (routes != NULL && fgets(line, sizeof line, routes) != NULL) {
        if (sscanf(line, "%16s %x %x %x", name, &dest, &gw, &flags) == 4 && dest == 0 && strcmp(name, lx.ifname) == 0) {
            found = gw; /* already in network order, as the kernel stores it */
        }
    }
    if (routes != NULL) {
        fclose(routes);
    }
    return found;
}

static void reply_ip(hil_members_t *m)
{
    char ip[INET_ADDRSTRLEN] = "0.0.0.0", mask[INET_ADDRSTRLEN] = "0.0.0.0", ll[INET6_ADDRSTRLEN] = "";
    char gw[INET_ADDRSTRLEN];
    struct ifaddrs *addrs = NULL;
    if (getifaddrs(&addrs) == 0) {
        for (struct ifaddrs *a = addrs; a != NULL; a = a->ifa_next) {
            if (a->ifa_addr == NULL || strcmp(a->ifa_name, lx.ifname) != 0) {
                continue;
            }
            if (a->ifa_addr->sa_family == AF_INET) {
                inet_ntop(AF_INET, &((struct sockaddr_in *)a->ifa_addr)->sin_addr, ip, sizeof ip);
                inet_ntop(AF_INET, &((struct sockaddr_in *)a->ifa_netmask)->sin_addr, mask, sizeof mask);
            } else if (a->ifa_addr->sa_family == AF_INET6 &&
                       IN6_IS_ADDR_LINKLOCAL(&((struct sockaddr_in6 *)a->ifa_addr)->sin6_addr)) {
                inet_ntop(AF_INET6, &((struct sockaddr_in6 *)a->ifa_addr)->sin6_addr, ll, sizeof ll);
            }
        }
        freeifaddrs(addrs);
    }
    struct in_addr router = {.s_addr = default_gateway()};
    inet_ntop(AF_INET, &router, gw, sizeof gw);
    fw_ip_reply(m, ip, mask, gw, lx.mac, ll);
}

/* Socket descriptors this process holds (lwIP's "sockets in use"). */
static uint64_t socket_fds(void)
{
    DIR *dir = opendir("/proc/self/fd");
    uint64_t count = 0;
    struct dirent *entry;
    while (dir != NULL && (entry = readdir(dir)) != NULL) {
        char path[300], target[64];
        snprintf(path, sizeof path, "/proc/self/fd/%s", entry->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        count += n > 7 && strncmp(target, "socket:", 7) == 0;
    }
    if (dir != NULL) {
        closedir(dir);
    }
    return count;
}

int fw_net_command(int argc, char **argv, char *out, size_t len)
{
    hil_members_t m;
    hil_members_init(&m, out, len);
    hil_stats_t stats;
    if (argc == 1 && strcmp(argv[0], "ip") == 0) {
        reply_ip(&m);
    } else if (argc == 1 && strcmp(argv[0], "heap") == 0) {
        hil_linux_stats_read(&stats);
        fw_heap_reply(&m, HIL_LINUX_HEAP_BYTES, stats.heap_free, stats.heap_min_free);
    } else if (argc == 1 && strcmp(argv[0], "sockets") == 0) {
        hil_linux_stats_read(&stats);
        fw_sockets_reply(&m, stats.active_sockets, SOCKETS_MAX, socket_fds(), SOCKETS_MAX, 0);
    } else {
        return 0;
    }
    return 1;
}
