"""Robustness: malformed and hostile traffic from the lab (harness/lab/robustness.py's table), one test per
case. After each, the DUT still answers ping and HTTP, did not crash (the plugin checks the console),
and its receive counter saw the frames."""

from __future__ import annotations

import time

import pytest

from harness.boards.board import Board
from harness.errors import DutTimeoutError, LabError
from harness.lab.http_client import HttpConnection
from harness.lab.robustness import CASES, Case, send_case
from harness.lab.traffic import ping

CALL_TIMEOUT_S = 60
SETTLE_S = 0.05
SETTLE_MAX_S = 5.0


def _http_alive(dut_ip: str) -> int:
    with HttpConnection(dut_ip, timeout=5) as conn:
        return conn.get("/stats", keep_alive=False).status


def _absorbed(board: Board) -> None:
    """Wait until the DUT has taken in what the case sent: its receive counter stands still.

    A DUT that processes fewer frames per second than the wire carries is still working through a flood when
    the last frame left the lab; the checks below are about afterwards.
    """
    deadline = time.monotonic() + SETTLE_MAX_S
    last = board.stats()["rx_frames"]
    while time.monotonic() < deadline:
        time.sleep(SETTLE_S)  # the interval over which "stands still" is judged
        now = board.stats()["rx_frames"]
        if now == last:
            return
        last = now


# smoltcp keeps 8 neighbours and evicts the oldest for every new ARP sender; an IP packet from an evicted
# neighbour does not re-add it, and a reply to it is dropped while smoltcp asks ARP again (it keeps no packet
# awaiting resolution). Measured with the lab host's entry for the DUT reachable: the first echo is lost.
NEIGHBOUR_EVICTED = pytest.mark.known_behaviour(
    "smoltcp", ("0.12.",),
    "the storm's 20 senders evict the lab host from smoltcp's 8-entry neighbour cache, and the reply to the "
    "first echo is dropped while smoltcp resolves the host again: smoltcp keeps no packet awaiting ARP "
    "resolution (RFC 1122 2.3.2.2 says it SHOULD keep at least one), so 1 of the 3 echoes is lost",
)  # fmt: skip
KNOWN_BEHAVIOURS = {"arp_storm": NEIGHBOUR_EVICTED}


@pytest.mark.parametrize("case", [pytest.param(case, id=case.name, marks=KNOWN_BEHAVIOURS.get(case.name, ()))
                                  for case in CASES])  # fmt: skip
def test_robustness(board: Board, lab, dut_ip: str, metrics, case: Case) -> None:
    """Send the case's frames; the DUT must still answer and must have received them."""
    # The lab host has just talked to the DUT, as a peer under attack would have, and its neighbour entry for
    # the DUT stays fresh (pinned) until the echoes below: it sends them without asking ARP first, every time.
    assert ping(lab.host, dut_ip, count=1).received == 1, f"before {case.name}: the DUT does not answer ping"
    with lab.dut_neighbour_pinned(dut_ip, board.hello["mac"]):
        before = board.stats()
        mtu = None
        if case.mtu is not None:
            mtu = lab.link.mtu
            lab.host.ip("link", "set", "dev", lab.host_if, "mtu", str(case.mtu))
        try:
            sent = lab.host.call(send_case, case, lab.host_if, dut_ip, board.hello["mac"], lab.addressing.host_ip,
                                 timeout=CALL_TIMEOUT_S)  # fmt: skip
        finally:
            if mtu is not None:
                lab.host.ip("link", "set", "dev", lab.host_if, "mtu", str(mtu))
        _absorbed(board)
        metrics.record("robustness_packets_sent", sent.packets, "packets", "higher")
        if case.name == "syn_flood":
            metrics.record("robustness_syn_flood_pps", sent.rate_pps, "packets/s", "higher")

        echoes = ping(lab.host, dut_ip, count=3, interval=0.01)
        assert echoes.received == echoes.sent, f"after {case.name}: {echoes.sent - echoes.received} of 3 pings lost"
    try:
        status = lab.host.call(_http_alive, dut_ip, timeout=CALL_TIMEOUT_S)
    except (LabError, DutTimeoutError) as exc:
        raise AssertionError(f"after {case.name} the DUT no longer serves HTTP: {exc}") from exc
    assert status == 200, f"after {case.name}: GET /stats answered HTTP {status}"
    after = board.stats()
    received = after["rx_frames"] - before["rx_frames"]
    if case.reaches_dut:
        assert received >= sent.packets, (
            f"{case.name}: sent {sent.packets} frames but the DUT's rx_frames grew by {received} only"
        )
