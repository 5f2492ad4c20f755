"""Malformed and hostile traffic for the robustness scenario, as a data table of cases.

Each case builds frames with scapy (a malformed packet is just a field override) and they are sent as
raw bytes on an AF_PACKET socket created inside the lab's host namespace: scapy's own send functions
look interfaces up in the root namespace's list when only a thread entered the lab namespace, so
scapy only builds bytes here and never sends.
"""

from __future__ import annotations

import random
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from harness.errors import LabError
from harness.lab.netns import require_lab_namespace

ETH_P_ALL = 0x0003
SYN_FLOOD_PACKETS = 2000
ARP_STORM_PACKETS = 500
OVERSIZE_FRAME_BYTES = 2000
ECHO_PORT = 7


@dataclass(frozen=True)
class Target:
    """Addresses (and open ports) the frames are built for.

    The IPv6 link-local addresses and the ports are optional: the fixed robustness table does not use them,
    the fuzz campaign (harness/lab/fuzz.py) aims at them.
    """

    dut_ip: str
    dut_mac: str
    host_ip: str
    host_mac: str
    dut_ipv6_ll: str = ""
    host_ipv6_ll: str = ""
    tcp_ports: tuple[int, ...] = ()
    udp_ports: tuple[int, ...] = ()


@dataclass
class Context:
    """What a case's builder may use: the raw socket (it also sees our outgoing frames) and scratch state."""

    raw: socket.socket
    state: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    """One kind of hostile traffic.

    Attributes:
        name: the case id.
        build: returns the frames (bytes) to send, given the addresses; run on the sending thread.
        reaches_dut: whether every frame should arrive at the DUT's interface (False: the wire may drop some).
        mtu: raise the lab interface's MTU to this while sending (oversized frames), else None.
        check: runs after sending, on the same thread; raises LabError when the case's own check fails.
    """

    name: str
    build: Callable[[Target, Context], list[bytes]]
    reaches_dut: bool = True
    mtu: int | None = None
    check: Callable[[Context], None] | None = None


@dataclass
class SendResult:
    """What was sent for one case."""

    packets: int
    seconds: float

    @property
    def rate_pps(self) -> float:
        """Packets per second."""
        return self.packets / self.seconds if self.seconds > 0 else 0.0


def ether(t: Target):
    """An Ethernet header from the lab host to the DUT."""
    from scapy.layers.l2 import Ether

    return Ether(src=t.host_mac, dst=t.dut_mac)


def ipv4(t: Target, **fields):
    """An IPv4 header from the lab host to the DUT; ``fields`` override any field."""
    from scapy.layers.inet import IP

    return IP(**{"src": t.host_ip, "dst": t.dut_ip, **fields})


def _tcp(**fields):
    from scapy.layers.inet import TCP

    fields.setdefault("sport", random.randint(20000, 60000))
    fields.setdefault("dport", 80)
    fields.setdefault("seq", random.getrandbits(32))
    return TCP(**fields)


def _icmp_echo(payload: bytes = b"hil-robustness"):
    from scapy.layers.inet import ICMP

    return ICMP(type=8, id=0x4849, seq=1) / payload


def _bad_ip_checksum(t: Target, _: Context) -> list[bytes]:
    return [bytes(ether(t) / ipv4(t, chksum=0x1234) / _icmp_echo()) for _ in range(10)]


def _bad_tcp_checksum(t: Target, _: Context) -> list[bytes]:
    return [bytes(ether(t) / ipv4(t) / _tcp(flags="S", chksum=0xDEAD)) for _ in range(10)]


def _truncated_ip_header(t: Target, _: Context) -> list[bytes]:
    return [bytes(ether(t))[:14] + bytes(ipv4(t) / _icmp_echo())[:12] for _ in range(10)]


def _truncated_tcp_header(t: Target, _: Context) -> list[bytes]:
    frames = []
    for _ in range(10):
        packet = ipv4(t) / _tcp(flags="S")
        raw = bytes(packet)[:28]  # 20 B IP header + 8 of the 20 B TCP header
        raw = raw[:2] + struct.pack("!H", len(raw)) + raw[4:10] + b"\x00\x00" + raw[12:]
        frames.append(bytes(ether(t)) + bytes(_recompute_ip_checksum(raw)))
    return frames


def _recompute_ip_checksum(raw: bytes) -> bytes:
    from scapy.utils import checksum

    header = raw[:10] + b"\x00\x00" + raw[12:20]
    return header[:10] + struct.pack("!H", checksum(header)) + raw[12:]


