/* See iface_guard.h. */
#define _GNU_SOURCE
#include "iface_guard.h"

#include <dirent.h>
#include <errno.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hil_platform.h"

#define TAG "net_stack"

#define NETNS_DIR "/run/netns"
#define LAB_PREFIX "hil-"

/* Whether this process's network namespace is one the project made (ip netns names it hil-...). */
static int in_lab_namespace(void)
{
    struct stat own;
    if (stat("/proc/self/ns/net", &own) != 0) {
        return 0;
    }
    DIR *dir = opendir(NETNS_DIR);
    int found = 0;
    for (struct dirent *entry; dir != NULL && !found && (entry = readdir(dir)) != NULL;) {
        char path[300];
        struct stat named;
        snprintf(path, sizeof path, NETNS_DIR "/%s", entry->d_name);
        found = strncmp(entry->d_name, LAB_PREFIX, strlen(LAB_PREFIX)) == 0 && stat(path, &named) == 0 &&
                named.st_ino == own.st_ino && named.st_dev == own.st_dev;
    }
    if (dir != NULL) {
        closedir(dir);
    }
    return found;
}

int hil_iface_guard(const char *ifname)
{
    if (!in_lab_namespace()) {
        hil_log(HIL_LOG_ERROR, TAG,
                "refusing to take %s over: this is not one of the lab's network namespaces (" NETNS_DIR "/" LAB_PREFIX
                "*); the firmware runs only in a lab's DUT namespace (ip netns exec hil-<run>-dut ...)",
                ifname);
        return -1;
    }
    struct ifreq ifr;
    struct ethtool_drvinfo info = {.cmd = ETHTOOL_GDRVINFO};
    memset(&ifr, 0, sizeof ifr);
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
    ifr.ifr_data = (char *)&info;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0); /* any socket carries interface ioctls */
    int rc = fd < 0 ? -1 : ioctl(fd, SIOCETHTOOL, &ifr);
    if (fd >= 0) {
        close(fd);
    }
    if (rc != 0 || strcmp(info.driver, "veth") != 0) {
        hil_log(HIL_LOG_ERROR, TAG, "refusing to take %s over: it is %s%s, not a lab cable's veth end", ifname,
                rc != 0 ? "not an interface here" : "driven by ", rc != 0 ? "" : info.driver);
        return -1;
    }
    return 0;
}
