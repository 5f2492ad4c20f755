"""Multicast, L2 tap and loopback: the DUT's paths beside plain TCP/UDP unicast.

- `mcast join <group>`: an IGMP membership report must appear on the cable, and datagrams to the group
  on UDP 5007 come back by unicast from the DUT's address.
- L2 echo on EtherType 0x88B5 (`l2tap on 0x88b5`): frames come back with the DUT's receive timestamps.
- `loopback`: the in-RAM 127.0.0.0/8 self-check passes.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from harness.boards.board import Board
from harness.lab.traffic import percentile
from harness.lab.wire import IgmpSniffer, l2_echo, mcast_echo

GROUP = "239.1.2.3"
MCAST_PORT = 5007
L2_ETHERTYPE = 0x88B5
IGMP_TIMEOUT_S = 3.0
ECHO_TIMEOUT_S = 1.0
ECHOES = 50


def _increasing(values: list[int]) -> bool:
    return all(b > a for a, b in itertools.pairwise(values))


def test_mcast_join_echo(board: Board, lab: Any, dut_ip: str, metrics: Any) -> None:
    """The join is visible on the wire as an IGMP report; datagrams to the group are echoed."""
    sniffer = lab.host.call(IgmpSniffer, lab.host_if, timeout=10)
    try:
        asked_at = time.monotonic()
        reply = board.command(f"mcast join {GROUP}")
        assert reply.get("ok"), f"`mcast join {GROUP}` failed: {reply.get('error')}"
        seen_at = sniffer.wait_for(GROUP, dut_ip, IGMP_TIMEOUT_S)
    finally:
        sniffer.close()
    try:
        assert seen_at is not None, (
            f"no IGMP membership report for {GROUP} from {dut_ip} seen on the wire within {IGMP_TIMEOUT_S:g} s "
            "after `mcast join` (the DUT did not join the group)"
        )
        # From sending the command to reading the report: an upper bound (the report is read after the reply).
        metrics.record("igmp_report_after_join_ms", (seen_at - asked_at) * 1000, "ms", "lower")
        run = lab.host.call(mcast_echo, GROUP, MCAST_PORT, lab.addressing.host_ip, dut_ip, ECHOES, ECHO_TIMEOUT_S,
                            timeout=ECHOES * ECHO_TIMEOUT_S + 10)  # fmt: skip
        assert not run.problems, "; ".join(run.problems)
        assert run.answered == run.sent, (
            f"multicast echo: {run.sent - run.answered} of {run.sent} datagrams to {GROUP}:{MCAST_PORT} not echoed"
        )
        rtts = [rtt * 1000 for rtt in run.rtts_s]
        metrics.record("mcast_echo_rtt_p50_ms", percentile(rtts, 50), "ms", "lower")
        metrics.record("mcast_echo_rtt_p99_ms", percentile(rtts, 99), "ms", "lower")
    finally:
        board.command(f"mcast leave {GROUP}")


def test_l2_echo(board: Board, lab: Any, metrics: Any) -> None:
    """EtherType 0x88B5 frames are echoed with the DUT's receive timestamps (µs since boot, in order)."""
    reply = board.command(f"l2tap on {L2_ETHERTYPE:#06x}")
    assert reply.get("ok") and reply.get("ethertype") == L2_ETHERTYPE, f"`l2tap on` failed: {reply}"
    mac = board.ip_info()["mac"]
    try:
        run = lab.host.call(l2_echo, lab.host_if, mac, L2_ETHERTYPE, ECHOES, 64, ECHO_TIMEOUT_S,
                            timeout=ECHOES * ECHO_TIMEOUT_S + 10)  # fmt: skip
    finally:
        counters = board.command(f"l2tap off {L2_ETHERTYPE:#06x}")
        board.command(f"l2tap on {L2_ETHERTYPE:#06x}")  # the echo is on from boot: leave it so
    assert run.answered, f"no L2 echo: 0 of {run.sent} frames of EtherType {L2_ETHERTYPE:#06x} answered by {mac}"
    assert not run.problems, "; ".join(run.problems)
    assert run.answered == run.sent, f"L2 echo: {run.sent - run.answered} of {run.sent} frames not answered"
    assert counters.get("ok") and counters.get("echoed", 0) >= run.answered, f"tap counters disagree: {counters}"
    assert _increasing(run.rx_us), f"rx_us timestamps not increasing: {run.rx_us}"
    uptime_us = board.stats()["uptime_ms"] * 1000
    assert 0 < run.rx_us[-1] <= uptime_us, f"rx_us {run.rx_us[-1]} is not a time since boot (uptime {uptime_us} µs)"
    hardware = any(run.rx_hw_ns)
    if hardware:
        assert _increasing(run.rx_hw_ns), "rx_hw_ns timestamps not increasing"
    rtts = [rtt * 1e6 for rtt in run.rtts_s]
    metrics.record("l2_rtt_p50_us", percentile(rtts, 50), "us", "lower")
    metrics.record("l2_rtt_p99_us", percentile(rtts, 99), "us", "lower")
    metrics.record("l2_hw_timestamps", 1 if hardware else 0, "bool", "higher")


def test_loopback_self_check(board: Board, metrics: Any) -> None:
    """The in-RAM 127.0.0.0/8 path carries every datagram unchanged."""
    reply = board.command("loopback")
    assert reply.get("ok"), f"loopback self-check failed: {reply.get('error')} ({reply})"
    assert reply.get("received") == reply.get("sent") > 0, f"unexpected loopback reply {reply}"
    metrics.record("loopback_duration_us", reply.get("duration_us", 0), "us", "lower")
