"""Carrier changes of one interface, from rtnetlink link notifications (no polling)."""

from __future__ import annotations

import select
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path

RTMGRP_LINK = 1
RTM_NEWLINK = 16
IFF_LOWER_UP = 0x10000
_NLMSG_HEADER = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")


def carrier(ifname: str) -> bool:
    """Whether the interface has carrier now (reads sysfs of the caller's namespace)."""
    try:
        return Path(f"/sys/class/net/{ifname}/carrier").read_text().strip() == "1"
    except OSError:
        return False


def watch_carrier(ifname: str, on_change: Callable[[bool], None], stop: threading.Event) -> None:
    """Call ``on_change(up)`` on every carrier transition of ``ifname`` until ``stop`` is set."""
    ifindex = socket.if_nametoindex(ifname)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as nl:
        nl.bind((0, RTMGRP_LINK))
        state = carrier(ifname)
        on_change(state)
        while not stop.is_set():
            ready, _, _ = select.select([nl], [], [], 0.2)
            if not ready:
                continue
            data = nl.recv(65536)
            for flags in _link_flags(data, ifindex):
                up = bool(flags & IFF_LOWER_UP)
                if up != state:
                    state = up
                    on_change(up)


def _link_flags(data: bytes, ifindex: int) -> list[int]:
    flags: list[int] = []
    offset = 0
    while offset + _NLMSG_HEADER.size <= len(data):
        length, msg_type, _, _, _ = _NLMSG_HEADER.unpack_from(data, offset)
        if length < _NLMSG_HEADER.size:
            break
        if msg_type == RTM_NEWLINK and offset + _NLMSG_HEADER.size + _IFINFO.size <= len(data):
            _, _, index, iff, _ = _IFINFO.unpack_from(data, offset + _NLMSG_HEADER.size)
            if index == ifindex:
                flags.append(iff)
        offset += (length + 3) & ~3
    return flags
