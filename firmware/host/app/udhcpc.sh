#!/bin/sh
# busybox udhcpc's script for hil-firmware's linux flavour (firmware/host/app/net_linux.c): applies each
# lease to the interface and reports every udhcpc event to the pipe $HIL_DHCP_EVENTS as one line
# "<event> <ip> <netmask> <router> <lease_s> <server>" ("-" where udhcpc gave no value).
router=${router%% *}
case "$1" in
deconfig)
    ip -4 addr flush dev "$interface"
    ;;
bound)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/$subnet" dev "$interface"
    ;;
renew)
    ip addr replace "$ip/$subnet" dev "$interface"
    ;;
esac
case "$1" in
bound | renew)
    if [ -n "$router" ]; then
        ip route replace default via "$router" dev "$interface"
    else
        ip route del default dev "$interface" 2>/dev/null
    fi
    ;;
esac
echo "$1 ${ip:--} ${subnet:--} ${router:--} ${lease:-0} ${serverid:--}" >>"$HIL_DHCP_EVENTS"
exit 0
