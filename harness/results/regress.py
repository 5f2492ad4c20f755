"""Noise-aware regression verdicts: a metric against the recent history of the same board, config and test.

Method (the reasoning is in docs/results.md): the baseline is the last ``window`` (default 10) accepted runs
of the same board + config fingerprint + test nodeid + metric. Its centre is the median and its spread the
Rousseeuw-Croux Qn scale estimator; both ignore up to half the window being outliers, and Qn is far more
efficient than the MAD on ten samples, which buys detection power at the same false-alarm rate. A new value
is a change when it differs from the median by more than every one of:

- ``noise_sigmas`` x Qn x sqrt(1 + pi / 2n)  (the candidate's own noise plus the median's uncertainty),
- ``min_effect_pct`` % of the median          (changes too small to matter are never flagged),
- ``min_abs_effect`` in the metric's unit     (for metrics whose median can be 0, e.g. drop counters).

The direction of the change and the metric's ``better`` give improved or regressed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

from harness.errors import ConfigError
from harness.results.store import MetricRow, Store


class Verdict(str, Enum):
    """Outcome of judging one metric of one run."""

    IMPROVED = "improved"
    UNCHANGED = "unchanged"
    REGRESSED = "regressed"
    NOT_ENOUGH_HISTORY = "not enough history"


@dataclass(frozen=True)
class Thresholds:
    """How large a change must be before it counts, for one metric.

    Attributes:
        min_effect_pct: smallest relative change (percent of the baseline median) ever reported.
        noise_sigmas: how many robust standard deviations of the baseline a change must exceed.
        min_abs_effect: smallest absolute change (in the metric's unit) ever reported.
        window: how many accepted runs form the baseline.
        min_history: fewer baseline runs than this give "not enough history".
    """

    min_effect_pct: float = 2.0
    noise_sigmas: float = 3.5
    min_abs_effect: float = 0.0
    window: int = 10
    min_history: int = 5

    def __post_init__(self) -> None:
        for name in ("min_effect_pct", "noise_sigmas", "min_abs_effect"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ConfigError(f"regress threshold {name} = {value!r}: must be a number >= 0")
        for name in ("window", "min_history"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 3:
                raise ConfigError(
                    f"regress setting {name} = {value!r}: must be an integer >= 3 "
                    "(a robust spread needs at least three runs)"
                )
        if self.min_history > self.window:
            raise ConfigError(
                f"regress min_history ({self.min_history}) is larger than window ({self.window}): "
                "no run could ever be judged; lower min_history or raise window"
            )

    @classmethod
    def from_mapping(cls, table: Mapping[str, Any], base: Thresholds | None = None, where: str = "") -> Thresholds:
        """Build from a config table, filling missing keys from ``base``; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(table) - known)
        if unknown:
            raise ConfigError(
                f"unknown key(s) {', '.join(unknown)} in [regress.thresholds{where}]; "
                f"known keys: {', '.join(sorted(known))}"
            )
        values = {f.name: getattr(base or cls(), f.name) for f in fields(cls)}
        values.update(table)
        return cls(**values)


@dataclass(frozen=True)
class ThresholdPolicy:
    """Default thresholds plus per-metric overrides (``[regress.thresholds.<metric>]`` in hil.toml)."""

    default: Thresholds = field(default_factory=Thresholds)
    per_metric: Mapping[str, Thresholds] = field(default_factory=dict)

    @classmethod
    def from_config(
        cls, thresholds: Mapping[str, Mapping[str, Any]] | None = None, defaults: Mapping[str, Any] | None = None
    ) -> ThresholdPolicy:
        """Build from plain dicts: ``{"metric": {"min_effect_pct": 2.0, ...}}`` and optional defaults."""
        default = Thresholds.from_mapping(defaults or {}, where=" defaults")
        per_metric = {}
        for metric, table in (thresholds or {}).items():
            if not isinstance(table, Mapping):
                raise ConfigError(f"[regress.thresholds.{metric}] must be a table of settings, got {table!r}")
            per_metric[metric] = Thresholds.from_mapping(table, default, where=f".{metric}")
        return cls(default, per_metric)

    def for_metric(self, name: str) -> Thresholds:
        """The thresholds that apply to metric ``name``."""
        return self.per_metric.get(name, self.default)


@dataclass(frozen=True)
class Judgement:
    """A verdict with the figures behind it."""

    verdict: Verdict
    value: float
    n_history: int
    median: float | None = None
    sigma: float | None = None
    threshold: float | None = None

    @property
    def change_pct(self) -> float | None:
        """Change from the baseline median in percent (None without a baseline or with a zero median)."""
        if self.median is None or self.median == 0:
            return None
        return 100.0 * (self.value - self.median) / abs(self.median)

    @property
    def band(self) -> tuple[float, float] | None:
        """Values inside this interval are "unchanged"."""
        if self.median is None or self.threshold is None:
            return None
        return self.median - self.threshold, self.median + self.threshold


# Finite-sample correction of Qn for n < 10 (Croux & Rousseeuw 1992); larger n use n/(n+1.4) or n/(n+3.8).
_QN_SMALL_N = {2: 0.399, 3: 0.994, 4: 0.512, 5: 0.844, 6: 0.611, 7: 0.857, 8: 0.669, 9: 0.872}


