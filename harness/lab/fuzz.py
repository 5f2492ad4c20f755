"""Fuzzed frames for the fuzz campaign (harness/fuzz.py): a table of layer templates, bursts, pcaps and probes.

Every layer smoltcp parses has templates in `TEMPLATES`. A template is scapy data: a packet whose fixed
fields aim it at the DUT (addresses, ports, the fields that must hold for the frame to reach the layer under
test) and whose other fields scapy's `fuzz()` draws at random, or a field override with a random value
(``IP(ihl=RandNum(0, 15))``): a malformed frame is just a field override. Random values come from Python's
`random` module, which `build_burst` seeds with the campaign seed and the burst number, so a seed gives the
same frames again (`tcp_established` frames also depend on the live connection they are aimed at).

Everything here runs inside the lab's host namespace (`lab.host.call`): frames go out on an AF_PACKET socket
there, never from the machine's own namespace; scapy only builds bytes.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import random
import socket
import struct
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import LabError
from harness.lab.netns import require_lab_namespace
from harness.lab.robustness import Context, Target, ether, ipv4, open_raw_socket, sent_segment, socket_mac

BURST_FRAMES = 32
FRAME_MAX_BYTES = 1514  # MTU 1500 plus the Ethernet header: the largest frame the lab's cable carries
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
# Sources that are neither the lab host nor the DUT: spoofed ARP and NDP may only poison their own entries.
SPOOF_MAC = "02:48:49:46:5a:01"
SPOOF_IPV6_LL = "fe80::48:49ff:fe46:5a01"
ETHERTYPES = (0x0800, 0x0806, 0x86DD, 0x8100, 0x88B5, 0x88F7)  # IPv4, ARP, IPv6, VLAN, L2 echo tap, PTP
CLOSED_PORT = 9  # discard: not served, so the DUT's reset and port-unreachable paths run too
DRAWS_PER_FRAME = 10  # scapy cannot encode some random draws; give up on a template that fails this often
SEND_RETRY_S = 0.2
PING_TRIES = 3
PING_TIMEOUT_S = 1.0
CONNECT_TRIES = 2
CONNECT_TIMEOUT_S = 2.0


class PrepareError(LabError):
    """A burst could not start because the DUT refused what it needs (the connection its frames aim at)."""


@dataclass(frozen=True)
class Template:
    """One layer template of the campaign.

    Attributes:
        name: the template id (recorded with every burst and case).
        layer: the protocol layer it aims at.
        build: returns a scapy packet, or a list of them (a fragment train); called once per frame or train,
            its random fields are drawn anew each time.
        prepare: runs before the burst's frames are built (e.g. opens the TCP connection they are aimed at).
    """

    name: str
    layer: str
    build: Callable[[Target, Context], Any]
    prepare: Callable[[Target, Context], None] | None = None


# --- helpers the templates share -----------------------------------------------------------------------------


def spoof_ip(t: Target) -> str:
    """An address in the DUT's /24 that is neither the DUT's nor the lab host's (ARP sender of fuzzed frames)."""
    base = ipaddress.ip_address(t.dut_ip).packed[:3]
    for last in (241, 242, 243):
        candidate = str(ipaddress.ip_address(base + bytes([last])))
        if candidate not in (t.dut_ip, t.host_ip):
            return candidate
    raise LabError(f"no spare address next to {t.dut_ip}")  # pragma: no cover - three candidates, two taken


def _payload(low: int, high: int):
    from scapy.packet import Raw
    from scapy.volatile import RandBin, RandNum

    return Raw(load=RandBin(RandNum(low, high)))


def _any_of(values: Sequence[Any]):
    from scapy.volatile import RandChoice

    return RandChoice(*values)


def _tcp_ports(t: Target) -> tuple[int, ...]:
    return (*t.tcp_ports, CLOSED_PORT)


def _udp_ports(t: Target) -> tuple[int, ...]:
    return (*t.udp_ports, 68, CLOSED_PORT)


def _ether6(t: Target, dst_ip: str):
    """An Ethernet header for an IPv6 destination (multicast destinations get their 33:33 MAC)."""
    from scapy.layers.inet6 import in6_getnsmac
    from scapy.layers.l2 import Ether

    address = ipaddress.ip_address(dst_ip)
    dst = in6_getnsmac(address.packed) if address.is_multicast else t.dut_mac
    return Ether(src=t.host_mac, dst=dst)


def _solicited_node(ll: str) -> str:
    return str(ipaddress.ip_address(b"\xff\x02" + b"\x00" * 9 + b"\x01\xff" + ipaddress.ip_address(ll).packed[13:]))


# --- the templates ---------------------------------------------------------------------------------------------


