"""Multicast echo on UDP 5007 and `mcast join|leave <group>` on the virtual board.

Joining uses the kernel's IP_ADD_MEMBERSHIP on the DUT interface, so the IGMP membership report is a
real frame on the lab cable. With the `mcast_deaf` fault `mcast join` answers ok but joins nothing.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import struct
import threading
from typing import TYPE_CHECKING

from harness.boards.virtual.registry import command, fault_mechanism, service

if TYPE_CHECKING:
    from harness.boards.virtual.firmware import Firmware

fault_mechanism("mcast_deaf")  # catalogue faults (faults.py) this module implements


MCAST_ECHO_PORT = 5007
USAGE = "usage: mcast join|leave <group>"
MAX_DATAGRAM = 1472


class McastEcho:
    """The echo socket (bound to 0.0.0.0:5007) and its receive loop."""

    def __init__(self, fw: Firmware) -> None:
        self.fw = fw
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", MCAST_ECHO_PORT))
        self.ifindex = socket.if_nametoindex(fw.ifname)
        self.groups: set[str] = set()

    def run(self) -> None:
        """Echo every datagram back to its sender by unicast, until the firmware stops."""
        while not self.fw.stop.is_set():
            ready, _, _ = select.select([self.sock], [], [], 0.5)
            if not ready:
                continue
            try:
                data, sender = self.sock.recvfrom(MAX_DATAGRAM)
                self.sock.sendto(data, sender)
            except OSError:
                continue

    def membership(self, group: str, join: bool) -> bool:
        """Join or leave ``group`` on the DUT interface (struct ip_mreqn: group, any address, ifindex)."""
        mreq = struct.pack("=4s4si", socket.inet_aton(group), socket.inet_aton("0.0.0.0"), self.ifindex)
        option = socket.IP_ADD_MEMBERSHIP if join else socket.IP_DROP_MEMBERSHIP
        try:
            self.sock.setsockopt(socket.IPPROTO_IP, option, mreq)
        except OSError:
            return False
        (self.groups.add if join else self.groups.discard)(group)
        return True

    def close(self) -> None:
        """Close the socket (the kernel leaves its groups)."""
        self.sock.close()


_echo: dict[str, McastEcho] = {}


@service
def start_mcast_echo(fw: Firmware) -> None:
    """Open the echo socket at boot, like hil_mcast_start()."""
    echo = McastEcho(fw)
    _echo["active"] = echo
    threading.Thread(target=echo.run, name="mcast-echo", daemon=True).start()
    fw.on_shutdown(echo.close)


@command("mcast", "mcast join|leave <group> on the multicast echo socket")
def mcast_command(fw: Firmware, args: list[str]) -> None:
    if len(args) != 2 or args[0] not in ("join", "leave"):
        fw.result("mcast", ok=False, error=USAGE)
        return
    action, group = args
    try:
        is_group = ipaddress.IPv4Address(group).is_multicast
    except ValueError:
        is_group = False
    if not is_group:
        fw.result("mcast", ok=False, error=f"not a multicast group: {group}")
        return
    echo = _echo.get("active")
    deaf = fw.has_fault("mcast_deaf") and action == "join"
    if not deaf and (echo is None or not echo.membership(group, action == "join")):
        fw.result("mcast", ok=False, error=f"{action} failed")
        return
    fw.result("mcast", action=action, group=group, port=MCAST_ECHO_PORT)
