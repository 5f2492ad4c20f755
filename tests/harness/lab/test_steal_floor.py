"""The throughput floor a virtual board is held to on a machine whose hypervisor steals CPU time."""

from __future__ import annotations

import pytest

from harness.lab.traffic import StealMeter, steal_adjusted_floor


def test_floor_shrinks_with_the_share_of_cpu_the_hypervisor_took() -> None:
    assert steal_adjusted_floor(84.73, 0.0) == pytest.approx(84.73)
    assert steal_adjusted_floor(84.73, 12.3) == pytest.approx(84.73 * 0.877)
    # A 60 % throughput cap (the tx_cap_60pct fault) still fails unless the hypervisor took over a third.
    assert steal_adjusted_floor(84.73, 30.0) > 0.6 * 94.15


def test_nonsense_steal_readings_are_clamped() -> None:
    assert steal_adjusted_floor(80.0, -5.0) == pytest.approx(80.0)
    assert steal_adjusted_floor(80.0, 250.0) == 0.0


def test_steal_meter_reads_this_machine() -> None:
    with StealMeter() as steal:
        sum(range(100_000))
    assert 0.0 <= steal.percent <= 100.0