def _tcp_flags(flags: str, **extra) -> Callable[[Target, Context], list[bytes]]:
    def build(t: Target, _: Context) -> list[bytes]:
        return [bytes(ether(t) / ipv4(t) / _tcp(flags=flags, **extra)) for _ in range(10)]

    return build


def _tiny_mss(t: Target, _: Context) -> list[bytes]:
    return [bytes(ether(t) / ipv4(t) / _tcp(flags="S", options=[("MSS", mss)])) for mss in (1, 8, 0, 1)]


def _overlapping_fragments(t: Target, _: Context) -> list[bytes]:
    from scapy.layers.inet import ICMP

    frames = []
    for ident in range(5):
        icmp = bytes(ICMP(type=8, id=0x4849, seq=ident) / (b"A" * 64))
        first = ipv4(t, id=0x4000 + ident, flags="MF", frag=0, proto=1) / icmp[:48]
        overlap = ipv4(t, id=0x4000 + ident, flags=0, frag=3, proto=1) / (b"B" * 48)  # starts inside the first
        frames += [bytes(ether(t) / first), bytes(ether(t) / overlap)]
    return frames


def _oversized_fragments(t: Target, _: Context) -> list[bytes]:
    # Fragments whose reassembly would exceed 65535 bytes (the "ping of death" shape).
    frames = []
    for ident in range(3):
        first = ipv4(t, id=0x5000 + ident, flags="MF", frag=0, proto=1) / bytes(_icmp_echo(b"C" * 64))
        last = ipv4(t, id=0x5000 + ident, flags=0, frag=8189, proto=1) / (b"D" * 1000)
        frames += [bytes(ether(t) / first), bytes(ether(t) / last)]
    return frames


def _icmp_bad_lengths(t: Target, _: Context) -> list[bytes]:
    frames = []
    for claimed in (20, 28, 200, 1500, 65535):
        raw = bytes(ipv4(t) / _icmp_echo(b"E" * 32))
        raw = raw[:2] + struct.pack("!H", claimed) + raw[4:]  # IP total length that lies
        frames.append(bytes(ether(t)) + _recompute_ip_checksum(raw))
    frames.append(bytes(ether(t) / ipv4(t, proto=1) / b"\x08"))  # a one-byte ICMP message
    return frames


def _arp_storm(t: Target, _: Context) -> list[bytes]:
    from scapy.layers.l2 import ARP, Ether

    frames = []
    for index in range(ARP_STORM_PACKETS):
        # Sources outside the DHCP pool and never the lab host: the storm must not poison a real entry.
        mac = f"02:48:49:4c:{index >> 8:02x}:{index & 0xFF:02x}"
        src_ip = f"10.77.0.{230 + index % 20}"
        frames.append(bytes(Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=mac, psrc=src_ip, pdst=t.dut_ip)))
    return frames


def _syn_flood(t: Target, _: Context) -> list[bytes]:
    # A spoofed source outside the DHCP pool, distinct source ports: every SYN is a new half-open connection.
    return [
        bytes(ether(t) / ipv4(t, src="10.77.0.250") / _tcp(flags="S", sport=1024 + index))
        for index in range(SYN_FLOOD_PACKETS)
    ]


def _rst_out_of_window(t: Target, ctx: Context) -> list[bytes]:
    """RSTs for a live connection to the TCP echo service, with sequence numbers far outside its window."""
    conn = socket.create_connection((t.dut_ip, ECHO_PORT), timeout=5)
    ctx.state["conn"] = conn
    local_port = conn.getsockname()[1]
    conn.sendall(b"ping")
    if conn.recv(16) != b"ping":
        raise LabError("the TCP echo service did not echo before the RST injection")
    conn.sendall(b"mark")  # the segment whose sequence number we read off the wire
    rcv_nxt = sent_segment(ctx.raw, local_port, 4)[0] + 4
    conn.recv(16)
    frames = []
    for offset in (2**31, 2**30, 10**6, -(10**6)):
        seq = (rcv_nxt + offset) % 2**32
        frames.append(bytes(ether(t) / ipv4(t) / _tcp(flags="R", sport=local_port, dport=ECHO_PORT, seq=seq)))
    return frames


def _check_connection_survived(ctx: Context) -> None:
    conn = ctx.state.pop("conn")
    with conn:
        try:
            conn.sendall(b"alive")
            echoed = conn.recv(16)
        except OSError as exc:
            raise LabError(f"the connection died after out-of-window RSTs: {exc}") from exc
    if echoed != b"alive":
        raise LabError(f"the connection stopped echoing after out-of-window RSTs (got {echoed!r})")