def qn_scale(values: Sequence[float]) -> float:
    """Rousseeuw-Croux Qn: a robust standard deviation (50 % breakdown, 82 % Gaussian efficiency)."""
    n = len(values)
    if n < 2:
        return 0.0
    diffs = sorted(abs(a - b) for i, a in enumerate(values) for b in values[i + 1 :])
    h = n // 2 + 1
    kth = diffs[h * (h - 1) // 2 - 1]
    correction = _QN_SMALL_N.get(n) or (n / (n + 1.4) if n % 2 else n / (n + 3.8))
    return 2.2219 * kth * correction


def judge(value: float, history: Sequence[float], better: str, thresholds: Thresholds | None = None) -> Judgement:
    """Judge ``value`` against ``history`` (the baseline window, oldest first) for a metric where ``better``."""
    thresholds = thresholds or Thresholds()
    if better not in ("higher", "lower"):
        raise ConfigError(f"metric direction {better!r}: must be 'higher' or 'lower'")
    baseline = list(history)[-thresholds.window :]
    n = len(baseline)
    if n < thresholds.min_history:
        return Judgement(Verdict.NOT_ENOUGH_HISTORY, value, n)
    median = statistics.median(baseline)
    sigma = qn_scale(baseline)
    threshold = max(
        thresholds.noise_sigmas * sigma * math.sqrt(1 + math.pi / (2 * n)),
        thresholds.min_effect_pct / 100.0 * abs(median),
        thresholds.min_abs_effect,
    )
    gain = (value - median) if better == "higher" else (median - value)
    if gain < -threshold:
        verdict = Verdict.REGRESSED
    elif gain > threshold:
        verdict = Verdict.IMPROVED
    else:
        verdict = Verdict.UNCHANGED
    return Judgement(verdict, value, n, median, sigma, threshold)


@dataclass(frozen=True)
class SeriesKey:
    """What makes values comparable: same board, lab config, test and metric."""

    board_kind: str
    board_id: str
    config_fingerprint: str
    nodeid: str
    metric: str


@dataclass(frozen=True)
class Point:
    """One run's value of a series, judged against the runs before it."""

    run_id: str
    started_epoch: float
    value: float
    unit: str
    better: str
    in_baseline: bool  # accepted run and every instance of the test passed
    judgement: Judgement


def _per_run_values(rows: Iterable[MetricRow]) -> dict[SeriesKey, list[tuple[str, float, list[MetricRow]]]]:
    """Group rows by series and run (a test repeated in one run, e.g. --count, contributes its median)."""
    grouped: dict[SeriesKey, dict[str, tuple[float, list[MetricRow]]]] = {}
    for row in rows:
        key = SeriesKey(row.board_kind, row.board_id, row.config_fingerprint, row.nodeid, row.name)
        runs = grouped.setdefault(key, {})
        runs.setdefault(row.run_id, (row.started_epoch, []))[1].append(row)
    return {
        key: sorted(((run_id, epoch, rs) for run_id, (epoch, rs) in runs.items()), key=lambda t: (t[1], t[0]))
        for key, runs in grouped.items()
    }  # type: ignore[misc]


def build_series(rows: Iterable[MetricRow], policy: ThresholdPolicy | None = None) -> dict[SeriesKey, list[Point]]:
    """Every series in ``rows`` with each point judged against the accepted, passing runs before it."""
    policy = policy or ThresholdPolicy()
    series: dict[SeriesKey, list[Point]] = {}
    for key, runs in _per_run_values(rows).items():
        thresholds = policy.for_metric(key.metric)
        baseline: list[float] = []
        points = []
        for run_id, epoch, run_rows in runs:
            value = statistics.median(r.value for r in run_rows)
            last = run_rows[-1]
            judgement = judge(value, baseline, last.better, thresholds)
            in_baseline = last.accepted and all(r.outcome == "passed" for r in run_rows)
            points.append(Point(run_id, epoch, value, last.unit, last.better, in_baseline, judgement))
            if in_baseline:
                baseline.append(value)
                del baseline[: -thresholds.window]
        series[key] = points
    return series


@dataclass(frozen=True)
class MetricVerdict:
    """The verdict of one metric of one run (a row of `hil gate`)."""

    key: SeriesKey
    unit: str
    better: str
    judgement: Judgement


def evaluate_run(store: Store, run_id: str | None = None, policy: ThresholdPolicy | None = None) -> list[MetricVerdict]:
    """Judge every metric of a run (default: the latest) against its history in ``store``."""
    run_id = store.resolve_run_id(run_id)
    info = store.run_info(run_id)
    rows = [
        r
        for r in store.metric_rows(
            board=(info["board_kind"], info["board_id"]), config_fingerprint=info["config_fingerprint"]
        )
        if r.started_epoch < info["started_epoch"] or r.run_id == run_id
    ]
    verdicts = []
    for key, points in build_series(rows, policy).items():
        for point in points:
            if point.run_id == run_id:
                verdicts.append(MetricVerdict(key, point.unit, point.better, point.judgement))
    return sorted(verdicts, key=lambda v: (v.key.nodeid, v.key.metric))


def any_regressed(verdicts: Iterable[MetricVerdict]) -> bool:
    """True when at least one metric regressed (what makes `hil gate` exit 1)."""
    return any(v.judgement.verdict is Verdict.REGRESSED for v in verdicts)
