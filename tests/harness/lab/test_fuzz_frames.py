"""The fuzz campaign's frames (harness/lab/fuzz.py) without a lab: templates, seeds, pcaps, address mapping."""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path

import pytest
from scapy.layers.dhcp import BOOTP
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import ARP, Ether

from harness.errors import LabError
from harness.lab import fuzz
from harness.lab.robustness import Context, Target

TARGET = Target("10.77.0.100", "02:00:00:12:34:56", "10.77.0.1", "02:aa:bb:cc:dd:ee", "fe80::ff:fe12:3456",
                "fe80::aa:bbff:fecc:ddee", (80, 443, 7, 7000, 5201), (7, 7001, 7002, 7003, 7004, 5007))  # fmt: skip
OTHER = Target("10.77.0.150", "02:00:00:65:43:21", "10.77.0.1", "02:11:22:33:44:55", "fe80::ff:fe65:4321",
               "fe80::11:22ff:fe33:4455", TARGET.tcp_ports, TARGET.udp_ports)  # fmt: skip
LAYERS = {"Ethernet", "ARP", "IPv4", "ICMP", "UDP", "TCP", "DHCP", "IPv6", "ICMPv6", "NDP", "IGMP"}


def _offline_context() -> Context:
    """A context as `_open_connection` leaves it, without a connection (for `tcp_established`)."""
    ctx = Context(raw=None)  # type: ignore[arg-type]
    ctx.state["tcp"] = (40000, 7, 1000, 2000)
    return ctx


def _burst(template: fuzz.Template, seed: int = 1, index: int = 1, target: Target = TARGET) -> list[bytes]:
    offline = fuzz.Template(template.name, template.layer, template.build)  # no prepare: no connection
    return fuzz.build_burst(offline, target, _offline_context(), seed, index, fuzz.BURST_FRAMES)


def test_the_table_covers_every_layer_smoltcp_parses() -> None:
    assert {template.layer for template in fuzz.TEMPLATES} == LAYERS
    assert len({template.name for template in fuzz.TEMPLATES}) == len(fuzz.TEMPLATES)
    with pytest.raises(LabError, match=r"no fuzz template .http..*tcp_options"):
        fuzz.template("http")


@pytest.mark.parametrize("template", fuzz.TEMPLATES, ids=[t.name for t in fuzz.TEMPLATES])
def test_a_seed_gives_the_same_burst_again_and_another_burst_differs(template: fuzz.Template) -> None:
    random.seed(99)
    expected_next = random.random()
    random.seed(99)
    frames = _burst(template)
    assert random.random() == expected_next, "building a burst must leave the caller's random state alone"
    assert len(frames) == fuzz.BURST_FRAMES
    assert all(14 <= len(frame) <= fuzz.FRAME_MAX_BYTES for frame in frames)
    assert _burst(template) == frames
    assert _burst(template, index=2) != frames
    assert _burst(template, seed=2) != frames


@pytest.mark.parametrize("template", fuzz.TEMPLATES, ids=[t.name for t in fuzz.TEMPLATES])
def test_every_frame_is_aimed_at_the_dut(template: fuzz.Template) -> None:
    dut_mac = TARGET.dut_mac
    for frame in _burst(template):
        destination = Ether(frame).dst
        assert destination in (dut_mac, fuzz.BROADCAST_MAC) or int(destination[:2], 16) & 1, destination


def test_spoofed_arp_never_claims_the_lab_hosts_or_the_duts_address() -> None:
    spoofed = ipaddress.ip_address(fuzz.spoof_ip(TARGET)).packed
    assert fuzz.spoof_ip(TARGET) not in (TARGET.host_ip, TARGET.dut_ip)
    for name in ("arp", "arp_fields"):
        for frame in _burst(fuzz.template(name)):
            assert frame[12:14] == b"\x08\x06" and Ether(frame).src == fuzz.SPOOF_MAC
            if frame[16:20] == b"\x08\x00\x06\x04":  # IPv4 over Ethernet: the sender's address is at 28
                assert frame[28:32] == spoofed


def test_templates_reach_their_layer() -> None:
    def layers(name: str) -> list[Ether]:
        return [Ether(frame) for frame in _burst(fuzz.template(name))]

    assert all(TCP in p and p[TCP].dport in (*TARGET.tcp_ports, fuzz.CLOSED_PORT) for p in layers("tcp"))
    assert all(p[TCP].sport == 40000 and p[TCP].dport == 7 for p in layers("tcp_established"))
    assert all(UDP in p and p[UDP].dport in (*TARGET.udp_ports, 68, fuzz.CLOSED_PORT) for p in layers("udp"))
    dhcp = layers("dhcp")
    assert all(p[UDP].sport == 67 and p[UDP].dport == 68 and p[BOOTP].op == 2 for p in dhcp)
    assert all(p[BOOTP].chaddr[:6] == bytes.fromhex(TARGET.dut_mac.replace(":", "")) for p in dhcp)
    assert all(p[IP].proto == 2 and p[IP].dst == "224.0.0.1" for p in layers("igmp"))
    assert all(p[IPv6].nh == 58 and 133 <= p[IPv6].payload.type <= 137 for p in layers("ndp"))
    assert {p[IP].dst for p in layers("icmp")} == {TARGET.dut_ip} and all(ICMP in p for p in layers("icmp"))
    assert all(IP in p for p in layers("ipv4_fragments"))
    assert all(ICMPv6EchoRequest in p and p[IPv6].dst == TARGET.dut_ipv6_ll for p in layers("ipv6"))


