/*
 * The native firmware takes over a network interface (its MAC, its link, IPv6, and on the linux flavour its
 * addresses and routes). It may only ever be a lab's own cable: a veth end inside one of the project's
 * network namespaces (/run/netns/hil-*, the harness creates no other). hil_iface_guard checks both before
 * anything is changed.
 */
#ifndef HIL_IFACE_GUARD_H
#define HIL_IFACE_GUARD_H

/* 0 when ifname is a veth and this process is in a /run/netns/hil-* namespace; -1 (reason logged) otherwise. */
int hil_iface_guard(const char *ifname);

#endif /* HIL_IFACE_GUARD_H */
