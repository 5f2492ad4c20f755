"""DHCPv4 messages (RFC 2131/2132) and the Ethernet/IPv4/UDP framing raw sockets need.

Plain `struct` on purpose: the virtual board's DHCP client imports this in its own process, and
scapy's import alone costs ~0.6 s of the board's boot time. Decoding never trusts its input: any
malformed message raises `MalformedPacket` and nothing else.
"""

from __future__ import annotations

import ctypes
import enum
import ipaddress
import socket
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

SERVER_PORT = 67
CLIENT_PORT = 68
MAGIC_COOKIE = b"\x63\x82\x53\x63"
BOOTREQUEST = 1
BOOTREPLY = 2
FLAG_BROADCAST = 0x8000
BOOTP_MIN_BYTES = 300  # some BOOTP relays and clients drop shorter messages
ETH_P_IP = 0x0800
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
ZERO_IP = "0.0.0.0"
BROADCAST_IP = "255.255.255.255"
INFINITE_LEASE = 0xFFFFFFFF

_HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")


class MalformedPacket(ValueError):
    """The bytes are not a well-formed DHCP message (or frame); the text says which part is wrong."""


class MessageType(enum.IntEnum):
    """Values of option 53."""

    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8


class Opt(enum.IntEnum):
    """The option codes the lab uses (RFC 2132)."""

    PAD = 0
    SUBNET_MASK = 1
    ROUTER = 3
    DNS = 6
    HOSTNAME = 12
    REQUESTED_IP = 50
    LEASE_TIME = 51
    MESSAGE_TYPE = 53
    SERVER_ID = 54
    PARAM_LIST = 55
    MESSAGE = 56
    RENEWAL_T1 = 58
    REBINDING_T2 = 59
    CLIENT_ID = 61
    END = 255


def ip_bytes(*addresses: str) -> bytes:
    """Option value holding one or more IPv4 addresses."""
    return b"".join(socket.inet_aton(a) for a in addresses)


def u32_bytes(value: int) -> bytes:
    """Option value holding one 32-bit unsigned number (lease times)."""
    return struct.pack("!I", value)


def mac_to_bytes(mac: str) -> bytes:
    """`aa:bb:cc:dd:ee:ff` -> 6 bytes; raises MalformedPacket with the expected form."""
    try:
        raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    except ValueError:
        raw = b""
    if len(raw) != 6:
        raise MalformedPacket(f"MAC address {mac!r} is not six hex bytes like 02:00:00:12:34:56")
    return raw


def mac_to_str(raw: bytes) -> str:
    """6 bytes -> `aa:bb:cc:dd:ee:ff`."""
    return ":".join(f"{b:02x}" for b in raw[:6])


