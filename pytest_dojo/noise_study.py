"""How the wall-clock rule of :mod:`pytest_dojo.noise` behaves on this machine.

``python -m pytest_dojo.noise_study [--pairs N] [--rounds R] [--slowdown PCT]`` times a small MLP
training step (torch, 1 thread) as the ``dojo_wallclock`` fixture does, in pairs of runs:

* unchanged: both runs time the same step; every "regression" is a false alarm;
* planted: the second run's step also sleeps ``PCT`` % of the unchanged median; every miss is a
  missed detection.

It prints the false-alarm and detection rates at the fixture's default tolerance, with the medians
and spreads seen. Figures depend on the machine and its load: rerun it where CI runs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from pytest_dojo.noise import compare_rounds, robust_sigma

TOLERANCE_PCT = 5.0


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
    parser.add_argument("--slowdown", type=float, default=20.0, help="planted slowdown in percent")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE_PCT, help="max regression in percent")
    arguments = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 256))
    step = make_real_step(model, torch.randn(64, 256))
    baseline = statistics.median(_rounds(step, 21, 3))
    delay = baseline * arguments.slowdown / 100

    def slowed() -> None:
        step()
        end = time.perf_counter() + delay
        while time.perf_counter() < end:
            pass

    false_alarms = detections = 0
    spreads = []
    for pair in range(arguments.pairs):
        old = _rounds(step, arguments.rounds, DEFAULT_WARMUP_ROUNDS)
        same = _rounds(step, arguments.rounds, DEFAULT_WARMUP_ROUNDS)
        slower = _rounds(slowed, arguments.rounds, DEFAULT_WARMUP_ROUNDS)
        false_alarms += compare_rounds(old, same, arguments.tolerance).regressed
        detections += compare_rounds(old, slower, arguments.tolerance).regressed
        spreads.append(robust_sigma(old) / statistics.median(old) * 100)
        if (pair + 1) % 10 == 0:
            print(
                f"  {pair + 1}/{arguments.pairs} pairs: {false_alarms} false alarms, {detections} detections",
                flush=True,
            )
    print(
        f"step median {baseline * 1e3:.3f} ms, rounds per run {arguments.rounds}, "
        f"robust spread median {statistics.median(spreads):.1f}% (max {max(spreads):.1f}%)"
    )
    print(
        f"tolerance {arguments.tolerance:g}%: false alarms on the unchanged step "
        f"{false_alarms}/{arguments.pairs} = {false_alarms / arguments.pairs * 100:.1f}%"
    )
    print(
        f"planted +{arguments.slowdown:g}% slowdown detected {detections}/{arguments.pairs} "
        f"= {detections / arguments.pairs * 100:.1f}%"
    )


if __name__ == "__main__":
    main()
