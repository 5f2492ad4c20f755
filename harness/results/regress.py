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

import itertools
import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
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


def allowed_change(reference: float, sigma: float, n: int, thresholds: Thresholds) -> float:
    """The noise model: how far from ``reference`` a value may be and still be "unchanged".

    ``sigma`` is the robust spread (Qn) of ``n`` baseline values (0 and 0 when there is no history: then only
    the minimum effect sizes apply).
    """
    noise = thresholds.noise_sigmas * sigma * math.sqrt(1 + math.pi / (2 * n)) if n else 0.0
    return max(noise, thresholds.min_effect_pct / 100.0 * abs(reference), thresholds.min_abs_effect)


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
    threshold = allowed_change(median, sigma, n, thresholds)
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
    """What makes values comparable: same board, lab config, test and metric, on one branch."""

    board_kind: str
    board_id: str
    config_fingerprint: str
    nodeid: str
    metric: str
    branch: str = ""


@dataclass(frozen=True)
class Point:
    """One run's value of a series, judged against the runs before it."""

    run_id: str
    started_epoch: float
    value: float
    unit: str
    better: str
    in_baseline: bool  # accepted, not interrupted, and every instance of the test passed
    judgement: Judgement
    commit: str | None = None


def _series_key(row: MetricRow) -> SeriesKey:
    return SeriesKey(row.board_kind, row.board_id, row.config_fingerprint, row.nodeid, row.name, row.branch)


def _per_run_values(
    rows: Iterable[MetricRow], key_of: Callable[[MetricRow], Any] = _series_key
) -> dict[Any, list[tuple[str, float, list[MetricRow]]]]:
    """Group rows by series and run (a test repeated in one run, e.g. with --repeat, contributes its median)."""
    grouped: dict[Any, dict[str, tuple[float, list[MetricRow]]]] = {}
    for row in rows:
        runs = grouped.setdefault(key_of(row), {})
        runs.setdefault(row.run_id, (row.started_epoch, []))[1].append(row)
    return {
        key: sorted(((run_id, epoch, rs) for run_id, (epoch, rs) in runs.items()), key=lambda t: (t[1], t[0]))
        for key, runs in grouped.items()
    }  # type: ignore[misc]


def _in_baseline(run_rows: Sequence[MetricRow]) -> bool:
    """Whether a run's value of a series may serve as a baseline for later runs."""
    last = run_rows[-1]
    return last.accepted and not last.interrupted and all(r.outcome == "passed" for r in run_rows)


def build_series(rows: Iterable[MetricRow], policy: ThresholdPolicy | None = None) -> dict[SeriesKey, list[Point]]:
    """Every series in ``rows`` with each point judged against the baseline runs before it (see _in_baseline)."""
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
            in_baseline = _in_baseline(run_rows)
            points.append(Point(run_id, epoch, value, last.unit, last.better, in_baseline, judgement, last.commit))
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


def baselines(history: Iterable[MetricRow]) -> dict[tuple[str, str], list[float]]:
    """Per (test, metric): the per-run values of the runs that may serve as a baseline, oldest first."""
    return {
        key: [statistics.median(r.value for r in run_rows) for _, _, run_rows in runs if _in_baseline(run_rows)]
        for key, runs in _per_run_values(history, lambda r: (r.nodeid, r.name)).items()
    }


def judge_rows(
    candidate: Iterable[MetricRow], history: Iterable[MetricRow], policy: ThresholdPolicy | None = None
) -> list[MetricVerdict]:
    """Judge a run's metric rows against history rows (any branch; the caller chose which runs count).

    Metrics of a test cut short by an interrupt are partial figures: they are not judged.
    """
    policy = policy or ThresholdPolicy()
    windows = baselines(history)
    verdicts = []
    complete = (r for r in candidate if r.outcome != "interrupted")
    for (nodeid, name), runs in _per_run_values(complete, lambda r: (r.nodeid, r.name)).items():
        _, _, rows = runs[-1]
        last = rows[-1]
        value = statistics.median(r.value for r in rows)
        key = SeriesKey(last.board_kind, last.board_id, last.config_fingerprint, nodeid, name, last.branch)
        judgement = judge(value, windows.get((nodeid, name), []), last.better, policy.for_metric(name))
        verdicts.append(MetricVerdict(key, last.unit, last.better, judgement))
    return sorted(verdicts, key=lambda v: (v.key.nodeid, v.key.metric))


def history_rows(store: Store, run: dict[str, Any], base_branch: str | None = None) -> list[MetricRow]:
    """The runs a run is judged against: same board and config, on ``base_branch`` (default: the run's own
    branch), started before it."""
    branch = run["branch"] if base_branch is None else base_branch
    return [
        row
        for row in store.metric_rows(
            board=(run["board_kind"], run["board_id"]), config_fingerprint=run["config_fingerprint"], branch=branch
        )
        if row.started_epoch < run["started_epoch"] and row.run_id != run["run_id"]
    ]


def evaluate_run(
    store: Store, run_id: str | None = None, policy: ThresholdPolicy | None = None, base_branch: str | None = None
) -> list[MetricVerdict]:
    """Judge every metric of a stored run (default: the latest) against its history in ``store``."""
    info = store.run_info(store.resolve_run_id(run_id))
    candidate = store.metric_rows(run_id=info["run_id"])
    return judge_rows(candidate, history_rows(store, info, base_branch), policy)


