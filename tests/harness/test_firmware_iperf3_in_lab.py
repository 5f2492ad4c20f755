"""The firmware's own C iperf3 server against the real `iperf3 -s`, side by side on the lab's shaped cable and the
same (kernel) stack, so the comparison is of the two servers alone (the stacks are compared in
test_smoltcp_benchmark.py)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from harness.lab.traffic import iperf3, measure_until
from harness.lab.veth import VethLab
from harness.services_program import ServicesProgram
from harness.testing import needs_root

FIRMWARE_PORT = 5201
REFERENCE_PORT = 5299
SECONDS = 10

pytestmark = [needs_root, pytest.mark.skipif(shutil.which("iperf3") is None, reason="needs iperf3")]


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[VethLab, str]]:
    """The lab with both servers in its DUT namespace: the firmware's (the board's sizes) and Debian's."""
    with VethLab() as lab:
        dut_ip = lab.address_dut()
        reference = lab.spawn("iperf3-reference", ["iperf3", "-s", "-p", str(REFERENCE_PORT)], ns=lab.dut)
        try:
            with ServicesProgram(["--iperf3", str(FIRMWARE_PORT)], sanitized=False, certs=False, mac=None,
                                 netns=lab.dut.name):  # fmt: skip
                yield lab, dut_ip
        finally:
            reference.stop()


@pytest.mark.parametrize("direction", ["rx", "tx"])
def test_firmware_iperf3_server_matches_real_iperf3(served: tuple[VethLab, str], direction: str) -> None:
    """Same link, same stack: the firmware's server reaches >= 98 % of what Debian's iperf3 -s reaches."""
    lab, dut_ip = served

    def side_by_side() -> tuple[float, float]:
        ours = iperf3(lab.host, dut_ip, seconds=SECONDS, reverse=direction == "tx", port=FIRMWARE_PORT)
        real = iperf3(lab.host, dut_ip, seconds=SECONDS, reverse=direction == "tx", port=REFERENCE_PORT)
        return ours.mbps, real.mbps

    # A second pair only when the first misses the bar: a shared machine's stall hits one run, not both.
    pairs = measure_until(side_by_side, lambda pair: pair[0] >= 0.98 * pair[1])
    ours_mbps, real_mbps = max(pairs, key=lambda pair: pair[0] / pair[1])
    print(f"\n{direction}: firmware iperf3 server {ours_mbps:.2f} Mbit/s, iperf3 -s {real_mbps:.2f} Mbit/s")
    detail = "; ".join(f"{ours:.2f} vs {real:.2f} Mbit/s" for ours, real in pairs)
    assert ours_mbps >= 0.98 * real_mbps, f"firmware iperf3 server below 98 % of iperf3 -s on every pair: {detail}"
