"""The firmware's own C iperf3 server on the virtual board against the real `iperf3 -s`, side by side."""

from __future__ import annotations

import pytest

from harness.lab.traffic import iperf3
from harness.testing import needs_root

REFERENCE_PORT = 5299
SECONDS = 10


@needs_root
@pytest.mark.parametrize("direction", ["rx", "tx"])
def test_firmware_iperf3_server_matches_real_iperf3(board, lab, dut_ip, metrics, direction: str) -> None:
    """Same link, same run: the firmware's server reaches >= 98 % of what Debian's iperf3 -s reaches."""
    if board.kind != "virtual":
        pytest.skip("the reference iperf3 -s runs inside the virtual board's namespace")
    reference = lab.spawn(f"iperf3-reference-{direction}", lab.dut, ["iperf3", "-s", "-1", "-p", str(REFERENCE_PORT)])
    try:
        ours = iperf3(lab.host, dut_ip, seconds=SECONDS, reverse=direction == "tx")
        real = iperf3(lab.host, dut_ip, seconds=SECONDS, reverse=direction == "tx", port=REFERENCE_PORT)
    finally:
        reference.stop()
    ratio = ours.mbps / real.mbps
    metrics.record(f"firmware_iperf3_{direction}_mbps", ours.mbps, "Mbit/s", "higher")
    metrics.record(f"reference_iperf3_{direction}_mbps", real.mbps, "Mbit/s", "higher")
    metrics.record(f"firmware_vs_reference_iperf3_{direction}_pct", 100 * ratio, "%", "higher")
    assert ratio >= 0.98, f"firmware iperf3 server {ours.mbps:.2f} Mbit/s vs iperf3 -s {real.mbps:.2f} ({ratio:.1%})"
