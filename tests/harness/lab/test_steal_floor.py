"""The throughput floor a virtual board is held to on a machine whose hypervisor steals CPU time."""

from __future__ import annotations

import pytest

from harness.lab.traffic import STOLEN_ATTEMPT_PCT, StealMeter, measure_until, steal_adjusted_floor


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


def _attempts(rates: list[float], steals: list[float], floor: float) -> list[float]:
    seen: list[float] = []

    def measure() -> float:
        seen.append(steals[len(seen)])
        return rates[len(seen) - 1]

    return measure_until(measure, lambda rate: rate >= floor, stolen=lambda: seen[-1] >= STOLEN_ATTEMPT_PCT)


def test_a_slow_dut_is_measured_twice_and_a_stolen_attempt_does_not_count() -> None:
    assert _attempts([50.0, 50.0, 90.0], [0.0, 0.0, 0.0], floor=85.0) == [50.0, 50.0]
    assert _attempts([90.0], [30.0], floor=85.0) == [90.0]
    # Two stolen attempts do not count: the third (unstolen) one still decides.
    assert _attempts([53.6, 69.6, 90.0], [30.0, 18.1, 2.0], floor=85.0) == [53.6, 69.6, 90.0]
    # A machine stolen throughout still ends, after four attempts.
    assert _attempts([50.0] * 5, [30.0] * 5, floor=85.0) == [50.0] * 4