def sent_segment(raw: socket.socket, sport: int, payload_len: int, timeout: float = 2.0) -> tuple[int, int]:
    """Sequence and acknowledgement numbers of our own outgoing segment from ``sport`` carrying ``payload_len``
    bytes, read off the wire with ``raw`` (which sees outgoing frames too)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        raw.settimeout(left)
        try:
            frame = raw.recv(2048)
        except TimeoutError:
            break
        if len(frame) < 54 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
            continue
        ihl = (frame[14] & 0x0F) * 4
        tcp = frame[14 + ihl :]
        total = struct.unpack("!H", frame[16:18])[0]
        data_offset = (tcp[12] >> 4) * 4
        if struct.unpack("!H", tcp[:2])[0] == sport and total - ihl - data_offset == payload_len:
            seq, ack = struct.unpack("!II", tcp[4:12])
            return int(seq), int(ack)
    raise LabError(f"did not see our own segment from port {sport} on the wire within {timeout:g} s")


def _runt_frames(t: Target, _: Context) -> list[bytes]:
    header = bytes(ether(t))[:12]
    return [header + b"\x08\x00" + b"\x45" * n for n in (0, 1, 6, 20)]


def _oversized_frame(t: Target, _: Context) -> list[bytes]:
    packet = ether(t) / ipv4(t) / _icmp_echo(b"F" * (OVERSIZE_FRAME_BYTES - 14 - 20 - 8))
    return [bytes(packet)] * 3


# arp_storm first: it is about what the DUT remembers of the lab host after the storm, and a half-open connection
# an earlier TCP case leaves behind (smoltcp 0.12.0's listener, docs/fuzz.md) retransmits its SYN-ACK to the
# host at its own times, which makes the DUT ask for the host again and re-learn it in the middle of the case.
CASES: tuple[Case, ...] = (
    Case("arp_storm", _arp_storm),
    Case("ip_bad_checksum", _bad_ip_checksum),
    Case("tcp_bad_checksum", _bad_tcp_checksum),
    Case("ip_header_truncated", _truncated_ip_header),
    Case("tcp_header_truncated", _truncated_tcp_header),
    Case("tcp_data_offset_below_5", _tcp_flags("S", dataofs=2)),
    Case("tcp_syn_fin", _tcp_flags("SF")),
    Case("tcp_all_flags", _tcp_flags("FSRPAUEC")),
    Case("tcp_no_flags", _tcp_flags("")),
    Case("tcp_zero_window_syn", _tcp_flags("S", window=0)),
    Case("tcp_tiny_mss", _tiny_mss),
    Case("ipv4_overlapping_fragments", _overlapping_fragments),
    Case("ipv4_oversized_fragments", _oversized_fragments),
    Case("icmp_bad_lengths", _icmp_bad_lengths),
    Case("syn_flood", _syn_flood),
    Case("tcp_rst_out_of_window", _rst_out_of_window, check=_check_connection_survived),
    Case("runt_frames", _runt_frames),
    Case("oversized_frame", _oversized_frame, reaches_dut=False, mtu=OVERSIZE_FRAME_BYTES),
)


def open_raw_socket(ifname: str, receive: bool = True) -> socket.socket:
    """An AF_PACKET socket on ``ifname`` in the calling thread's namespace (call it inside the lab namespace).

    It sees every frame both ways, or with ``receive=False`` none (protocol 0): a socket that only sends.
    """
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL) if receive else 0)
    try:
        sock.bind((ifname, 0))
    except OSError as exc:
        sock.close()
        raise LabError(f"cannot open a raw socket on {ifname}: {exc}") from exc
    return sock


def socket_mac(sock: socket.socket) -> str:
    """The MAC address of the interface an AF_PACKET socket is bound to."""
    return ":".join(f"{b:02x}" for b in sock.getsockname()[4][:6])


def send_case(case: Case, ifname: str, dut_ip: str, dut_mac: str, host_ip: str) -> SendResult:
    """Build and send one case's frames on ``ifname``; run inside the lab's host namespace."""
    require_lab_namespace(dut_ip)
    with open_raw_socket(ifname) as sock:
        target = Target(dut_ip, dut_mac.lower(), host_ip, socket_mac(sock))
        ctx = Context(sock)
        try:
            frames = case.build(target, ctx)
            started = time.monotonic()
            for frame in frames:
                try:
                    sock.send(frame)
                except OSError as exc:
                    raise LabError(
                        f"robustness case {case.name}: sending a {len(frame)} B frame failed: {exc}"
                    ) from exc
            seconds = time.monotonic() - started
            if case.check is not None:
                case.check(ctx)
        finally:
            for leftover in ctx.state.values():
                if isinstance(leftover, socket.socket):
                    leftover.close()
        return SendResult(len(frames), seconds)
