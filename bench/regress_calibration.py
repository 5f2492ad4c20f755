"""Calibrate the regression gate: false alarms on pure noise and detection of 1/2/3/5 % steps.

For each metric, builds many synthetic series (a 10-run baseline window plus one candidate) whose noise
matches the virtual lab, and judges the candidate with the gate's own code (harness.results.regress.judge)
and default thresholds. Noise is Gaussian with the coefficient of variation measured by bench/lab_noise.py,
or, with --noise-json, resampled from the measured values themselves (keeps their real shape).

Usage: ``python bench/regress_calibration.py [--trials 4000] [--noise-json FILE] [--seed 1]``
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.results.regress import Thresholds, Verdict, judge
from harness.results.synthetic import LAB_NOISE_CV_PCT

STEPS_PCT = (1.0, 2.0, 3.0, 5.0)
DIRECTION = {"iperf3_tcp_mbps": "higher", "ping_rtt_p50_ms": "lower", "ping_rtt_avg_ms": "lower"}


def gaussian_noise(cv_pct: float, rng: random.Random) -> Callable[[], float]:
    """Relative noise factor around 1 with the given coefficient of variation."""
    return lambda: rng.gauss(1.0, cv_pct / 100)


def resampled_noise(values: list[float], rng: random.Random) -> Callable[[], float]:
    """Relative noise factor drawn from measured values (normalised by their mean)."""
    mean = statistics.fmean(values)
    factors = [v / mean for v in values]
    return lambda: rng.choice(factors)


def rates(noise: Callable[[], float], better: str, trials: int, thresholds: Thresholds) -> dict[str, float]:
    """Fraction of trials judged regressed for pure noise and for each step in the bad direction."""
    worse = -1.0 if better == "higher" else 1.0
    out = {}
    for step in (0.0, *STEPS_PCT):
        flagged = 0
        for _ in range(trials):
            window = [100.0 * noise() for _ in range(thresholds.window)]
            candidate = 100.0 * (1 + worse * step / 100) * noise()
            flagged += judge(candidate, window, better, thresholds).verdict is Verdict.REGRESSED
        out["noise" if step == 0 else f"{step:g}%"] = flagged / trials
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--noise-json", type=Path, help="measured values from bench/lab_noise.py --json")
    parser.add_argument(
        "--extra-cv",
        type=float,
        nargs="*",
        default=[0.5, 1.0],
        help="also calibrate a throughput metric with these CVs (percent), e.g. real hardware",
    )
    args = parser.parse_args()
    rng = random.Random(args.seed)
    thresholds = Thresholds()
    print(f"gate defaults: {thresholds}; {args.trials} trials per cell")
    cases: list[tuple[str, str, Callable[[], float]]] = []
    measured = json.loads(args.noise_json.read_text()) if args.noise_json else {}
    for name, better in DIRECTION.items():
        # bench/lab_noise.py names the ping figures without the "ping_" prefix.
        lab = measured.get(name) or measured.get(name.removeprefix("ping_"))
        if lab:
            cases.append(
                (
                    f"{name} (resampled lab values, CV {lab['cv_pct']:.3f} %)",
                    better,
                    resampled_noise(lab["values"], rng),
                )
            )
        cases.append(
            (
                f"{name} (Gaussian, lab CV {LAB_NOISE_CV_PCT[name]:.3f} %)",
                better,
                gaussian_noise(LAB_NOISE_CV_PCT[name], rng),
            )
        )
    for cv in args.extra_cv:
        cases.append((f"throughput (Gaussian, CV {cv:g} %)", "higher", gaussian_noise(cv, rng)))
    header = f"{'metric / noise':58s} {'false alarm':>11s} " + " ".join(f"{'det ' + f'{s:g}%':>8s}" for s in STEPS_PCT)
    print(header)
    started = time.perf_counter()
    for label, better, noise in cases:
        r = rates(noise, better, args.trials, thresholds)
        print(f"{label:58s} {100 * r['noise']:10.2f}% " + " ".join(f"{100 * r[f'{s:g}%']:7.1f}%" for s in STEPS_PCT))
    print(f"({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