def _ethernet(t: Target, _: Context):
    from scapy.layers.l2 import Ether

    return Ether(src=t.host_mac, dst=t.dut_mac, type=_any_of(ETHERTYPES)) / _payload(0, FRAME_MAX_BYTES - 14)


def _arp(t: Target, _: Context):
    from scapy.layers.l2 import ARP, Ether
    from scapy.packet import fuzz

    return Ether(src=SPOOF_MAC, dst=_any_of((t.dut_mac, BROADCAST_MAC))) / fuzz(
        ARP(hwtype=1, ptype=0x0800, hwlen=6, plen=4, psrc=spoof_ip(t), pdst=t.dut_ip)
    )


def _arp_fields(t: Target, _: Context):
    from scapy.layers.l2 import ARP, Ether
    from scapy.volatile import RandByte, RandShort

    arp = ARP(hwtype=_any_of((1, RandShort())), ptype=_any_of((0x0800, RandShort())), hwlen=_any_of((6, RandByte())),
              plen=_any_of((4, RandByte())), op=_any_of((1, 2, RandShort())), hwsrc=SPOOF_MAC, psrc=spoof_ip(t),
              pdst=t.dut_ip)  # fmt: skip
    return Ether(src=SPOOF_MAC, dst=t.dut_mac) / arp / _payload(0, 32)


def _ipv4(t: Target, _: Context):
    from scapy.layers.inet import ICMP
    from scapy.packet import fuzz

    return ether(t) / fuzz(ipv4(t, version=4)) / ICMP(type=8, id=0x4849) / _payload(0, 64)


def _ipv4_header(t: Target, _: Context):
    from scapy.layers.inet import ICMP
    from scapy.volatile import RandByte, RandNum, RandShort

    header = ipv4(t, version=_any_of((4, 4, 4, RandNum(0, 15))), ihl=_any_of((5, RandNum(0, 15))),
                  len=_any_of((None, RandShort())), proto=_any_of((1, 6, 17, RandByte())))  # fmt: skip
    return ether(t) / header / ICMP(type=8) / _payload(0, 64)


IPV4_OPTION_CLASSES = (
    "IPOption_EOL", "IPOption_NOP", "IPOption_RR", "IPOption_LSRR", "IPOption_SSRR", "IPOption_Timestamp",
    "IPOption_Router_Alert", "IPOption_Security", "IPOption_Stream_Id", "IPOption_MTU_Probe",
    "IPOption_MTU_Reply", "IPOption_Traceroute", "IPOption_Address_Extension", "IPOption_SDBM",
)  # fmt: skip


def _ipv4_options(t: Target, _: Context):
    from scapy.layers import inet
    from scapy.packet import fuzz
    from scapy.volatile import RandByte

    options = []
    for _ in range(random.randint(1, 4)):
        cls = getattr(inet, random.choice(IPV4_OPTION_CLASSES))
        lying = random.random() < 0.5 and any(f.name == "length" for f in cls.fields_desc)
        options.append(fuzz(cls(length=RandByte())) if lying else fuzz(cls()))
    inner = random.choice((
        inet.ICMP(type=8) / _payload(0, 32),
        inet.UDP(dport=_any_of(_udp_ports(t))) / _payload(0, 32),
        inet.TCP(dport=_any_of(_tcp_ports(t)), flags="S"),
    ))  # fmt: skip
    return ether(t) / ipv4(t, options=options) / inner


