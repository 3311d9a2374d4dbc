"""How the wall-clock rule of :mod:`pytest_dojo.noise` behaves on this machine.

``python -m pytest_dojo.noise_study [--pairs N] [--rounds R] [--slowdowns 10,20,50]`` times a small MLP
training step (torch, 1 thread) as the ``dojo_wallclock`` fixture does, in pairs of runs:

* unchanged: both runs time the same step; every "regression" is a false alarm;
* planted: the second run's step also busy-waits ``PCT`` % of the unchanged median (for each of
  ``--slowdowns``); every miss is a missed detection.

It prints the false-alarm and detection rates at the fixture's default tolerance, with the medians
and spreads seen. Figures depend on the machine and its load: rerun it where CI runs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from pytest_dojo.noise import ALPHA, SIGMAS, compare_rounds, robust_sigma

TOLERANCE_PCT = 5.0
RULES = ((3.0, 0.01), (2.0, 0.05), (1.0, 0.05), (0.0, 0.05), (0.0, 0.2))
"""(noise-floor sigmas, rank-test alpha) pairs compared; the module's default is marked."""


def _rounds(step: Callable[[], None], rounds: int, warmup_rounds: int) -> list[float]:
    times = []
    for index in range(warmup_rounds + rounds):
        start = time.perf_counter()
        step()
        if index >= warmup_rounds:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    import torch

    from pytest_dojo.wallclock import DEFAULT_ROUNDS, DEFAULT_WARMUP_ROUNDS, make_real_step

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
    baseline = statistics.median(_rounds(step, 21, 3))
    slowdowns = [float(text) for text in arguments.slowdowns.split(",")]

    def slowed(percent: float) -> Callable[[], None]:
        delay = baseline * percent / 100

        def run() -> None:
            step()
            end = time.perf_counter() + delay
            while time.perf_counter() < end:
                pass

        return run

    planted = {percent: slowed(percent) for percent in slowdowns}
    rules = {f"{sigmas:g} SE, p<{alpha:g}": (sigmas, alpha) for sigmas, alpha in RULES}
    false_alarms = dict.fromkeys(rules, 0)
    detections = {(rule, percent): 0 for rule in rules for percent in slowdowns}
    spreads = []
    for pair in range(arguments.pairs):
        old = _rounds(step, arguments.rounds, DEFAULT_WARMUP_ROUNDS)
        same = _rounds(step, arguments.rounds, DEFAULT_WARMUP_ROUNDS)
        for rule, (sigmas, alpha) in rules.items():
            false_alarms[rule] += compare_rounds(old, same, arguments.tolerance, sigmas=sigmas, alpha=alpha).regressed
        for percent, run in planted.items():
            slower = _rounds(run, arguments.rounds, DEFAULT_WARMUP_ROUNDS)
            for rule, (sigmas, alpha) in rules.items():
                verdict = compare_rounds(old, slower, arguments.tolerance, sigmas=sigmas, alpha=alpha)
                detections[rule, percent] += verdict.regressed
        spreads.append(robust_sigma(old) / statistics.median(old) * 100)
        if (pair + 1) % 10 == 0:
            print(f"  {pair + 1}/{arguments.pairs} pairs", flush=True)
    print(
        f"step median {baseline * 1e3:.3f} ms, rounds per run {arguments.rounds}, pairs {arguments.pairs}, "
        f"robust spread (1.4826 MAD / median) median {statistics.median(spreads):.1f}% (max {max(spreads):.1f}%)"
    )
    print(f"tolerance {arguments.tolerance:g}%; rule ('*' = default) | false alarms | detected per planted slowdown")
    for rule, (sigmas, alpha) in rules.items():
        marker = "*" if (sigmas, alpha) == (SIGMAS, ALPHA) else " "
        found = "  ".join(
            f"+{percent:g}%: {detections[rule, percent] / arguments.pairs * 100:5.1f}%" for percent in slowdowns
        )
        print(f"{marker} {rule:<16} | {false_alarms[rule] / arguments.pairs * 100:5.1f}% | {found}")


if __name__ == "__main__":
    main()
