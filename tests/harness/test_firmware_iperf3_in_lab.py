"""The firmware's own C iperf3 server on the virtual board against the real `iperf3 -s`, side by side."""

from __future__ import annotations

import pytest

from harness.lab.traffic import iperf3, measure_until
from harness.testing import needs_root

REFERENCE_PORT = 5299
SECONDS = 10


@needs_root
@pytest.mark.parametrize("direction", ["rx", "tx"])
def test_firmware_iperf3_server_matches_real_iperf3(board, lab, dut_ip, metrics, direction: str) -> None:
    """Same link, same run: the firmware's server reaches >= 98 % of what Debian's iperf3 -s reaches."""
    if board.kind != "virtual":
        pytest.skip("the reference iperf3 -s runs inside the virtual board's namespace")
    reference = lab.spawn(f"iperf3-reference-{direction}", ["iperf3", "-s", "-p", str(REFERENCE_PORT)], ns=lab.dut)

    def side_by_side() -> tuple[float, float]:
        ours = iperf3(lab.host, dut_ip, seconds=SECONDS, reverse=direction == "tx")
        real = iperf3(lab.host, dut_ip, seconds=SECONDS, reverse=direction == "tx", port=REFERENCE_PORT)
        return ours.mbps, real.mbps

    try:
        # A second pair only when the first misses the bar: a shared machine's stall hits one run, not both.
        pairs = measure_until(side_by_side, lambda pair: pair[0] >= 0.98 * pair[1])
    finally:
        reference.stop()
    ours_mbps, real_mbps = max(pairs, key=lambda pair: pair[0] / pair[1])
    ratio = ours_mbps / real_mbps
    metrics.record(f"firmware_iperf3_{direction}_mbps", ours_mbps, "Mbit/s", "higher")
    metrics.record(f"reference_iperf3_{direction}_mbps", real_mbps, "Mbit/s", "higher")
    metrics.record(f"firmware_vs_reference_iperf3_{direction}_pairs", len(pairs), "runs", "lower")
    metrics.record(f"firmware_vs_reference_iperf3_{direction}_pct", 100 * ratio, "%", "higher")
    detail = "; ".join(f"{ours:.2f} vs {real:.2f} Mbit/s" for ours, real in pairs)
    assert ratio >= 0.98, f"firmware iperf3 server below 98 % of iperf3 -s on every pair: {detail}"
