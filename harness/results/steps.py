"""Step detection for `hil bisect`: where did a series of runs change level?

The model follows the one asv (airspeed velocity) uses for its regression detection: the series is piecewise
constant plus noise, and the steps are found by the l1 Potts fit

    argmin over k, breakpoints, levels of   gamma * k + sum over segments of sum |y_i - level|

(each level the median of its segment: robust to outliers). The penalty ``gamma`` is chosen by a Schwarz-type
information criterion evaluated along the family of fits, ``beta * ln(m) / m * k + ln(sigma0 + l1 / m)``, with a
small noise floor ``sigma0`` (0.1 % of the level) so a perfect fit of a noiseless series does not win by
default. The fit is exact (dynamic programming over all segmentations); a few hundred runs take under a second.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass

# Weight of the number of segments in the information criterion; chosen so ten runs of pure noise give one
# segment and a step of several noise widths over a handful of runs is found (tests/harness/results).
BETA = 3.0


@dataclass(frozen=True)
class Segment:
    """``values[start:end]`` sit at ``level`` (their median)."""

    start: int
    end: int
    level: float


def _segment_costs(values: Sequence[float]) -> list[list[float]]:
    """``cost[i][j - i - 1]``: l1 distance of ``values[i:j]`` from their median."""
    costs = []
    for i in range(len(values)):
        ordered: list[float] = []
        row = []
        for j in range(i, len(values)):
            bisect.insort(ordered, values[j])
            half = len(ordered) // 2
            # Distance from the median = (sum of the top half) - (sum of the bottom half); the middle cancels.
            row.append(sum(ordered[len(ordered) - half :]) - sum(ordered[:half]))
        costs.append(row)
    return costs


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    half = len(ordered) // 2
    return ordered[half] if len(ordered) % 2 else (ordered[half - 1] + ordered[half]) / 2


def potts_fit(values: Sequence[float], gamma: float, costs: list[list[float]] | None = None) -> list[Segment]:
    """The exact l1 Potts fit of ``values`` for penalty ``gamma`` (per segment)."""
    n = len(values)
    if n == 0:
        return []
    costs = costs or _segment_costs(values)
    best = [0.0] + [math.inf] * n
    start_of = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j):
            total = best[i] + costs[i][j - i - 1] + gamma
            if total < best[j]:
                best[j], start_of[j] = total, i
    bounds = []
    end = n
    while end > 0:
        bounds.append((start_of[end], end))
        end = start_of[end]
    return [Segment(i, j, _median(values[i:j])) for i, j in reversed(bounds)]


def detect_steps(values: Sequence[float]) -> list[Segment]:
    """Segments of ``values`` at their own levels, the number of steps chosen by the information criterion."""
    n = len(values)
    if n < 3:
        return [Segment(0, n, _median(values))] if n else []
    costs = _segment_costs(values)
    total = costs[0][n - 1]
    # Noise floor: 0.1 % of the level, the same for every candidate fit (so the criterion compares like with
    # like); below it a series counts as noiseless. asv takes a tenth of the smallest step instead, which
    # favours splitting series as quiet as our virtual lab's throughput (CV 0.2 %).
    sigma0 = max(abs(_median(values)), 1e-12) * 1e-3
    best: tuple[float, list[Segment]] | None = None
    seen: set[tuple[int, ...]] = set()
    for exponent in range(-40, 41):
        gamma = total * 1.25**exponent / 8 if total else sigma0
        fit = potts_fit(values, gamma, costs)
        key = tuple(s.end for s in fit)
        if key in seen:
            continue
        seen.add(key)
        l1 = sum(costs[s.start][s.end - s.start - 1] for s in fit)
        criterion = BETA * math.log(n) / n * len(fit) + math.log(sigma0 + l1 / n)
        if best is None or criterion < best[0]:
            best = (criterion, fit)
    assert best is not None
    return best[1]
