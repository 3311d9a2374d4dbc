"""``pytest-dojo noise-study``: how the wall-clock rule of :mod:`pytest_dojo.plugin.noise` behaves here.

``pytest-dojo noise-study [--pairs N] [--rounds R] [--slowdowns 10,20,50]`` times a small MLP
training step (torch, 1 thread) as the ``dojo_wallclock`` fixture does, in pairs of runs:

* unchanged: both runs time the same step; every "regression" is a false alarm;
* planted: the second run's step also spins for ``PCT`` % of the unchanged step's CPU time (for
  each of ``--slowdowns``): extra work, as slower code would do; every miss is a missed detection.

Both clocks are compared: wall-clock (``perf_counter``) and the calling thread's CPU time
(``thread_time``), which other processes on the machine cannot inflate.

It prints the false-alarm and detection rates at the fixture's default tolerance, with the medians
and spreads seen. Figures depend on the machine and its load: rerun it where CI runs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pytest_dojo.cli.common import add_command
from pytest_dojo.plugin.noise import ALPHA, SIGMAS, compare_rounds, robust_sigma

TOLERANCE_PCT = 5.0
CLOCKS = ("wall", "cpu")
RULES = ((3.0, 0.01), (2.0, 0.05), (1.0, 0.05), (0.0, 0.05), (0.0, 0.2))
"""(noise-floor sigmas, rank-test alpha) pairs compared; the module's default is marked."""


def _rounds(step: Callable[[], None], rounds: int, warmup_rounds: int) -> dict[str, list[float]]:
    """Seconds per round on both clocks: ``wall`` (perf_counter) and ``cpu`` (this thread's CPU time)."""
    times: dict[str, list[float]] = {clock: [] for clock in CLOCKS}
    for index in range(warmup_rounds + rounds):
        start, cpu_start = time.perf_counter(), time.thread_time()
        step()
        if index >= warmup_rounds:
            times["wall"].append(time.perf_counter() - start)
            times["cpu"].append(time.thread_time() - cpu_start)
    return times


def register(commands: Any) -> None:
    from pytest_dojo.plugin.wallclock import DEFAULT_ROUNDS

    parser = add_command(
        commands, "noise-study", run, summary="false alarms and detections of the wall-clock rule here", doc=__doc__
    )
    parser.add_argument("--pairs", type=int, default=40, help="pairs of runs (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="rounds per run (default: %(default)s)")
    parser.add_argument(
        "--slowdowns", default="10,20,50", help="planted slowdowns in percent, comma separated. Default: 10,20,50"
    )
    parser.add_argument("--tolerance", type=float, default=TOLERANCE_PCT, help="max regression in percent")


def _slowed(step: Callable[[], None], extra_cpu_s: float) -> Callable[[], None]:
    """``step`` followed by ``extra_cpu_s`` of busy CPU time: extra work, as slower code would do."""

    def run_slowed() -> None:
        step()
        end = time.thread_time() + extra_cpu_s
        while time.thread_time() < end:
            pass

    return run_slowed


@dataclass
class _Tally:
    """Counts over the pairs: false alarms and detections per (clock, rule), spreads and medians."""

    cases: list[tuple[str, str]]
    slowdowns: list[float]
    false_alarms: dict[tuple[str, str], int] = field(default_factory=dict)
    detections: dict[tuple[tuple[str, str], float], int] = field(default_factory=dict)
    spreads: dict[str, list[float]] = field(default_factory=lambda: {clock: [] for clock in CLOCKS})
    medians: list[float] = field(default_factory=list)

    def add_pair(
        self,
        rules: dict[str, tuple[float, float]],
        old: dict[str, list[float]],
        same: dict[str, list[float]],
        slower: dict[float, dict[str, list[float]]],
        tolerance: float,
    ) -> None:
        for clock, rule in self.cases:
            sigmas, alpha = rules[rule]
            verdict = compare_rounds(old[clock], same[clock], tolerance, sigmas=sigmas, alpha=alpha)
            self.false_alarms[clock, rule] = self.false_alarms.get((clock, rule), 0) + verdict.regressed
            for percent in self.slowdowns:
                verdict = compare_rounds(old[clock], slower[percent][clock], tolerance, sigmas=sigmas, alpha=alpha)
                key = ((clock, rule), percent)
                self.detections[key] = self.detections.get(key, 0) + verdict.regressed
        for clock in CLOCKS:
            self.spreads[clock].append(robust_sigma(old[clock]) / statistics.median(old[clock]) * 100)
        self.medians.append(statistics.median(old["wall"]))


def run(arguments: argparse.Namespace) -> int:
    import torch

    from pytest_dojo.plugin.wallclock import DEFAULT_WARMUP_ROUNDS, make_real_step

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 256))
    step = make_real_step(model, torch.randn(64, 256))
    baseline_cpu = statistics.median(_rounds(step, 21, 3)["cpu"])
    slowdowns = [float(text) for text in arguments.slowdowns.split(",")]
    planted = {percent: _slowed(step, baseline_cpu * percent / 100) for percent in slowdowns}
    rules = {f"{sigmas:g} SE, p<{alpha:g}": (sigmas, alpha) for sigmas, alpha in RULES}
    tally = _Tally(cases=[(clock, rule) for clock in CLOCKS for rule in rules], slowdowns=slowdowns)
    for pair in range(arguments.pairs):
        old = _rounds(step, arguments.rounds, DEFAULT_WARMUP_ROUNDS)
        same = _rounds(step, arguments.rounds, DEFAULT_WARMUP_ROUNDS)
        slower = {percent: _rounds(run, arguments.rounds, DEFAULT_WARMUP_ROUNDS) for percent, run in planted.items()}
        tally.add_pair(rules, old, same, slower, arguments.tolerance)
        if (pair + 1) % 10 == 0:
            print(f"  {pair + 1}/{arguments.pairs} pairs", flush=True)
    _print(tally, rules, arguments, baseline_cpu)
    return 0


def _print(tally: _Tally, rules: dict[str, tuple[float, float]], arguments: argparse.Namespace, cpu_s: float) -> None:
    print(
        f"step: median {statistics.median(tally.medians) * 1e3:.3f} ms wall, {cpu_s * 1e3:.3f} ms CPU; "
        f"{arguments.rounds} rounds per run, {arguments.pairs} pairs, tolerance {arguments.tolerance:g}%"
    )
    for clock in CLOCKS:
        spreads = tally.spreads[clock]
        print(
            f"{clock:>4} clock: robust spread (1.4826 MAD / median) median {statistics.median(spreads):.1f}%"
            f" (max {max(spreads):.1f}%)"
        )
    print("clock  rule ('*' = default) | false alarms | planted slowdowns detected")
    for clock, rule in tally.cases:
        marker = "*" if rules[rule] == (SIGMAS, ALPHA) else " "
        found = "  ".join(
            f"+{percent:g}%: {tally.detections[(clock, rule), percent] / arguments.pairs * 100:5.1f}%"
            for percent in tally.slowdowns
        )
        alarms = tally.false_alarms[clock, rule] / arguments.pairs * 100
        print(f"{clock:>4} {marker} {rule:<16} | {alarms:5.1f}% | {found}")