def _ipv4_fragments(t: Target, _: Context) -> list:
    from scapy.layers.inet import ICMP, UDP, fragment
    from scapy.volatile import RandNum

    size = random.randint(16, 4000)
    inner = random.choice((ICMP(type=8, id=0x4849), UDP(dport=_any_of(_udp_ports(t)))))
    packet = ipv4(t, id=random.getrandbits(16)) / inner / (b"\xa5" * size)
    fragsize = random.choice((8, 16, 64, 256, 512, 1480))
    fragsize = max(fragsize, 8 * -(-(size + 8) // (8 * 24)))  # at most ~24 fragments: a train fits in a burst
    train = [piece.copy() for piece in fragment(packet, fragsize=fragsize)]
    for piece in train:
        roll = random.random()
        if roll < 0.15:
            piece.frag = RandNum(0, 8191)
        elif roll < 0.25:
            piece.flags = random.choice((0, 1, 2, 3))
        elif roll < 0.3:
            piece.len = random.randint(0, 65535)
    if random.random() < 0.3:
        train.append(random.choice(train).copy())  # a duplicate
    if random.random() < 0.3:
        random.shuffle(train)
    return [ether(t) / piece for piece in train]


def _icmp(t: Target, _: Context):
    from scapy.layers.inet import ICMP
    from scapy.packet import fuzz

    return ether(t) / ipv4(t) / fuzz(ICMP()) / _payload(0, 128)


def _icmp_error(t: Target, _: Context):
    from scapy.layers.inet import ICMP, IPerror, TCPerror, UDPerror
    from scapy.packet import fuzz
    from scapy.volatile import RandByte

    quoted = fuzz(IPerror(version=4, src=t.dut_ip, dst=t.host_ip))
    quoted /= random.choice((fuzz(UDPerror()), fuzz(TCPerror()), _payload(0, 8)))
    return ether(t) / ipv4(t) / ICMP(type=_any_of((3, 4, 5, 11, 12)), code=RandByte()) / quoted


def _udp(t: Target, _: Context):
    from scapy.layers.inet import UDP
    from scapy.packet import fuzz

    return ether(t) / ipv4(t) / fuzz(UDP(dport=_any_of(_udp_ports(t)))) / _payload(0, 1472)


def _udp_header(t: Target, _: Context):
    from scapy.layers.inet import UDP
    from scapy.volatile import RandShort

    header = UDP(sport=RandShort(), dport=_any_of(_udp_ports(t)), len=RandShort(), chksum=_any_of((None, 0)))
    return ether(t) / ipv4(t) / header / _payload(0, 256)


def _tcp(t: Target, _: Context):
    from scapy.layers.inet import TCP
    from scapy.packet import fuzz

    return ether(t) / ipv4(t) / fuzz(TCP(dport=_any_of(_tcp_ports(t)))) / _payload(0, 64)


def _tcp_header(t: Target, _: Context):
    from scapy.layers.inet import TCP
    from scapy.volatile import RandByte, RandInt, RandNum, RandShort

    header = TCP(sport=RandShort(), dport=_any_of(_tcp_ports(t)), seq=RandInt(), ack=RandInt(),
                 dataofs=RandNum(0, 15), reserved=RandNum(0, 7), flags=RandByte(), window=RandShort(),
                 urgptr=RandShort())  # fmt: skip
    return ether(t) / ipv4(t) / header / _payload(0, 64)


TCP_OPTION_KINDS = (0, 1, 2, 3, 4, 5, 8, 28, 29, 30, 34, 254, 255)  # EOL NOP MSS WS SACK-OK SACK TS UTO AO MPTCP TFO


def _raw_tcp_options() -> bytes:
    """Options as bytes, with lengths that may lie (scapy's own option field always writes honest lengths)."""
    out = b""
    for _ in range(random.randint(1, 6)):
        kind = random.choice(TCP_OPTION_KINDS)
        if kind in (0, 1):
            out += bytes([kind])
            continue
        value = random.randbytes(random.randint(0, 10))
        length = random.choice((len(value) + 2, random.randint(0, 255)))
        out += bytes([kind, length]) + value
    return out[:40]


def _tcp_options(t: Target, _: Context):
    from scapy.layers.inet import TCP
    from scapy.packet import Raw
    from scapy.volatile import RandInt, RandShort

    options = _raw_tcp_options()
    padded = options + b"\x00" * (-len(options) % 4)
    header = TCP(sport=RandShort(), dport=_any_of(_tcp_ports(t)), seq=RandInt(), dataofs=5 + len(padded) // 4,
                 flags=random.choice(("S", "S", "SA", "A", "PA", "R", "F")))  # fmt: skip
    return ether(t) / ipv4(t) / header / Raw(load=padded + random.randbytes(random.choice((0, 0, 16))))


def _open_connection(t: Target, ctx: Context) -> None:
    """A live connection to the DUT's TCP echo (or first TCP port) and its sequence numbers, read off the wire."""
    port = 7 if 7 in t.tcp_ports else t.tcp_ports[0]
    sniffer = open_raw_socket(ctx.raw.getsockname()[0])
    ctx.state["sniffer"] = sniffer
    conn = socket.create_connection((t.dut_ip, port), timeout=CONNECT_TIMEOUT_S)
    ctx.state["conn"] = conn
    conn.sendall(b"hil-fuzz")
    seq, ack = sent_segment(sniffer, conn.getsockname()[1], 8)
    ctx.state["tcp"] = (conn.getsockname()[1], port, seq + 8, ack)


def _tcp_established(t: Target, ctx: Context):
    from scapy.layers.inet import TCP
    from scapy.packet import fuzz

    sport, dport, snd_nxt, rcv_nxt = ctx.state["tcp"]
    near = (0, 0, 1, -1, 1460, -1460, 65535, -65536, 2**31)
    seq = (snd_nxt + random.choice(near)) % 2**32
    ack = (rcv_nxt + random.choice(near)) % 2**32
    return ether(t) / ipv4(t) / fuzz(TCP(sport=sport, dport=dport, seq=seq, ack=ack)) / _payload(0, 512)


def _dhcp(t: Target, _: Context):
    from scapy.layers.dhcp import BOOTP, DHCP, RandDHCPOptions
    from scapy.layers.inet import UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import fuzz
    from scapy.volatile import RandBin, RandNum

    options: list[Any] = [("message-type", random.choice((2, 5, 6))), ("server_id", t.host_ip)]
    options += RandDHCPOptions(size=RandNum(0, 6), rndstr=RandBin(RandNum(0, 24)))._fix()
    for _ in range(random.randint(0, 2)):  # options whose length byte lies
        options.append(bytes([random.randint(1, 254), random.randint(0, 255)]) + random.randbytes(random.randint(0, 8)))
    broadcast = random.random() < 0.5
    frame = Ether(src=t.host_mac, dst=BROADCAST_MAC if broadcast else t.dut_mac)
    frame /= ipv4(t, dst="255.255.255.255" if broadcast else t.dut_ip)
    bootp = fuzz(BOOTP(op=2, htype=1, hlen=6, chaddr=bytes.fromhex(t.dut_mac.replace(":", ""))))
    return frame / UDP(sport=67, dport=68) / bootp / DHCP(options=[*options, "end"])


def _ipv6_dst(t: Target) -> str:
    return random.choice((t.dut_ipv6_ll, t.dut_ipv6_ll, "ff02::1", _solicited_node(t.dut_ipv6_ll)))


def _ipv6(t: Target, _: Context):
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
    from scapy.packet import fuzz

    return ether(t) / fuzz(IPv6(version=6, src=t.host_ipv6_ll, dst=t.dut_ipv6_ll)) / ICMPv6EchoRequest()


def _ipv6_header(t: Target, _: Context):
    from scapy.layers.inet6 import IPv6
    from scapy.volatile import RandByte, RandShort

    header = IPv6(src=t.host_ipv6_ll, dst=t.dut_ipv6_ll, plen=_any_of((None, RandShort())),
                  nh=_any_of((0, 6, 17, 43, 44, 58, 59, 60, RandByte())))  # fmt: skip
    return ether(t) / header / _payload(0, 256)


def _ipv6_ext(t: Target, _: Context):
    from scapy.layers import inet6
    from scapy.packet import fuzz

    hbh_options = ("Pad1", "PadN", "RouterAlert", "Jumbo", "HBHOptUnknown")
    chain = []
    for _ in range(random.randint(1, 3)):
        kind = random.choice(("IPv6ExtHdrHopByHop", "IPv6ExtHdrDestOpt", "IPv6ExtHdrRouting", "IPv6ExtHdrFragment",
                              "IPv6ExtHdrSegmentRouting"))  # fmt: skip
        if kind in ("IPv6ExtHdrHopByHop", "IPv6ExtHdrDestOpt"):
            options = [fuzz(getattr(inet6, random.choice(hbh_options))()) for _ in range(random.randint(0, 3))]
            chain.append(fuzz(getattr(inet6, kind)(options=options)))
        else:
            chain.append(fuzz(getattr(inet6, kind)()))
    packet = inet6.IPv6(src=t.host_ipv6_ll, dst=_ipv6_dst(t))
    for header in chain:
        packet /= header
    return _ether6(t, packet.dst) / packet / inet6.ICMPv6EchoRequest() / _payload(0, 64)


def _ipv6_fragments(t: Target, _: Context) -> list:
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6, IPv6ExtHdrFragment, fragment6
    from scapy.volatile import RandNum

    size = random.randint(64, 3000)
    packet = IPv6(src=t.host_ipv6_ll, dst=t.dut_ipv6_ll) / IPv6ExtHdrFragment(id=random.getrandbits(32))
    packet /= ICMPv6EchoRequest(data=b"\x5a" * size)
    train = [piece.copy() for piece in fragment6(packet, random.choice((1280, 1000, 600)))]
    for piece in train:
        fragment = piece[IPv6ExtHdrFragment]
        roll = random.random()
        if roll < 0.2:
            fragment.offset = RandNum(0, 8191)
        elif roll < 0.3:
            fragment.m = 1 - fragment.m
    if random.random() < 0.3:
        random.shuffle(train)
    return [ether(t) / piece for piece in train]


ICMPV6_CLASSES = ("ICMPv6EchoRequest", "ICMPv6EchoReply", "ICMPv6DestUnreach", "ICMPv6PacketTooBig",
                  "ICMPv6TimeExceeded", "ICMPv6ParamProblem", "ICMPv6MLQuery", "ICMPv6MLQuery2", "ICMPv6MLReport",
                  "ICMPv6MLReport2", "ICMPv6MLDone", "ICMPv6Unknown")  # fmt: skip


def _icmpv6(t: Target, _: Context):
    from scapy.layers import inet6
    from scapy.packet import fuzz

    cls = getattr(inet6, random.choice(ICMPV6_CLASSES))
    message = fuzz(cls(type=cls().type))  # fuzz() would draw the type too: keep the one the class is about
    dst = _ipv6_dst(t)
    packet = inet6.IPv6(src=t.host_ipv6_ll, dst=dst, hlim=random.choice((1, 64, 255))) / message
    return _ether6(t, dst) / packet / _payload(0, 64)


NDP_OPTION_CLASSES = ("ICMPv6NDOptSrcLLAddr", "ICMPv6NDOptDstLLAddr", "ICMPv6NDOptPrefixInfo", "ICMPv6NDOptMTU",
                      "ICMPv6NDOptRDNSS", "ICMPv6NDOptRouteInfo", "ICMPv6NDOptRedirectedHdr", "ICMPv6NDOptUnknown",
                      "ICMPv6NDOptDNSSL")  # fmt: skip


def _ndp(t: Target, _: Context):
    from scapy.layers import inet6
    from scapy.packet import fuzz
    from scapy.volatile import RandByte

    messages = (
        lambda: inet6.ICMPv6ND_NS(type=135, tgt=t.dut_ipv6_ll),
        lambda: inet6.ICMPv6ND_NA(type=136, tgt=random.choice((t.dut_ipv6_ll, SPOOF_IPV6_LL))),
        lambda: inet6.ICMPv6ND_RS(type=133),
        lambda: inet6.ICMPv6ND_RA(type=134),
        lambda: inet6.ICMPv6ND_Redirect(type=137, tgt=SPOOF_IPV6_LL),
    )
    message = random.choice(messages)()
    message.code = _any_of((0, RandByte()))
    packet = fuzz(message)  # the type stays (it was set); every other field is drawn
    for _ in range(random.randint(0, 3)):
        option = getattr(inet6, random.choice(NDP_OPTION_CLASSES))
        lying = random.random() < 0.3
        packet /= fuzz(option(len=RandByte())) if lying else fuzz(option())
    dst = _ipv6_dst(t)
    header = inet6.IPv6(src=SPOOF_IPV6_LL, dst=dst, hlim=_any_of((255, 255, 255, RandByte())))
    return _ether6(t, dst) / header / packet


def _igmp_layers() -> Any:
    """scapy's IGMP modules: `scapy.contrib.igmp(v3)` exist in every scapy this project supports (2.7 moved them
    to `scapy.layers.igmp` under other class names and left these deprecated)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from scapy.contrib import igmp, igmpv3
    return igmp, igmpv3


def _group_records() -> list:
    from scapy.packet import fuzz

    return [fuzz(_igmp_layers()[1].IGMPv3gr()) for _ in range(random.randint(0, 3))]


def _igmp(t: Target, _: Context):
    igmp, igmpv3 = _igmp_layers()
    from scapy.layers.inet import IPOption_Router_Alert
    from scapy.layers.l2 import Ether
    from scapy.packet import fuzz

    message = random.choice((
        lambda: fuzz(igmp.IGMP()),
        lambda: fuzz(igmpv3.IGMPv3(type=0x11)) / fuzz(igmpv3.IGMPv3mq()),
        lambda: fuzz(igmpv3.IGMPv3(type=0x22)) / fuzz(igmpv3.IGMPv3mr(records=_group_records())),
    ))()  # fmt: skip
    header = ipv4(t, dst="224.0.0.1", ttl=1, options=[IPOption_Router_Alert()])
    return Ether(src=t.host_mac, dst="01:00:5e:00:00:01") / header / message


TEMPLATES: tuple[Template, ...] = (
    Template("ethernet", "Ethernet", _ethernet),
    Template("arp", "ARP", _arp),
    Template("arp_fields", "ARP", _arp_fields),
    Template("ipv4", "IPv4", _ipv4),
    Template("ipv4_header", "IPv4", _ipv4_header),
    Template("ipv4_options", "IPv4", _ipv4_options),
    Template("ipv4_fragments", "IPv4", _ipv4_fragments),
    Template("icmp", "ICMP", _icmp),
    Template("icmp_error", "ICMP", _icmp_error),
    Template("udp", "UDP", _udp),
    Template("udp_header", "UDP", _udp_header),
    Template("tcp", "TCP", _tcp),
    Template("tcp_header", "TCP", _tcp_header),
    Template("tcp_options", "TCP", _tcp_options),
    Template("tcp_established", "TCP", _tcp_established, prepare=_open_connection),
    Template("dhcp", "DHCP", _dhcp),
    Template("ipv6", "IPv6", _ipv6),
    Template("ipv6_header", "IPv6", _ipv6_header),
    Template("ipv6_ext", "IPv6", _ipv6_ext),
    Template("ipv6_fragments", "IPv6", _ipv6_fragments),
    Template("icmpv6", "ICMPv6", _icmpv6),
    Template("ndp", "NDP", _ndp),
    Template("igmp", "IGMP", _igmp),
)


def template(name: str) -> Template:
    """The template called ``name``.

    Raises:
        LabError: no such template (the message lists them).
    """
    for candidate in TEMPLATES:
        if candidate.name == name:
            return candidate
    raise LabError(f"no fuzz template {name!r}; templates: {', '.join(t.name for t in TEMPLATES)}")


def usable(templates: Iterable[Template], t: Target) -> tuple[Template, ...]:
    """The templates ``t`` can be fuzzed with (IPv6 ones need its link-local address, TCP ones an open port)."""
    needs_ipv6 = {"IPv6", "ICMPv6", "NDP"}
    return tuple(
        candidate
        for candidate in templates
        if ((t.dut_ipv6_ll and t.host_ipv6_ll) or candidate.layer not in needs_ipv6)
        and (t.tcp_ports or candidate.prepare is None)
    )


# --- bursts --------------------------------------------------------------------------------------------------


def burst_seed(seed: int, index: int) -> str:
    """What `random` is seeded with for burst ``index`` of the campaign with ``seed``."""
    return f"hil-fuzz/{seed}/{index}"


def build_burst(template: Template, t: Target, ctx: Context, seed: int, index: int, count: int) -> list[bytes]:
    """The ``count`` frames of burst ``index`` (deterministic for a seed, except live-connection fields).

    `random`'s state is restored afterwards, so the rest of the process draws as if nothing happened.
    """
    logging.getLogger("scapy.runtime").setLevel(logging.ERROR)  # its warnings about odd fields are the point here
    state = random.getstate()
    random.seed(burst_seed(seed, index))
    try:
        if template.prepare is not None:
            try:
                template.prepare(t, ctx)
            except OSError as exc:
                raise PrepareError(f"the {template.name} burst could not start: {exc}") from exc
        frames: list[bytes] = []
        for _ in range(count * DRAWS_PER_FRAME):
            if len(frames) >= count:
                return frames[:count]
            try:
                built = template.build(t, ctx)
                packets = built if isinstance(built, list) else [built]
                frames += [bytes(packet)[:FRAME_MAX_BYTES] for packet in packets]
            except (ValueError, TypeError, OverflowError, struct.error):
                continue  # scapy cannot encode this draw (a value too wide for its field): draw again
        raise LabError(
            f"fuzz template {template.name} could not build {count} frames in {count * DRAWS_PER_FRAME} draws"
        )
    finally:
        random.setstate(state)


def send_frames(sock: socket.socket, frames: Iterable[bytes]) -> int:
    """Send frames back to back; a full transmit queue is waited out (up to 0.2 s per frame). Returns the count."""
    sent = 0
    for frame in frames:
        deadline = time.monotonic() + SEND_RETRY_S
        while True:
            try:
                sock.send(frame)
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS or time.monotonic() > deadline:
                    raise LabError(f"sending a {len(frame)} B fuzz frame failed: {exc}") from exc
                time.sleep(0.001)  # the qdisc is full: let the shaped link drain a frame
        sent += 1
    return sent


def send_burst(sock: socket.socket, template: Template, t: Target, seed: int, index: int, count: int) -> list[bytes]:
    """Build and send one burst (run inside the lab's host namespace); returns the frames as sent."""
    require_lab_namespace(t.dut_ip)
    ctx = Context(sock)
    try:
        frames = build_burst(template, t, ctx, seed, index, count)
        send_frames(sock, frames)
        return frames
    finally:
        for leftover in ctx.state.values():
            if isinstance(leftover, socket.socket):
                leftover.close()


# --- the host side and the probes ----------------------------------------------------------------------------


def host_addresses(ifname: str) -> tuple[str, str]:
    """The lab host's MAC and IPv6 link-local address on ``ifname`` ("" when it has none); run in the namespace."""
    with open_raw_socket(ifname, receive=False) as sock:
        mac = socket_mac(sock)
    link_local = ""
    for line in Path("/proc/thread-self/net/if_inet6").read_text().splitlines():
        fields = line.split()
        if len(fields) == 6 and fields[5] == ifname and fields[3] == "20":  # scope 0x20: link
            link_local = str(ipaddress.ip_address(bytes.fromhex(fields[0])))
    return mac, link_local


def _icmp_checksum(data: bytes) -> int:
    from scapy.utils import checksum

    return int(checksum(data))


def icmp_echo(address: str, ident: int, timeout: float = PING_TIMEOUT_S, ifname: str = "") -> bool:
    """One echo request to ``address`` (IPv4, or IPv6 link-local through ``ifname``); whether its reply came within
    ``timeout``."""
    ipv6 = ipaddress.ip_address(address).version == 6
    request_type, reply_type = (128, 129) if ipv6 else (8, 0)
    request = struct.pack("!BBHHH", request_type, 0, 0, ident & 0xFFFF, 1) + b"hil-fuzz-probe"
    if not ipv6:  # the kernel sums ICMPv6 itself (it needs the pseudo-header)
        request = request[:2] + struct.pack("!H", _icmp_checksum(request)) + request[4:]
    family, protocol = (socket.AF_INET6, socket.IPPROTO_ICMPV6) if ipv6 else (socket.AF_INET, socket.IPPROTO_ICMP)
    destination = (address, 0, 0, socket.if_nametoindex(ifname)) if ipv6 else (address, 0)
    with socket.socket(family, socket.SOCK_RAW, protocol) as sock:
        sock.sendto(request, destination)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                packet, source = sock.recvfrom(2048)
            except TimeoutError:
                return False
            reply = packet if ipv6 else packet[(packet[0] & 0x0F) * 4 :]  # raw IPv4 sockets pass the IP header
            from_dut = source[0].split("%")[0] == address
            if from_dut and len(reply) >= 8 and reply[0] == reply_type and reply[4:6] == request[4:6]:
                return True
    return False


def tcp_connect(dut_ip: str, port: int, timeout: float = CONNECT_TIMEOUT_S) -> str:
    """Open and close one TCP connection; "" when it worked, else what went wrong."""
    try:
        with socket.create_connection((dut_ip, port), timeout=timeout):
            return ""
    except OSError as exc:
        return str(exc) or type(exc).__name__


def probe(dut_ip: str, tcp_port: int | None, ident: int, dut_ipv6_ll: str = "", ifname: str = "") -> str:
    """Whether the DUT still answers on the network: ICMP echo, ICMPv6 echo to its link-local address (when it has
    one), then a TCP connect to ``tcp_port`` (if any).

    Each check is tried a few times (a burst may leave the DUT busy for a moment). Returns "" when the DUT
    answered, else what it did not answer. Run inside the lab's host namespace.
    """
    require_lab_namespace(dut_ip)
    if not any(icmp_echo(dut_ip, ident + attempt) for attempt in range(PING_TRIES)):
        return f"no ICMP echo reply from {dut_ip} ({PING_TRIES} requests, {PING_TIMEOUT_S:g} s each)"
    if dut_ipv6_ll and not any(icmp_echo(dut_ipv6_ll, ident + n, ifname=ifname) for n in range(PING_TRIES)):
        return f"no ICMPv6 echo reply from {dut_ipv6_ll}%{ifname} ({PING_TRIES} requests, {PING_TIMEOUT_S:g} s each)"
    if tcp_port is None:
        return ""
    errors = []
    for _ in range(CONNECT_TRIES):
        error = tcp_connect(dut_ip, tcp_port)
        if not error:
            return ""
        errors.append(error)
    return f"TCP connect to {dut_ip}:{tcp_port} failed {CONNECT_TRIES} times ({'; '.join(errors)})"


# --- pcaps and replay ----------------------------------------------------------------------------------------


def write_pcap(path: Path, frames: Iterable[bytes]) -> Path:
    """Write frames to a pcap file (Ethernet link type), creating its directory."""
    from scapy.utils import RawPcapWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = RawPcapWriter(str(path), linktype=1, sync=True)
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.close()
    return path


def read_pcap(path: Path) -> list[bytes]:
    """The frames of a pcap file.

    Raises:
        LabError: the file is missing or not a pcap of Ethernet frames.
    """
    from scapy.error import Scapy_Exception
    from scapy.utils import RawPcapReader

    try:
        with RawPcapReader(str(path)) as reader:
            if reader.linktype != 1:
                raise LabError(f"{path} holds link type {reader.linktype}, not Ethernet frames")
            return [bytes(frame) for frame, _ in reader]
    except (OSError, Scapy_Exception) as exc:
        raise LabError(f"cannot read {path} as a pcap: {exc}") from exc


L4_CHECKSUM_OFFSET = {1: 2, 6: 16, 17: 6, 58: 2}  # ICMP, TCP, UDP, ICMPv6
IPV6_EXTENSIONS = (0, 43, 60)  # hop-by-hop, routing, destination options (the fragment header is 44)


@dataclass(frozen=True)
class _Checksum:
    """A checksum a receiver verifies: where it sits and the byte ranges (pseudo-header included) it covers."""

    at: int
    spans: tuple[tuple[int, int], ...]
    udp: bool = False


def _checksums(frame: bytes) -> list[_Checksum]:
    found: list[_Checksum] = []
    if len(frame) < 14:
        return found
    ethertype = int.from_bytes(frame[12:14], "big")
    if ethertype == 0x0800 and len(frame) >= 34 and frame[14] >> 4 == 4:
        ihl = (frame[14] & 0x0F) * 4
        if ihl < 20 or len(frame) < 14 + ihl:
            return found
        found.append(_Checksum(24, ((14, 14 + ihl),)))
        first_fragment = int.from_bytes(frame[20:22], "big") & 0x1FFF == 0
        proto, l4 = frame[23], 14 + ihl
        pseudo = () if proto == 1 else ((26, 34),)
        found += _l4_checksum(frame, proto, l4, pseudo) if first_fragment else []
    elif ethertype == 0x86DD and len(frame) >= 54:
        next_header, l4 = frame[20], 54
        while next_header in (*IPV6_EXTENSIONS, 44) and len(frame) >= l4 + 8:
            if next_header == 44 and int.from_bytes(frame[l4 + 2 : l4 + 4], "big") >> 3:
                return found  # a later fragment carries no transport header
            length = 8 if next_header == 44 else (frame[l4 + 1] + 1) * 8
            next_header, l4 = frame[l4], l4 + length
        found += _l4_checksum(frame, next_header, l4, ((22, 54),))
    return found


def _l4_checksum(frame: bytes, proto: int, l4: int, pseudo: tuple[tuple[int, int], ...]) -> list[_Checksum]:
    offset = L4_CHECKSUM_OFFSET.get(proto)
    if offset is None or len(frame) < l4 + offset + 2:
        return []
    if proto == 17 and frame[l4 + offset : l4 + offset + 2] == b"\x00\x00" and pseudo != ((22, 54),):
        return []  # an IPv4 UDP datagram without a checksum
    return [_Checksum(l4 + offset, ((l4, len(frame)), *pseudo), udp=proto == 17)]


def _ones_sum(frame: bytes | bytearray, checksum: _Checksum) -> int:
    total = 0
    for start, end in checksum.spans:
        chunk = bytearray(frame[start:end])
        if start <= checksum.at < end:
            chunk[checksum.at - start : checksum.at - start + 2] = b"\x00\x00"
        if len(chunk) % 2:
            chunk.append(0)
        total += sum(struct.unpack(f"!{len(chunk) // 2}H", chunk))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def retarget(frame: bytes, mapping: dict[bytes, bytes]) -> bytes:
    """``frame`` with every occurrence of each old address (key) replaced by the new one (value).

    Each checksum that covers a replaced address (IPv4 header, TCP/UDP/ICMP/ICMPv6 with their pseudo-headers)
    is adjusted by the difference (RFC 1624), so a checksum that was right stays right and one that was wrong
    stays exactly as wrong: the frame reaches the new DUT as it reached the old one.
    """
    rewritten = bytearray(frame)
    for old, new in mapping.items():
        start = frame.find(old)
        while start != -1:
            rewritten[start : start + len(old)] = new
            start = frame.find(old, start + len(old))
    if rewritten == frame:
        return frame
    for checksum in _checksums(frame):
        before, after = _ones_sum(frame, checksum), _ones_sum(rewritten, checksum)
        if before == after:
            continue
        stored = int.from_bytes(frame[checksum.at : checksum.at + 2], "big")
        total = (~stored & 0xFFFF) + after + (~before & 0xFFFF)
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        value = ~total & 0xFFFF
        if checksum.udp and value == 0 and stored != 0:
            value = 0xFFFF  # 0 means "no checksum" in UDP; a computed 0 is sent as 0xffff
        rewritten[checksum.at : checksum.at + 2] = value.to_bytes(2, "big")
    return bytes(rewritten)


def address_mapping(old: Target, new: Target) -> dict[bytes, bytes]:
    """Old address bytes -> new ones, for every address of the DUT and the lab host that differs."""

    def mac(text: str) -> bytes:
        return bytes.fromhex(text.replace(":", ""))

    def ip(text: str) -> bytes:
        return ipaddress.ip_address(text).packed

    pairs = [(mac(old.dut_mac), mac(new.dut_mac)), (mac(old.host_mac), mac(new.host_mac)),
             (ip(old.dut_ip), ip(new.dut_ip)), (ip(old.host_ip), ip(new.host_ip))]  # fmt: skip
    if old.dut_ipv6_ll and new.dut_ipv6_ll:
        pairs.append((ip(old.dut_ipv6_ll), ip(new.dut_ipv6_ll)))
        pairs.append((ip(_solicited_node(old.dut_ipv6_ll)), ip(_solicited_node(new.dut_ipv6_ll))))
        pairs.append((mac("33:33:ff") + ip(old.dut_ipv6_ll)[13:], mac("33:33:ff") + ip(new.dut_ipv6_ll)[13:]))
    if old.host_ipv6_ll and new.host_ipv6_ll:
        pairs.append((ip(old.host_ipv6_ll), ip(new.host_ipv6_ll)))
    return {before: after for before, after in pairs if before != after}
