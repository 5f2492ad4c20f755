"""Regression verdicts: the method on hand-made windows, thresholds from config, series building."""

from __future__ import annotations

import statistics

import pytest

from harness.errors import ConfigError
from harness.results.regress import ThresholdPolicy, Thresholds, Verdict, build_series, judge, qn_scale
from harness.results.store import MetricRow

WINDOW = [100.0, 100.2, 99.9, 100.1, 99.8, 100.0, 100.3, 99.7, 100.1, 99.9]


def test_qn_matches_the_definition_and_ignores_outliers() -> None:
    # n=4: h=3, k=3 -> third smallest pairwise distance of {0,1,2,10} = {1,1,2,...} -> 2; 2.2219 * 2 * 0.512
    assert qn_scale([0, 1, 2, 10]) == pytest.approx(2.2219 * 2 * 0.512)
    spoiled = [*WINDOW[:-2], 50.0, 400.0]
    assert qn_scale(spoiled) < 3 * qn_scale(WINDOW)
    assert qn_scale([5.0]) == 0.0


def test_direction_decides_regressed_or_improved() -> None:
    assert judge(97.0, WINDOW, "higher").verdict is Verdict.REGRESSED
    assert judge(103.0, WINDOW, "higher").verdict is Verdict.IMPROVED
    assert judge(103.0, WINDOW, "lower").verdict is Verdict.REGRESSED
    assert judge(97.0, WINDOW, "lower").verdict is Verdict.IMPROVED
    assert judge(100.2, WINDOW, "higher").verdict is Verdict.UNCHANGED


def test_min_effect_floors_tiny_but_significant_changes() -> None:
    quiet = [100.0 + 0.001 * i for i in range(10)]
    assert judge(99.0, quiet, "higher").verdict is Verdict.UNCHANGED  # -1 % < 2 % floor, though many sigmas
    assert judge(99.0, quiet, "higher", Thresholds(min_effect_pct=0.5)).verdict is Verdict.REGRESSED


def test_noise_widens_the_band() -> None:
    noisy = [100, 90, 110, 95, 105, 92, 108, 97, 103, 100]
    result = judge(88.0, noisy, "higher")
    assert result.verdict is Verdict.UNCHANGED
    assert result.threshold > 12 and result.band[0] < 88 < result.band[1]


def test_not_enough_history_and_window() -> None:
    assert judge(50.0, WINDOW[:4], "higher").verdict is Verdict.NOT_ENOUGH_HISTORY
    assert judge(50.0, WINDOW[:4], "higher", Thresholds(min_history=3)).verdict is Verdict.REGRESSED
    old_then_new = [50.0] * 10 + WINDOW  # only the newest 10 count
    result = judge(100.0, old_then_new, "higher")
    assert result.n_history == 10 and result.median == statistics.median(WINDOW)


def test_zero_median_uses_the_absolute_floor() -> None:
    drops = [0.0] * 10
    assert judge(0.0, drops, "lower").verdict is Verdict.UNCHANGED
    assert judge(3.0, drops, "lower").verdict is Verdict.REGRESSED
    assert judge(3.0, drops, "lower", Thresholds(min_abs_effect=5)).verdict is Verdict.UNCHANGED
    assert judge(3.0, drops, "lower").change_pct is None


def test_policy_from_config_dicts() -> None:
    policy = ThresholdPolicy.from_config(
        {"ping_rtt_p99_ms": {"min_effect_pct": 25.0, "noise_sigmas": 4}}, defaults={"window": 12}
    )
    assert policy.for_metric("ping_rtt_p99_ms") == Thresholds(min_effect_pct=25.0, noise_sigmas=4, window=12)
    assert policy.for_metric("iperf3_tcp_mbps") == Thresholds(window=12)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"m": {"min_efect_pct": 1}}, "unknown key.*min_efect_pct"),
        ({"m": {"noise_sigmas": -1}}, "must be a number >= 0"),
        ({"m": {"window": 2}}, "integer >= 3"),
        ({"m": {"window": 5, "min_history": 8}}, "larger than window"),
        ({"m": 3}, "must be a table"),
    ],
)
def test_bad_thresholds_are_config_errors(table: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ThresholdPolicy.from_config(table)


def _row(run: int, value: float, *, accepted: bool = True, outcome: str = "passed") -> MetricRow:
    return MetricRow(
        f"r{run:02d}", float(run), "virtual", "b1", "cfg", accepted, "t::x", outcome, "tput", value, "Mbit/s", "higher"
    )


def test_baseline_skips_rejected_runs_and_failed_tests() -> None:
    rows = [_row(i, 100.0 + (i % 3) * 0.1) for i in range(8)]
    rows += [_row(8, 50.0, accepted=False), _row(9, 40.0, outcome="failed"), _row(10, 100.1)]
    (points,) = build_series(rows).values()
    assert [p.in_baseline for p in points][-3:] == [False, False, True]
    assert points[8].judgement.verdict is Verdict.REGRESSED
    assert points[10].judgement.verdict is Verdict.UNCHANGED  # the 50 and 40 never entered the baseline
    assert points[10].judgement.n_history == 8


def test_repeated_test_in_one_run_counts_once_as_its_median() -> None:
    rows = [_row(i, 100.0) for i in range(6)] + [_row(6, 90.0), _row(6, 100.0), _row(6, 101.0)]
    (points,) = build_series(rows).values()
    assert len(points) == 7 and points[-1].value == 100.0