@dataclass
class DhcpMessage:
    """One BOOTP/DHCP message. ``options`` maps a code to its raw value, in the order they are sent."""

    op: int
    xid: int
    chaddr: str
    secs: int = 0
    flags: int = 0
    ciaddr: str = ZERO_IP
    yiaddr: str = ZERO_IP
    siaddr: str = ZERO_IP
    giaddr: str = ZERO_IP
    hops: int = 0
    options: dict[int, bytes] = field(default_factory=dict)

    # --- typed views of the options -----------------------------------------------------------------

    @property
    def msg_type(self) -> MessageType | None:
        """Option 53, or None when absent or unknown."""
        raw = self.options.get(Opt.MESSAGE_TYPE)
        if raw is None or len(raw) != 1:
            return None
        try:
            return MessageType(raw[0])
        except ValueError:
            return None

    def ips(self, code: int) -> list[str]:
        """An option holding a list of IPv4 addresses (empty when absent or malformed)."""
        raw = self.options.get(code, b"")
        if len(raw) % 4:
            return []
        return [socket.inet_ntoa(raw[i : i + 4]) for i in range(0, len(raw), 4)]

    def ip(self, code: int) -> str | None:
        """An option holding one IPv4 address."""
        values = self.ips(code)
        return values[0] if len(values) == 1 else None

    def u32(self, code: int) -> int | None:
        """An option holding one 32-bit unsigned number."""
        raw = self.options.get(code)
        return struct.unpack("!I", raw)[0] if raw is not None and len(raw) == 4 else None

    def text(self, code: int) -> str | None:
        """An option holding text (hostname, message)."""
        raw = self.options.get(code)
        return raw.decode("utf-8", "replace").rstrip("\x00") if raw is not None else None

    @property
    def broadcast_flag(self) -> bool:
        """Whether the client asked for broadcast replies."""
        return bool(self.flags & FLAG_BROADCAST)

    # --- wire format --------------------------------------------------------------------------------

    def encode(self) -> bytes:
        """The message as sent in a UDP datagram (options ended by 255, padded to 300 bytes)."""
        head = _HEADER.pack(
            self.op, 1, 6, self.hops, self.xid, self.secs, self.flags,
            socket.inet_aton(self.ciaddr), socket.inet_aton(self.yiaddr),
            socket.inet_aton(self.siaddr), socket.inet_aton(self.giaddr),
            mac_to_bytes(self.chaddr), b"", b"",
        )  # fmt: skip
        body = bytearray(MAGIC_COOKIE)
        for code, value in self.options.items():
            if code in (Opt.PAD, Opt.END):
                continue
            # RFC 3396: values longer than 255 bytes are split over repeated options.
            for start in range(0, max(len(value), 1), 255):
                chunk = value[start : start + 255]
                body += bytes((code, len(chunk))) + chunk
        body.append(Opt.END)
        packet = head + bytes(body)
        return packet + b"\x00" * max(0, BOOTP_MIN_BYTES - len(packet))

    @classmethod
    def decode(cls, data: bytes) -> DhcpMessage:
        """Parse a UDP payload; raise MalformedPacket naming the first thing that is wrong."""
        if len(data) < _HEADER.size + len(MAGIC_COOKIE):
            raise MalformedPacket(f"{len(data)} bytes is shorter than a BOOTP header with magic cookie (240)")
        op, htype, hlen, hops, xid, secs, flags, ci, yi, si, gi, chaddr, _sname, _file = _HEADER.unpack_from(data)
        if op not in (BOOTREQUEST, BOOTREPLY):
            raise MalformedPacket(f"op {op} is neither BOOTREQUEST (1) nor BOOTREPLY (2)")
        if htype != 1 or hlen != 6:
            raise MalformedPacket(f"hardware type {htype}/length {hlen} is not Ethernet (1/6)")
        if data[_HEADER.size : _HEADER.size + 4] != MAGIC_COOKIE:
            raise MalformedPacket("magic cookie missing: a plain BOOTP message, not DHCP")
        return cls(
            op=op, xid=xid, chaddr=mac_to_str(chaddr), secs=secs, flags=flags,
            ciaddr=socket.inet_ntoa(ci), yiaddr=socket.inet_ntoa(yi), siaddr=socket.inet_ntoa(si),
            giaddr=socket.inet_ntoa(gi), hops=hops, options=_decode_options(data, _HEADER.size + 4),
        )  # fmt: skip


def _decode_options(data: bytes, pos: int) -> dict[int, bytes]:
    options: dict[int, bytes] = {}
    while pos < len(data):
        code = data[pos]
        if code == Opt.END:
            return options
        if code == Opt.PAD:
            pos += 1
            continue
        if pos + 1 >= len(data):
            raise MalformedPacket(f"option {code} at byte {pos} has no length byte")
        length = data[pos + 1]
        if pos + 2 + length > len(data):
            raise MalformedPacket(f"option {code} at byte {pos} claims {length} bytes past the end of the message")
        options[code] = options.get(code, b"") + data[pos + 2 : pos + 2 + length]
        pos += 2 + length
    raise MalformedPacket("options are not terminated by the end option (255)")


def build_options(msg_type: MessageType, extra: Iterable[tuple[int, bytes]] = ()) -> dict[int, bytes]:
    """Options dict starting with the message type (clients and servers expect it first)."""
    options = {int(Opt.MESSAGE_TYPE): bytes((msg_type,))}
    options.update(extra)
    return options


# --- Ethernet / IPv4 / UDP framing -------------------------------------------------------------------


@dataclass(frozen=True)
class UdpFrame:
    """The parts of an Ethernet frame carrying a UDP datagram that DHCP cares about."""

    src_mac: str
    dst_mac: str
    src_ip: str
    dst_ip: str
    src_port: int
    dst_port: int
    payload: bytes


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_frame(
    src_mac: str, dst_mac: str, src_ip: str, dst_ip: str, src_port: int, dst_port: int, payload: bytes
) -> bytes:
    """A complete Ethernet II frame with IPv4 and UDP headers and correct checksums."""
    src, dst = socket.inet_aton(src_ip), socket.inet_aton(dst_ip)
    udp_len = 8 + len(payload)
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_UDP, udp_len)
    udp_head = struct.pack("!HHHH", src_port, dst_port, udp_len, 0)
    udp_sum = _checksum(pseudo + udp_head + payload) or 0xFFFF
    udp = struct.pack("!HHHH", src_port, dst_port, udp_len, udp_sum) + payload
    # TTL 64, DF clear, id 0: what small embedded stacks send for DHCP.
    ip_head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0, 0, 64, socket.IPPROTO_UDP, 0, src, dst)
    ip_head = ip_head[:10] + struct.pack("!H", _checksum(ip_head)) + ip_head[12:]
    return mac_to_bytes(dst_mac) + mac_to_bytes(src_mac) + struct.pack("!H", ETH_P_IP) + ip_head + udp


