"""How the wall-clock rule of :mod:`pytest_dojo.plugin.noise` behaves on this machine.

``python -m pytest_dojo.noise_study [--pairs N] [--rounds R] [--slowdowns 10,20,50]`` times a small MLP
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


def main() -> None:
    import torch

    from pytest_dojo.plugin.wallclock import DEFAULT_ROUNDS, DEFAULT_WARMUP_ROUNDS, make_real_step

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument(
        "--slowdowns", default="10,20,50", help="planted slowdowns in percent, comma separated. Default: 10,20,50"
    )
    parser.add_argument("--tolerance", type=float, default=TOLERANCE_PCT, help="max regression in percent")
    arguments = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 256))
    step = make_real_step(model, torch.randn(64, 256))
    baseline_cpu = statistics.median(_rounds(step, 21, 3)["cpu"])
    slowdowns = [float(text) for text in arguments.slowdowns.split(",")]

    def slowed(percent: float) -> Callable[[], None]:
        extra_cpu = baseline_cpu * percent / 100

        def run() -> None:
            step()
            end = time.thread_time() + extra_cpu  # extra work: CPU time, as slower code would take
            while time.thread_time() < end:
                pass

        return run

    planted = {percent: slowed(percent) for percent in slowdowns}
    rules = {f"{sigmas:g} SE, p<{alpha:g}": (sigmas, alpha) for sigmas, alpha in RULES}
    cases = [(clock, rule) for clock in CLOCKS for rule in rules]
    false_alarms = dict.fromkeys(cases, 0)
    detections = {(case, percent): 0 for case in cases for percent in slowdowns}
    spreads: dict[str, list[float]] = {clock: [] for clock in CLOCKS}
    medians: list[float] = []
    for pair in range(arguments.pairs):
        old = _rounds(step, arguments.rounds, DEFAULT_WARMUP_ROUNDS)
        same = _rounds(step, arguments.rounds, DEFAULT_WARMUP_ROUNDS)
        slower = {percent: _rounds(run, arguments.rounds, DEFAULT_WARMUP_ROUNDS) for percent, run in planted.items()}
        for clock, rule in cases:
            sigmas, alpha = rules[rule]

            options = {"sigmas": sigmas, "alpha": alpha}
            false_alarms[clock, rule] += compare_rounds(
                old[clock], same[clock], arguments.tolerance, **options
            ).regressed
            for percent in slowdowns:
                verdict = compare_rounds(old[clock], slower[percent][clock], arguments.tolerance, **options)
                detections[(clock, rule), percent] += verdict.regressed
        for clock in CLOCKS:
            spreads[clock].append(robust_sigma(old[clock]) / statistics.median(old[clock]) * 100)
        medians.append(statistics.median(old["wall"]))
        if (pair + 1) % 10 == 0:
            print(f"  {pair + 1}/{arguments.pairs} pairs", flush=True)
    print(
        f"step: median {statistics.median(medians) * 1e3:.3f} ms wall, {baseline_cpu * 1e3:.3f} ms CPU; "
        f"{arguments.rounds} rounds per run, {arguments.pairs} pairs, tolerance {arguments.tolerance:g}%"
    )
    for clock in CLOCKS:
        print(
            f"{clock:>4} clock: robust spread (1.4826 MAD / median) median {statistics.median(spreads[clock]):.1f}%"
            f" (max {max(spreads[clock]):.1f}%)"
        )
    print("clock  rule ('*' = default) | false alarms | planted slowdowns detected")
    for clock, rule in cases:
        marker = "*" if rules[rule] == (SIGMAS, ALPHA) else " "
        found = "  ".join(
            f"+{percent:g}%: {detections[(clock, rule), percent] / arguments.pairs * 100:5.1f}%"
            for percent in slowdowns
        )
        print(f"{clock:>4} {marker} {rule:<16} | {false_alarms[clock, rule] / arguments.pairs * 100:5.1f}% | {found}")


if __name__ == "__main__":
    main()