@dataclass(frozen=True)
class Comparison:
    """One metric of two runs side by side (`hil compare`), judged with the gate's noise model.

    ``allowed`` is the change the noise model lets through: the larger of what each run's own history (same
    branch, board and config, before the run) allows around A's value, and at least the minimum effect sizes.
    """

    nodeid: str
    metric: str
    unit: str
    better: str
    a: float | None
    b: float | None
    allowed: float | None
    n_history: int

    @property
    def delta(self) -> float | None:
        """B - A."""
        return None if self.a is None or self.b is None else self.b - self.a

    @property
    def delta_pct(self) -> float | None:
        """B - A in percent of A."""
        return None if self.delta is None or not self.a else 100.0 * self.delta / abs(self.a)

    @property
    def verdict(self) -> str:
        """``better``/``worse`` (beyond the noise allowance), ``within noise``, ``only in A``/``only in B``."""
        if self.delta is None:
            return "only in A" if self.b is None else "only in B"
        gain = self.delta if self.better == "higher" else -self.delta
        if self.allowed is not None and abs(gain) <= self.allowed:
            return "within noise"
        return "better" if gain > 0 else "worse"


def compare_runs(store: Store, run_a: str, run_b: str, policy: ThresholdPolicy | None = None) -> list[Comparison]:
    """Every metric of two stored runs, B against A, with the gate's noise allowance; worse first."""
    policy = policy or ThresholdPolicy()
    infos = [store.run_info(store.resolve_run_id(run)) for run in (run_a, run_b)]
    values, windows = [], []
    for info in infos:
        runs = _per_run_values(store.metric_rows(run_id=info["run_id"]), lambda r: (r.nodeid, r.name))
        values.append(
            {key: (statistics.median(r.value for r in rows[-1][2]), rows[-1][2][-1]) for key, rows in runs.items()}
        )
        windows.append(baselines(history_rows(store, info)))
    comparisons = []
    for key in sorted(set(values[0]) | set(values[1])):
        a, b = values[0].get(key), values[1].get(key)
        row = (a or b)[1]  # type: ignore[index]
        thresholds = policy.for_metric(key[1])
        allowed = None
        n = 0
        if a is not None:
            allowed = 0.0
            for window in windows:
                history = window.get(key, [])[-thresholds.window :]
                n = max(n, len(history))
                sigma = qn_scale(history) if len(history) >= 3 else 0.0
                allowed = max(allowed, allowed_change(a[0], sigma, len(history) if sigma else 0, thresholds))
        comparisons.append(Comparison(key[0], key[1], row.unit, row.better, a and a[0], b and b[0], allowed, n))
    order = {"worse": 0, "better": 1, "only in A": 2, "only in B": 3, "within noise": 4}
    return sorted(comparisons, key=lambda c: (order[c.verdict], c.nodeid, c.metric))


@dataclass(frozen=True)
class Step:
    """The first run at which a metric's level changed between two runs (`hil bisect`)."""

    nodeid: str
    metric: str
    unit: str
    better: str
    run_id: str
    commit: str | None
    before: float
    after: float
    runs_before: int
    runs_after: int

    @property
    def change_pct(self) -> float | None:
        """Change of level in percent of the level before."""
        return 100.0 * (self.after - self.before) / abs(self.before) if self.before else None

    @property
    def direction(self) -> str:
        """``worse`` or ``better`` for this metric."""
        gain = self.after - self.before if self.better == "higher" else self.before - self.after
        return "better" if gain > 0 else "worse"


def bisect_runs(
    store: Store,
    good: str,
    bad: str,
    policy: ThresholdPolicy | None = None,
    metric: str | None = None,
    test: str | None = None,
) -> tuple[list[Step], int, int]:
    """Find, per metric, the first run between ``good`` and ``bad`` (inclusive) where its level stepped.

    The runs are those of ``bad``'s branch, board and config, accepted and not interrupted; the levels come
    from :func:`harness.results.steps.detect_steps` (asv's l1 Potts model), and a step smaller than the gate's
    minimum effect for that metric is not reported.

    Returns:
        ``(steps, series, runs)``: the steps found, how many series and how many runs were searched.
    """
    from harness.results.steps import detect_steps

    policy = policy or ThresholdPolicy()
    first, last = (store.run_info(store.resolve_run_id(run)) for run in (good, bad))
    if first["started_epoch"] > last["started_epoch"]:
        first, last = last, first
    rows = [
        r
        for r in store.metric_rows(
            board=(last["board_kind"], last["board_id"]),
            config_fingerprint=last["config_fingerprint"],
            branch=last["branch"],
        )
        if first["started_epoch"] <= r.started_epoch <= last["started_epoch"]
        and r.accepted
        and not r.interrupted
        and (metric is None or r.name == metric)
        and (test is None or test in r.nodeid)
    ]
    steps = []
    grouped = _per_run_values(rows, lambda r: (r.nodeid, r.name))
    for (nodeid, name), runs in sorted(grouped.items()):
        values = [statistics.median(r.value for r in run_rows) for _, _, run_rows in runs]
        thresholds = policy.for_metric(name)
        segments = detect_steps(values)
        for before, after in itertools.pairwise(segments):
            allowed = max(thresholds.min_effect_pct / 100.0 * abs(before.level), thresholds.min_abs_effect)
            if abs(after.level - before.level) <= allowed:
                continue
            run_id, _, run_rows = runs[after.start]
            last_row = run_rows[-1]
            steps.append(
                Step(nodeid, name, last_row.unit, last_row.better, run_id, last_row.commit, before.level,
                     after.level, before.end - before.start, after.end - after.start)
            )  # fmt: skip
            break
    return steps, len(grouped), len({r.run_id for r in rows})
