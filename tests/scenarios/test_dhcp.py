"""DHCP: lease time on the wire, the DUT's view of the lease, renewal between T1 and T2."""

from __future__ import annotations

import time

from harness.boards.board import Board


def test_dhcp_lease(board: Board, dhcp_server, metrics) -> None:
    """DISCOVER -> ACK time, and the address/netmask/gateway the DUT reports match the ACK."""
    since = time.monotonic()
    board.reset(wait_online=True)
    mac = board.hello["mac"]

    lease_s = dhcp_server.lease_time_s(since=since, mac=mac, timeout=30)
    ack = dhcp_server.wait_for("ACK", since=since, predicate=lambda e: e.mac == mac and e.direction == "tx", timeout=5)
    ip = board.ip_info()

    assert ip["ip"] == ack.yiaddr
    assert ip["netmask"] == dhcp_server.addressing.netmask
    assert ip["gw"] == dhcp_server.addressing.host_ip
    metrics.record("dhcp_lease_s", lease_s, "s", "lower")


def test_dhcp_renewal_between_t1_and_t2(board: Board, dhcp_server, metrics) -> None:
    """With a 20 s lease the DUT sends a renewing REQUEST after T1 (10 s) and before T2 (17.5 s)."""
    original = dhcp_server.behaviour
    dhcp_server.configure(lease_s=20, t1_s=None, t2_s=None)
    try:
        board.reset(wait_online=True)
        mac = board.hello["mac"]
        ack = dhcp_server.wait_for("ACK", predicate=lambda e: e.mac == mac and e.lease_s == 20, timeout=10)
        request = [e for e in dhcp_server.exchanges if e.msg_type == "REQUEST" and e.mac == mac and e.mono <= ack.mono][
            -1
        ]
        renewal = dhcp_server.wait_for(
            "REQUEST", since=ack.mono, predicate=lambda e: e.mac == mac and e.kind == "renewing", timeout=20
        )
    finally:
        dhcp_server.behaviour = original
    # RFC 2131 times the lease from when the client sent its REQUEST; allow for the wire delays either way.
    after_request = renewal.mono - request.mono
    assert 10.0 - 0.05 <= after_request < 17.5, (
        f"renewal {after_request:.3f} s after the REQUEST that got the lease; expected between T1=10 s and T2=17.5 s"
    )
    metrics.record("dhcp_renew_after_lease_s", after_request, "s", "lower")
    # Leave the DUT on a normal lease for the scenarios that follow.
    board.reset(wait_online=True)
