"""What the lab sees and sends on the cable below IP sockets: IGMP reports, L2 echo frames, multicast echoes.

All functions run inside the lab's host namespace (call them through `Namespace.call`) and use raw
AF_PACKET sockets on the host end of the cable; every receive has a deadline.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from dataclasses import dataclass, field

ETH_P_IP = 0x0800
ETH_HEADER = 14
IPPROTO_IGMP = 2
PACKET_OUTGOING = 4
L2_MAGIC = b"HIL2"
L2_HEADER = 10
L2_TIMESTAMPS = 16
# IGMP message types that report membership (RFC 2236 v2 report, RFC 3376 v3 report).
IGMP_V2_REPORT, IGMP_V3_REPORT = 0x16, 0x22
# IGMPv3 group record types that mean "I want this group": MODE_IS_EXCLUDE, CHANGE_TO_EXCLUDE, ALLOW_NEW.
_V3_JOIN_RECORDS = {2, 4, 5}


def igmp_joined_groups(ip_packet: bytes) -> set[str]:
    """Groups an IPv4 packet reports membership of (empty for anything that is not an IGMP report)."""
    if len(ip_packet) < 20 or ip_packet[0] >> 4 != 4 or ip_packet[9] != IPPROTO_IGMP:
        return set()
    igmp = ip_packet[(ip_packet[0] & 0x0F) * 4 :]
    if len(igmp) >= 8 and igmp[0] == IGMP_V2_REPORT:
        return {socket.inet_ntoa(igmp[4:8])}
    groups: set[str] = set()
    if len(igmp) >= 8 and igmp[0] == IGMP_V3_REPORT:
        offset, records = 8, struct.unpack_from("!H", igmp, 6)[0]
        for _ in range(records):
            if offset + 8 > len(igmp):
                break
            kind, aux_words, sources = igmp[offset], igmp[offset + 1], struct.unpack_from("!H", igmp, offset + 2)[0]
            if kind in _V3_JOIN_RECORDS:
                groups.add(socket.inet_ntoa(igmp[offset + 4 : offset + 8]))
            offset += 8 + 4 * sources + 4 * aux_words
    return groups


class IgmpSniffer:
    """Watches the host end of the cable for IGMP membership reports from a given source address.

    Create it inside the host namespace (the socket must be opened there), then `wait_for(group)`.
    """

    def __init__(self, ifname: str) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
        self.sock.bind((ifname, ETH_P_IP))

    def wait_for(self, group: str, source: str, timeout: float) -> float | None:
        """`time.monotonic()` when a report for ``group`` from ``source`` was read, or None after ``timeout``."""
        started = time.monotonic()
        while (remaining := started + timeout - time.monotonic()) > 0:
            ready, _, _ = select.select([self.sock], [], [], remaining)
            if not ready:
                break
            frame, address = self.sock.recvfrom(2048)
            packet = frame[ETH_HEADER:]
            if address[2] == PACKET_OUTGOING or len(packet) < 20 or socket.inet_ntoa(packet[12:16]) != source:
                continue
            if group in igmp_joined_groups(packet):
                return time.monotonic()
        return None

    def close(self) -> None:
        """Close the capture socket."""
        self.sock.close()


@dataclass
class EchoRun:
    """Round trips of a request/echo exchange."""

    sent: int = 0
    rtts_s: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def answered(self) -> int:
        """Requests that came back."""
        return len(self.rtts_s)


@dataclass
class L2Echoes(EchoRun):
    """L2 echo round trips and the DUT's timestamps (`rx_hw_ns`, `rx_us`) per answered frame."""

    rx_hw_ns: list[int] = field(default_factory=list)
    rx_us: list[int] = field(default_factory=list)


def l2_request(seq: int, data: bytes) -> bytes:
    """The payload of an L2 echo request (PROTOCOL.md): magic, sequence, length, data."""
    return L2_MAGIC + struct.pack("!IH", seq, len(data)) + data


def l2_echo(ifname: str, dut_mac: str, ethertype: int, count: int, data_len: int, timeout: float,
            give_up_after: int = 5) -> L2Echoes:  # fmt: skip
    """Send ``count`` L2 echo requests to the DUT one after another and collect the echoes.

    Stops early once ``give_up_after`` requests in a row went unanswered (a deaf DUT costs seconds, not minutes).
    """
    dut = bytes.fromhex(dut_mac.replace(":", ""))
    run = L2Echoes()
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype)) as sock:
        sock.bind((ifname, ethertype))
        own = sock.getsockname()[4][:6]
        base = int.from_bytes(os.urandom(2), "big") << 16
        misses = 0
        for index in range(count):
            if misses >= give_up_after:
                break
            answered_before = run.answered
            seq = base + index
            request = l2_request(seq, os.urandom(data_len))
            sent_at = time.perf_counter()
            sock.send(dut + own + struct.pack("!H", ethertype) + request)
            run.sent += 1
            while (remaining := sent_at + timeout - time.perf_counter()) > 0:
                ready, _, _ = select.select([sock], [], [], remaining)
                if not ready:
                    break
                frame, address = sock.recvfrom(2048)
                if address[2] == PACKET_OUTGOING or frame[6:12] != dut:
                    continue
                payload = frame[ETH_HEADER:]
                if payload[: len(request)] != request:
                    continue  # a late echo of an earlier request
                run.rtts_s.append(time.perf_counter() - sent_at)
                if len(payload) < len(request) + L2_TIMESTAMPS or frame[:6] != own:
                    run.problems.append(f"echo of seq {seq} is malformed ({len(payload)} B payload)")
                    break
                hw_ns, rx_us = struct.unpack_from("!qq", payload, len(request))
                run.rx_hw_ns.append(hw_ns)
                run.rx_us.append(rx_us)
                break
            misses = 0 if run.answered > answered_before else misses + 1
    return run


def mcast_echo(group: str, port: int, host_ip: str, expect_from: str, count: int, timeout: float,
               give_up_after: int = 5) -> EchoRun:  # fmt: skip
    """Send ``count`` datagrams to ``group:port`` from ``host_ip``; collect unicast echoes from ``expect_from``.

    Stops early once ``give_up_after`` datagrams in a row went unanswered.
    """
    run = EchoRun()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host_ip, 0))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(host_ip))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
        misses = 0
        for index in range(count):
            if misses >= give_up_after:
                break
            answered_before = run.answered
            data = struct.pack("!I", index) + os.urandom(60)
            sent_at = time.perf_counter()
            sock.sendto(data, (group, port))
            run.sent += 1
            while (remaining := sent_at + timeout - time.perf_counter()) > 0:
                ready, _, _ = select.select([sock], [], [], remaining)
                if not ready:
                    break
                got, sender = sock.recvfrom(2048)
                if got != data:
                    continue
                if sender[0] != expect_from:
                    run.problems.append(f"echo came from {sender[0]}, not the DUT's address {expect_from}")
                run.rtts_s.append(time.perf_counter() - sent_at)
                break
            misses = 0 if run.answered > answered_before else misses + 1
    return run