def test_templates_a_dut_cannot_take_are_left_out() -> None:
    every = fuzz.usable(fuzz.TEMPLATES, TARGET)
    assert every == fuzz.TEMPLATES
    no_ipv6 = Target(TARGET.dut_ip, TARGET.dut_mac, TARGET.host_ip, TARGET.host_mac, tcp_ports=(80,))
    assert {t.layer for t in fuzz.usable(fuzz.TEMPLATES, no_ipv6)} == LAYERS - {"IPv6", "ICMPv6", "NDP"}
    no_tcp_port = Target(TARGET.dut_ip, TARGET.dut_mac, TARGET.host_ip, TARGET.host_mac)
    assert "tcp_established" not in {t.name for t in fuzz.usable(fuzz.TEMPLATES, no_tcp_port)}
    assert "tcp" in {t.name for t in fuzz.usable(fuzz.TEMPLATES, no_tcp_port)}


def test_pcaps_round_trip_and_a_bad_file_is_a_clear_error(tmp_path: Path) -> None:
    frames = _burst(fuzz.template("ethernet"))
    path = fuzz.write_pcap(tmp_path / "sub" / "burst.pcap", frames)
    assert fuzz.read_pcap(path) == frames
    (tmp_path / "junk.pcap").write_bytes(b"not a pcap at all")
    with pytest.raises(LabError, match=r"cannot read .*junk\.pcap as a pcap"):
        fuzz.read_pcap(tmp_path / "junk.pcap")
    with pytest.raises(LabError, match="cannot read"):
        fuzz.read_pcap(tmp_path / "missing.pcap")


def _recomputed(frame: bytes) -> bytes:
    """The frame with every checksum scapy knows recomputed (what a correct sender would have sent)."""
    packet = Ether(frame)
    for layer in (IP, TCP, UDP, ICMP):
        if layer in packet:
            del packet[layer].chksum
    if IPv6 in packet and packet[IPv6].payload is not None and hasattr(packet[IPv6].payload, "cksum"):
        del packet[IPv6].payload.cksum
    return bytes(packet)


@pytest.mark.parametrize(
    "packet",
    [
        IP(src="10.77.0.1", dst="10.77.0.100") / TCP(dport=80, flags="S", options=[("MSS", 1460)]) / b"data",
        IP(src="10.77.0.1", dst="10.77.0.100") / UDP(dport=7) / b"odd length",
        IP(src="10.77.0.1", dst="10.77.0.100") / ICMP() / b"ping",
        IPv6(src="fe80::aa:bbff:fecc:ddee", dst="fe80::ff:fe12:3456") / ICMPv6EchoRequest(data=b"x" * 9),
        IPv6(src="fe80::aa:bbff:fecc:ddee", dst="fe80::ff:fe12:3456") / UDP(dport=7) / b"udp6",
    ],
    ids=["tcp", "udp", "icmp", "icmpv6", "udp6"],
)
def test_retargeting_keeps_right_checksums_right_and_wrong_ones_exactly_as_wrong(packet: object) -> None:
    mapping = fuzz.address_mapping(TARGET, OTHER)
    right = bytes(Ether(src=TARGET.host_mac, dst=TARGET.dut_mac) / packet)
    moved = fuzz.retarget(right, mapping)
    assert moved != right and moved == _recomputed(moved), "a valid frame must stay valid at its new addresses"
    assert Ether(moved).dst == OTHER.dut_mac
    back = fuzz.address_mapping(OTHER, TARGET)
    wrong = bytearray(right)
    checksum_at = fuzz._checksums(right)[-1].at  # the transport checksum
    wrong[checksum_at] ^= 0x5A
    moved_wrong = fuzz.retarget(bytes(wrong), mapping)
    assert moved_wrong != _recomputed(moved_wrong), "a wrong checksum must stay wrong"
    assert fuzz.retarget(moved_wrong, back) == bytes(wrong), "and by exactly as much"


def test_retargeting_maps_payload_addresses_and_leaves_foreign_ones() -> None:
    mapping = fuzz.address_mapping(TARGET, OTHER)
    assert fuzz.address_mapping(TARGET, TARGET) == {}
    arp = bytes(Ether(src=fuzz.SPOOF_MAC, dst=TARGET.dut_mac) / ARP(psrc="10.77.0.241", pdst=TARGET.dut_ip))
    moved = Ether(fuzz.retarget(arp, mapping))
    assert (moved.dst, moved[ARP].pdst, moved[ARP].psrc, moved.src) == (OTHER.dut_mac, OTHER.dut_ip, "10.77.0.241",
                                                                         fuzz.SPOOF_MAC)  # fmt: skip
    runt = b"\x02\x00\x00\x12"
    assert fuzz.retarget(runt, mapping) == runt
