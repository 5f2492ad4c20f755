"""IPv6 link-local: ping6 to the DUT's fe80:: address, the neighbour entry NDP created, RTT."""

from __future__ import annotations

import ipaddress
import json

from harness.boards.board import Board
from harness.lab.traffic import percentile, ping


def test_ipv6_link_local_ping(board: Board, lab, dut_ip: str, metrics) -> None:
    """The DUT has an fe80:: address, answers ping6 on it, and NDP resolved it to the DUT's MAC."""
    info = board.ip_info()
    address = info.get("ipv6_ll", "")
    assert address, 'the DUT reports no IPv6 link-local address (`ip` gives ipv6_ll ""): IPv6 is off on its interface'
    assert ipaddress.IPv6Address(address).is_link_local, f"ipv6_ll {address} is not a link-local (fe80::/10) address"

    result = ping(lab.host, address, count=50, interval=0.02, ipv6_iface=lab.host_if)
    metrics.record("ping6_loss_pct", result.loss_pct, "%", "lower")
    assert result.rtts_ms, f"no ping6 reply from {address}%{lab.host_if} ({result.sent} sent)"
    metrics.record("ping6_rtt_p50_ms", percentile(result.rtts_ms, 50), "ms", "lower")
    metrics.record("ping6_rtt_p99_ms", percentile(result.rtts_ms, 99), "ms", "lower")
    assert result.loss_pct == 0, f"{result.sent - result.received} of {result.sent} ping6 echoes lost"

    neighbours = json.loads(lab.host.ip("-j", "-6", "neigh", "show", "dev", lab.host_if) or "[]")
    entry = next((n for n in neighbours if n.get("dst") == address), None)
    assert entry is not None, f"no NDP neighbour entry for {address} on {lab.host_if}: {neighbours}"
    assert entry.get("lladdr", "").lower() == info["mac"].lower(), (
        f"NDP resolved {address} to {entry.get('lladdr')}, but the DUT's MAC is {info['mac']}"
    )
