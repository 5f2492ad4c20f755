"""The DHCPv4 codec and framing, without a lab: round trips, exact bytes, and hostile input."""

from __future__ import annotations

import contextlib
import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import LabError
from harness.lab.dhcp import DhcpBehaviour
from harness.lab.dhcp_packet import (
    BOOTREPLY,
    BOOTREQUEST,
    BROADCAST_IP,
    BROADCAST_MAC,
    MAGIC_COOKIE,
    DhcpMessage,
    MalformedPacket,
    MessageType,
    Opt,
    build_options,
    ip_bytes,
    parse_udp_frame,
    prefixlen_of,
    u32_bytes,
    udp_frame,
)

MAC = "02:00:00:12:34:56"


def _ack() -> DhcpMessage:
    return DhcpMessage(
        op=BOOTREPLY, xid=0xDEADBEEF, chaddr=MAC, flags=0x8000, yiaddr="10.77.0.100", siaddr="10.77.0.1",
        options=build_options(MessageType.ACK, [
            (Opt.SERVER_ID, ip_bytes("10.77.0.1")), (Opt.LEASE_TIME, u32_bytes(8)), (Opt.RENEWAL_T1, u32_bytes(4)),
            (Opt.REBINDING_T2, u32_bytes(7)), (Opt.SUBNET_MASK, ip_bytes("255.255.255.0")),
            (Opt.ROUTER, ip_bytes("10.77.0.1")), (Opt.DNS, ip_bytes("10.77.0.53", "10.77.0.54")),
        ]),
    )  # fmt: skip


def test_round_trip_keeps_every_field() -> None:
    ack = _ack()
    wire = ack.encode()
    assert len(wire) >= 300 and wire[236:240] == MAGIC_COOKIE
    back = DhcpMessage.decode(wire)
    assert back == ack
    assert back.msg_type is MessageType.ACK and back.broadcast_flag
    assert back.u32(Opt.LEASE_TIME) == 8 and back.ips(Opt.DNS) == ["10.77.0.53", "10.77.0.54"]
    assert back.ip(Opt.ROUTER) == "10.77.0.1" and back.ip(Opt.DNS) is None  # two DNS servers are not "one IP"


def test_header_layout_matches_rfc2131() -> None:
    wire = DhcpMessage(op=BOOTREQUEST, xid=0x01020304, chaddr=MAC, secs=3, ciaddr="10.77.0.100").encode()
    assert wire[:4] == bytes((1, 1, 6, 0))
    assert struct.unpack_from("!IHH", wire, 4) == (0x01020304, 3, 0)
    assert wire[12:16] == socket.inet_aton("10.77.0.100")
    assert wire[28:34] == bytes.fromhex("020000123456") and wire[34:44] == bytes(10)
    assert wire[240] == Opt.END


def test_long_options_are_split_and_joined_again() -> None:
    msg = DhcpMessage(op=BOOTREQUEST, xid=1, chaddr=MAC, options={Opt.HOSTNAME: b"h" * 300})
    wire = msg.encode()
    assert wire[240:242] == bytes((Opt.HOSTNAME, 255))
    assert DhcpMessage.decode(wire).options[Opt.HOSTNAME] == b"h" * 300


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda w: w[:200], "shorter than a BOOTP header"),
        (lambda w: b"\x03" + w[1:], "op 3"),
        (lambda w: w[:1] + b"\x06" + w[2:], "not Ethernet"),
        (lambda w: w[:236] + b"\x00" * 4 + w[240:], "magic cookie"),
        (lambda w: w[:240] + bytes((53, 9, 1)), "past the end"),
        (lambda w: w[:240] + bytes((53, 1, 1)), "not terminated"),
        (lambda w: w[:240] + bytes((53,)), "no length byte"),
    ],
)
def test_malformed_messages_name_the_problem(mutate, message: str) -> None:
    with pytest.raises(MalformedPacket, match=message):
        DhcpMessage.decode(mutate(_ack().encode()))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_decoding_garbage_only_ever_raises_malformed_packet(data: bytes) -> None:
    with contextlib.suppress(MalformedPacket):
        DhcpMessage.decode(data)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=299), st.binary(min_size=1, max_size=8))
def test_corrupting_a_valid_message_never_escapes_as_another_error(offset: int, junk: bytes) -> None:
    wire = bytearray(_ack().encode())
    wire[offset : offset + len(junk)] = junk
    try:
        msg = DhcpMessage.decode(bytes(wire))
    except MalformedPacket:
        return
    # Whatever survives decodes to typed views without exceptions.
    assert msg.msg_type is None or isinstance(msg.msg_type, MessageType)
    assert isinstance(msg.ips(Opt.DNS), list)
    lease = msg.u32(Opt.LEASE_TIME)
    assert lease is None or lease >= 0
    assert msg.text(Opt.HOSTNAME) is None or isinstance(msg.text(Opt.HOSTNAME), str)


def test_udp_frame_round_trip_and_checksums() -> None:
    payload = _ack().encode()
    frame = udp_frame(MAC, BROADCAST_MAC, "10.77.0.1", BROADCAST_IP, 67, 68, payload)
    parsed = parse_udp_frame(frame)
    assert (parsed.src_mac, parsed.dst_mac, parsed.src_ip, parsed.dst_ip) == (
        MAC,
        BROADCAST_MAC,
        "10.77.0.1",
        BROADCAST_IP,
    )
    assert (parsed.src_port, parsed.dst_port, parsed.payload) == (67, 68, payload)
    # The UDP checksum over the pseudo-header verifies to zero, as a receiving kernel checks it.
    udp = frame[34:]
    pseudo = socket.inet_aton("10.77.0.1") + socket.inet_aton(BROADCAST_IP) + struct.pack("!BBH", 0, 17, len(udp))
    data = pseudo + udp + (b"\x00" if len(udp) % 2 else b"")
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    assert total == 0xFFFF


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f[:30], "too short"),
        (lambda f: f[:12] + b"\x86\xdd" + f[14:], "not an IPv4"),
        (lambda f: f[:24] + b"\x00\x00" + f[26:], "checksum"),
    ],
)
def test_bad_frames_are_rejected(mutate, message: str) -> None:
    frame = udp_frame(MAC, BROADCAST_MAC, "0.0.0.0", BROADCAST_IP, 68, 67, b"x" * 20)
    with pytest.raises(MalformedPacket, match=message):
        parse_udp_frame(mutate(frame))


def test_prefixlen_and_bad_macs() -> None:
    assert prefixlen_of("255.255.255.0") == 24
    with pytest.raises(MalformedPacket, match="not a valid netmask"):
        prefixlen_of("255.0.255.0")
    with pytest.raises(MalformedPacket, match="six hex bytes"):
        DhcpMessage(op=BOOTREQUEST, xid=1, chaddr="02:00").encode()


@pytest.mark.parametrize(
    "kwargs",
    [{"lease_s": 0}, {"lease_s": 10, "t1_s": 8, "t2_s": 6}, {"lease_s": 10, "t2_s": 11}],
)
def test_behaviour_rejects_impossible_timers(kwargs: dict) -> None:
    with pytest.raises(LabError, match="lease"):
        DhcpBehaviour(**kwargs)
