"""DHCP edge cases with the lab's scriptable server: NAK on renew, silent server at T1 (rebind at T2), lease
expiry with the server gone, and unusual options. Lease times are shortened to seconds."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from harness.boards.board import Board
from harness.errors import DutTimeoutError

# The virtual board's linux stack (the control arm) leases with busybox udhcpc.
UDHCPC_TIMERS = pytest.mark.known_behaviour(
    "udhcpc", ("1.35",),
    "busybox udhcpc ignores the server's T1 and T2 (options 58 and 59, RFC 2131 4.4.5) and renews only after "
    "half the lease and never before 15 s: with a 4 s lease and a silent server it sent its renewing REQUEST "
    "after 15.0 s, rebinding REQUESTs after 16-18 s and dropped the address after 19 s",
)  # fmt: skip


@pytest.fixture
def dhcp(board: Board, dhcp_server) -> Iterator:
    """The DHCP server; afterwards its behaviour is restored and the DUT gets a normal lease again."""
    original = dhcp_server.behaviour
    yield dhcp_server
    dhcp_server.behaviour = original
    board.reset(wait_online=True)


def _lease_request(dhcp, mac: str, ack) -> float:
    """When the REQUEST that earned ``ack`` was sent (RFC 2131 times the lease from it)."""
    requests = [e for e in dhcp.exchanges if e.msg_type == "REQUEST" and e.mac == mac and e.mono <= ack.mono]
    return requests[-1].mono


def _fresh_lease(board: Board, dhcp, lease_s: int):
    """Reset so the DUT takes a lease with the server's current (short) times; return the ACK."""
    since = time.monotonic()
    board.reset(wait_online=True)
    mac = board.hello["mac"]
    return mac, dhcp.wait_for(
        "ACK",
        since=since,
        predicate=lambda e: e.mac == mac and e.lease_s == lease_s and e.direction == "tx",
        timeout=10,
    )


def _event(board: Board, name: str, since: int, timeout: float, what: str):
    return board.monitor.wait_for(
        lambda ln: ln.machine is not None and ln.machine.fields.get("event") == name, since=since, timeout=timeout,
        what=what,
    )  # fmt: skip


@UDHCPC_TIMERS
def test_nak_on_renew_rediscovers(board: Board, dhcp, metrics) -> None:
    """A NAK to the renewing REQUEST makes the DUT drop the address and start over with DISCOVER."""
    dhcp.configure(lease_s=30, t1_s=2, t2_s=20)
    mac, _ = _fresh_lease(board, dhcp, 30)
    mark = board.monitor.mark()
    dhcp.configure(nak_renewals=True)
    nak = dhcp.wait_for("NAK", predicate=lambda e: e.mac == mac and e.direction == "tx", timeout=10)
    try:
        discover = dhcp.wait_for("DISCOVER", since=nak.mono, predicate=lambda e: e.mac == mac, timeout=10)
    except DutTimeoutError as exc:
        raise AssertionError(f"the DUT ignored the NAK to its renewal: no DISCOVER within 10 s ({exc})") from exc
    ack = dhcp.wait_for("ACK", since=discover.mono, predicate=lambda e: e.mac == mac and e.direction == "tx",
                        timeout=15)  # fmt: skip
    _event(board, "got_ip", mark, 10, "HIL_EVENT got_ip after the rediscovery")
    metrics.record("dhcp_nak_to_discover_s", discover.mono - nak.mono, "s", "lower")
    metrics.record("dhcp_nak_to_lease_s", ack.mono - nak.mono, "s", "lower")
    assert board.ip_info()["ip"] == ack.yiaddr


@UDHCPC_TIMERS
def test_silent_at_t1_rebinds_at_t2(board: Board, dhcp, metrics) -> None:
    """The server ignores unicast renewals: the DUT keeps retrying, then rebinds (broadcast) after T2."""
    t1, t2, lease = 2, 5, 12
    dhcp.configure(lease_s=lease, t1_s=t1, t2_s=t2, ignore_renewals=True)
    mac, ack = _fresh_lease(board, dhcp, lease)
    requested = _lease_request(dhcp, mac, ack)
    mark = board.monitor.mark()
    renewing = dhcp.wait_for("REQUEST", since=ack.mono, predicate=lambda e: e.mac == mac and e.kind == "renewing",
                             timeout=t1 + 3)  # fmt: skip
    rebinding = dhcp.wait_for("REQUEST", since=ack.mono, predicate=lambda e: e.mac == mac and e.kind == "rebinding",
                              timeout=lease + 2)  # fmt: skip
    rebound = dhcp.wait_for("ACK", since=rebinding.mono, predicate=lambda e: e.mac == mac and e.direction == "tx",
                            timeout=5)  # fmt: skip
    metrics.record("dhcp_renew_after_lease_s", renewing.mono - requested, "s", "lower")
    metrics.record("dhcp_rebind_after_lease_s", rebinding.mono - requested, "s", "lower")
    assert t1 - 0.05 <= renewing.mono - requested < t2, f"renewal {renewing.mono - requested:.2f} s after the REQUEST"
    assert t2 - 0.05 <= rebinding.mono - requested < lease, (
        f"rebinding {rebinding.mono - requested:.2f} s after the REQUEST; expected between T2={t2} s and the lease "
        f"end ({lease} s)"
    )
    lost = [ln for ln in board.monitor.slice(mark) if ln.machine and ln.machine.fields.get("event") == "lost_ip"]
    assert not lost, "the DUT dropped its address although the rebind succeeded before the lease ended"
    assert board.ip_info()["ip"] == rebound.yiaddr


@UDHCPC_TIMERS
def test_lease_expiry_with_server_gone(board: Board, dhcp, metrics) -> None:
    """With the server gone the lease runs out: the address is dropped (lost_ip) and regained when it returns."""
    lease = 4
    dhcp.configure(lease_s=lease, t1_s=2, t2_s=3)
    mac, ack = _fresh_lease(board, dhcp, lease)
    requested = _lease_request(dhcp, mac, ack)
    mark = board.monitor.mark()
    dhcp.configure(silent=True)
    lost = _event(board, "lost_ip", mark, lease + 3, "HIL_EVENT lost_ip when the lease ran out")
    lost_after = lost.host_time - (time.time() - (time.monotonic() - requested))
    assert board.ip_info()["ip"] == "0.0.0.0", "the DUT still reports an address after its lease expired"
    back = board.monitor.mark()
    returned = time.monotonic()
    dhcp.configure(silent=False, lease_s=3600, t1_s=None, t2_s=None)
    _event(board, "got_ip", back, 20, "HIL_EVENT got_ip after the server returned")
    metrics.record("dhcp_lost_ip_after_lease_s", lost_after, "s", "lower")
    metrics.record("dhcp_regain_after_server_return_s", time.monotonic() - returned, "s", "lower")
    assert lost_after >= lease - 0.2, (
        f"address dropped {lost_after:.2f} s after the REQUEST, before the {lease} s lease"
    )


def test_option_variety(board: Board, dhcp, metrics) -> None:
    """No router option and three DNS servers: the DUT takes the lease and reports no gateway."""
    dhcp.configure(router=False, dns=("10.77.0.1", "10.77.0.2", "10.77.0.3"))
    _, ack = _fresh_lease(board, dhcp, dhcp.behaviour.lease_s)
    info = board.ip_info()
    assert info["ip"] == ack.yiaddr
    assert info["netmask"] == dhcp.addressing.netmask
    assert info["gw"] == "0.0.0.0", f"the lease had no router option, but the DUT reports gateway {info['gw']}"