def parse_udp_frame(frame: bytes) -> UdpFrame:
    """Parse an Ethernet II frame; raise MalformedPacket unless it is an unfragmented IPv4/UDP datagram.

    The UDP checksum is not verified: frames crossing a veth keep a partial (offloaded) checksum,
    exactly as a NIC would have completed it on a real wire.
    """
    if len(frame) < 14 + 20 + 8:
        raise MalformedPacket(f"{len(frame)}-byte frame is too short for Ethernet+IPv4+UDP")
    if struct.unpack_from("!H", frame, 12)[0] != ETH_P_IP:
        raise MalformedPacket("not an IPv4 frame")
    ver_ihl = frame[14]
    ihl = (ver_ihl & 0x0F) * 4
    if ver_ihl >> 4 != 4 or ihl < 20 or len(frame) < 14 + ihl + 8:
        raise MalformedPacket("bad IPv4 header length")
    if _checksum(frame[14 : 14 + ihl]) != 0:
        raise MalformedPacket("bad IPv4 header checksum")
    total_len, frag = struct.unpack_from("!H2xH", frame, 16)
    if frag & 0x3FFF:
        raise MalformedPacket("IPv4 fragment")
    if frame[23] != socket.IPPROTO_UDP:
        raise MalformedPacket("not UDP")
    if total_len > len(frame) - 14 or total_len < ihl + 8:
        raise MalformedPacket(f"IPv4 total length {total_len} does not fit the {len(frame)}-byte frame")
    udp_at = 14 + ihl
    src_port, dst_port, udp_len = struct.unpack_from("!HHH", frame, udp_at)
    if udp_len < 8 or udp_len > total_len - ihl:
        raise MalformedPacket(f"UDP length {udp_len} does not fit the IPv4 packet")
    return UdpFrame(
        src_mac=mac_to_str(frame[6:12]), dst_mac=mac_to_str(frame[0:6]),
        src_ip=socket.inet_ntoa(frame[26:30]), dst_ip=socket.inet_ntoa(frame[30:34]),
        src_port=src_port, dst_port=dst_port, payload=bytes(frame[udp_at + 8 : udp_at + udp_len]),
    )  # fmt: skip


# --- kernel-side filtering for AF_PACKET sockets -----------------------------------------------------

SO_ATTACH_FILTER = 26


def _bpf(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def udp_dst_port_filter(port: int) -> bytes:
    """A classic BPF program accepting only unfragmented IPv4/UDP frames to ``port``.

    The DUT side sees line-rate traffic during throughput tests; filtering in the kernel keeps
    the DHCP client from waking up for every frame.
    """
    return b"".join((
        _bpf(0x28, 0, 0, 12),            # ldh [12]            ethertype
        _bpf(0x15, 0, 8, ETH_P_IP),      # jeq IPv4 else drop
        _bpf(0x30, 0, 0, 23),            # ldb [23]            IP protocol
        _bpf(0x15, 0, 6, 17),            # jeq UDP else drop
        _bpf(0x28, 0, 0, 20),            # ldh [20]            flags + fragment offset
        _bpf(0x45, 4, 0, 0x1FFF),        # jset fragment -> drop
        _bpf(0xB1, 0, 0, 14),            # ldxb 4*([14]&0xf)   IP header length
        _bpf(0x48, 0, 0, 16),            # ldh [x+16]          UDP destination port
        _bpf(0x15, 0, 1, port),          # jeq port else drop
        _bpf(0x06, 0, 0, 0x40000),       # ret accept
        _bpf(0x06, 0, 0, 0),             # ret drop
    ))  # fmt: skip


def attach_filter(sock: socket.socket, program: bytes) -> None:
    """Attach a classic BPF ``program`` (from `udp_dst_port_filter`) to ``sock``."""
    buffer = ctypes.create_string_buffer(program)
    fprog = struct.pack("HL", len(program) // 8, ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def describe(message: DhcpMessage, extra: Mapping[str, object] | None = None) -> str:
    """One log line for a message (type, xid, addresses)."""
    kind = message.msg_type.name if message.msg_type else "BOOTP"
    parts = [f"{kind} xid={message.xid:#010x} chaddr={message.chaddr}"]
    for name in ("ciaddr", "yiaddr"):
        value = getattr(message, name)
        if value != ZERO_IP:
            parts.append(f"{name}={value}")
    for key, value in (extra or {}).items():
        parts.append(f"{key}={value}")
    return " ".join(parts)


def prefixlen_of(netmask: str) -> int:
    """`255.255.255.0` -> 24; raises MalformedPacket for a non-contiguous mask."""
    try:
        return ipaddress.IPv4Network(f"0.0.0.0/{netmask}").prefixlen
    except ValueError as exc:
        raise MalformedPacket(f"subnet mask {netmask} is not a valid netmask") from exc
