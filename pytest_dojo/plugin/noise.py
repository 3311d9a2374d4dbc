"""Noise-aware comparison of wall-clock rounds: is the new step really slower than the old one?

Measured step times on a shared host are noisy, so a fixed percentage alone either cries wolf or
misses real slowdowns. A wall-clock regression needs all three:

1. the median step time rose by more than the tolerance ``max_regression_pct``;
2. that rise exceeds :data:`SIGMAS` standard errors of the difference of the medians, estimated
   from each side's spread (1.4826 x median absolute deviation, the normal-consistent robust
   sigma; the median's standard error is ~1.2533 sigma / sqrt(n));
3. a one-sided Mann-Whitney rank test says the new rounds are slower, p < :data:`ALPHA`
   (exact distribution of U for small samples, normal approximation above
   :data:`EXACT_LIMIT` pairs; rounds are floats, so ties are not corrected for).

Units: seconds per step. ``pytest-dojo noise-study`` measures the false-alarm rate on an
unchanged step and the detection of a planted slowdown on this machine.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

ALPHA = 0.01
SIGMAS = 3.0
"""Chosen with ``pytest-dojo noise-study`` (docs/gating.md, "Measured behaviour"): on a
shared 2-core host, 15 rounds on thread CPU time, (3, 0.01) kept false alarms at 1.7-2.5 % while
(2, 0.05) rose to 8 % under load, for detection of +20 % of 77-85 % against 92 %."""
EXACT_LIMIT = 2500
MAD_TO_SIGMA = 1.4826
MEDIAN_STANDARD_ERROR = 1.2533


@dataclass(frozen=True, kw_only=True)
class NoiseVerdict:
    """Outcome of :func:`compare_rounds`; times in seconds, changes in percent."""

    old_median_s: float
    new_median_s: float
    slowdown_pct: float
    noise_floor_pct: float
    max_regression_pct: float
    p_value: float
    regressed: bool

    def describe(self) -> str:
        return (
            f"median {self.old_median_s * 1e3:.3g} -> {self.new_median_s * 1e3:.3g} ms ({self.slowdown_pct:+.1f}%),"
            f" allowed max({self.max_regression_pct:g}%, noise {self.noise_floor_pct:.1f}%),"
            f" rank test p={self.p_value:.3g}"
        )


def robust_sigma(values: Sequence[float]) -> float:
    """1.4826 x the median absolute deviation: sigma of a normal sample, robust to outliers."""
    center = statistics.median(values)
    return MAD_TO_SIGMA * statistics.median(abs(value - center) for value in values)


@cache
def _u_counts(m: int, n: int) -> tuple[int, ...]:
    """Number of orderings of m X and n Y giving each value of U (pairs with X < Y)."""
    if m == 0 or n == 0:
        return (1,)
    with_x_last = _u_counts(m - 1, n)  # largest is an X: it is below no Y
    with_y_last = _u_counts(m, n - 1)  # largest is a Y: every X is below it, U gains m
    counts = [0] * (m * n + 1)
    for u, count in enumerate(with_x_last):
        counts[u] += count
    for u, count in enumerate(with_y_last):
        counts[u + m] += count
    return tuple(counts)


def mann_whitney_greater(old: Sequence[float], new: Sequence[float]) -> float:
    """One-sided p-value that ``new`` tends to be larger than ``old`` (Mann-Whitney U)."""
    m, n = len(old), len(new)
    u = sum(1 for a in old for b in new if a < b) + 0.5 * sum(1 for a in old for b in new if a == b)
    if m * n <= EXACT_LIMIT:
        counts = _u_counts(m, n)
        total = sum(counts)
        return sum(counts[math.ceil(u) :]) / total
    mean = m * n / 2
    sigma = math.sqrt(m * n * (m + n + 1) / 12)
    z = (u - 0.5 - mean) / sigma
    return 0.5 * math.erfc(z / math.sqrt(2))


def compare_rounds(
    old_round_s: Sequence[float],
    new_round_s: Sequence[float],
    max_regression_pct: float,
    *,
    sigmas: float = SIGMAS,
    alpha: float = ALPHA,
) -> NoiseVerdict:
    """Apply the three-part rule of this module to two samples of step times (seconds).

    ``sigmas`` and ``alpha`` are the rule's constants, open for studies of its trade-off.
    """
    old_median = statistics.median(old_round_s)
    new_median = statistics.median(new_round_s)
    standard_error = MEDIAN_STANDARD_ERROR * math.sqrt(
        robust_sigma(old_round_s) ** 2 / len(old_round_s) + robust_sigma(new_round_s) ** 2 / len(new_round_s)
    )
    slowdown = (new_median / old_median - 1) * 100
    noise_floor = sigmas * standard_error / old_median * 100
    p_value = mann_whitney_greater(old_round_s, new_round_s)
    regressed = slowdown > max_regression_pct and slowdown > noise_floor and p_value < alpha
    return NoiseVerdict(
        old_median_s=old_median,
        new_median_s=new_median,
        slowdown_pct=slowdown,
        noise_floor_pct=noise_floor,
        max_regression_pct=max_regression_pct,
        p_value=p_value,
        regressed=regressed,
    )


def comparable_clock(old_entry: Mapping[str, Any], new_entry: Mapping[str, Any]) -> str:
    """Which rounds of two wall-clock entries to compare: thread CPU time when both ran on one torch
    thread and recorded it (other processes cannot inflate it), else wall-clock time."""
    single_threaded = old_entry.get("threads") == 1 and new_entry.get("threads") == 1
    if single_threaded and old_entry.get("round_cpu_s") and new_entry.get("round_cpu_s"):
        return "round_cpu_s"
    return "round_s"
