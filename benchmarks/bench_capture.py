"""Capture cost of the full HydraNet step, cold and warm, by phase, and of two batches plus derivation.

Prints, from one run on this machine (medians of interleaved repeats; CPU seconds of this process
and of the children it forked beside wall-clock seconds, since a shared machine inflates the wall
clock):
* cold: the first capture in a fresh interpreter (FakeTensor's dispatch cache empty, torch's lazy
  initialisation not yet done), measured in a child process; torch import and model build excluded;
* warm: a capture in a process that has captured before, with its phases (fake parameters and
  optimizer, optimizer state, forward with the loss, backward, optimizer step, records);
* two batches: ``capture_train_steps`` at two per-replica batches (the second in a forked child
  where a second CPU is free, its CPU seconds counted; else the second reuses the first's
  optimizer state and records), the affine fit, and one derived batch, against two captures;
* the same step under FakeTensorMode with ``torch.utils.flop_counter.FlopCounterMode`` alone, the
  floor any capture pays (their ratio is the capture's overhead; target <= 2x);
* one simulation of the captured workload on a 5x5 D1 tile (target < 50 ms).

Run from the repository root: ``python -m benchmarks.bench_capture [--repeats N] [--network NAME]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

from dojo_networks import get_network
from hwmodel import Workload, make_system, simulate
from pytest_dojo.capture.derive import fit_batch_affine
from pytest_dojo.capture.train_step import CAPTURE_PHASES, capture_train_step, capture_train_steps, default_optimizer

GLOBAL_BATCH = 25
BATCHES = (2, 3)
"""Two batches captured for a fit, and the batch derived from them."""
DERIVED_BATCH = 5


@dataclass(frozen=True)
class Step:
    """The network's full step, as the capture functions take it."""

    name: str
    model: torch.nn.Module
    inputs: Any
    targets: Any
    loss: Callable[..., Any]

    def capture(self, batch: int, phases: dict[str, float] | None = None) -> Workload:
        return capture_train_step(
            self.model,
            self.inputs,
            targets=self.targets,
            loss_fn=self.loss,
            batch_size=batch,
            name=self.name,
            phase_times=phases,
        )

    def capture_pair(self, phases: dict[str, float] | None = None) -> tuple[Workload, ...]:
        return capture_train_steps(
            self.model,
            self.inputs,
            batch_sizes=BATCHES,
            targets=self.targets,
            loss_fn=self.loss,
            name=self.name,
            phase_times=phases,
        )


def build_step(network: str) -> Step:
    spec = get_network(network)
    with torch.device("meta"):
        model = spec.build("full")
    inputs, targets = spec.make_batch("full", GLOBAL_BATCH, "meta")
    return Step(name=network, model=model, inputs=inputs, targets=targets, loss=spec.loss)


def cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have ended (a two-batch capture's fork)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def timed(action: Callable[[], Any]) -> tuple[Any, float, float]:
    """``action()``'s result, wall-clock seconds and CPU seconds (this process and its children)."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = action()
    return result, time.perf_counter() - wall, cpu_seconds() - cpu


def flop_counter_step(step: Step) -> float:
    """The same fake step counted by FlopCounterMode only; returns its total FLOPs."""
    fake_mode = FakeTensorMode()
    with fake_mode:
        parameters = {n: torch.empty(p.shape, dtype=p.dtype).requires_grad_() for n, p in step.model.named_parameters()}
        buffers = {n: torch.empty(b.shape, dtype=b.dtype) for n, b in step.model.named_buffers()}

        def fake(t: torch.Tensor) -> torch.Tensor:
            return torch.empty((1, *t.shape[1:]), dtype=t.dtype)

        fake_inputs = pytree.tree_map_only(torch.Tensor, fake, step.inputs)
        fake_targets = pytree.tree_map_only(torch.Tensor, fake, step.targets)
        optimizer = default_optimizer(list(parameters.values()))
        counter = FlopCounterMode(display=False)
        with counter:
            outputs = torch.func.functional_call(step.model, {**parameters, **buffers}, (), fake_inputs)
            step.loss(outputs, fake_targets).backward()
            optimizer.step()
    return float(counter.get_total_flops())


def cold_child(network: str, what: str) -> None:
    """In a fresh interpreter: the first capture (``single``) or pair (``pair``); prints JSON."""
    step = build_step(network)
    phases: dict[str, float] = {}
    action = (lambda: step.capture(1, phases)) if what == "single" else (lambda: step.capture_pair(phases))
    _, wall, cpu = timed(action)
    print(json.dumps({"wall": wall, "cpu": cpu, "phases": phases}))


def cold(network: str, what: str) -> dict[str, Any]:
    """:func:`cold_child` run in a child process."""
    command = [sys.executable, "-m", "benchmarks.bench_capture", "--network", network, "--cold-child", what]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def phase_line(phases: dict[str, float]) -> str:
    return ", ".join(f"{phase} {phases.get(phase, 0.0):.2f}" for phase in CAPTURE_PHASES)


def median_phases(runs: list[dict[str, float]]) -> dict[str, float]:
    return {phase: statistics.median(run.get(phase, 0.0) for run in runs) for phase in CAPTURE_PHASES}


def warm_figures(step: Step, repeats: int) -> dict[str, Any]:
    """Interleaved repeats of one capture, two batches with fit and derivation, and FlopCounterMode."""
    step.capture(1)  # warm the dispatch cache and torch's lazy initialisation
    figures: dict[str, list[Any]] = {key: [] for key in ("single", "cpu", "phases", "pair", "pair_cpu", "pair_phases")}
    figures.update({"counter": [], "fit": [], "derive": []})
    for repeat in range(repeats):
        phases: dict[str, float] = {}
        workload, wall, cpu = timed(lambda: step.capture(1, phases))  # noqa: B023
        figures["single"].append(wall)
        figures["cpu"].append(cpu)
        figures["phases"].append(phases)
        pair_phases: dict[str, float] = {}
        pair, wall, cpu = timed(lambda: step.capture_pair(pair_phases))  # noqa: B023
        figures["pair"].append(wall)
        figures["pair_cpu"].append(cpu)
        figures["pair_phases"].append(pair_phases)
        fit, wall, _ = timed(lambda: fit_batch_affine(pair[0], pair[1]))  # noqa: B023
        figures["fit"].append(wall)
        _, wall, _ = timed(lambda: fit.at(DERIVED_BATCH))  # noqa: B023
        figures["derive"].append(wall)
        flops, wall, _ = timed(lambda: flop_counter_step(step))
        figures["counter"].append(wall)
        print(
            f"  repeat {repeat + 1}/{repeats}: capture {figures['single'][-1]:.2f} s, two batches "
            f"{figures['pair'][-1]:.2f} s, FlopCounterMode {wall:.2f} s",
            file=sys.stderr,
        )
    return {"workload": workload, "flops": flops, **figures}


def report(step: Step, repeats: int) -> None:
    cold_single, cold_pair = cold(step.name, "single"), cold(step.name, "pair")
    warm = warm_figures(step, repeats)
    workload: Workload = warm["workload"]
    median = {key: statistics.median(warm[key]) for key in ("single", "cpu", "pair", "pair_cpu", "counter")}
    print(f"network {step.name} (full, 1 sample per chip of a {GLOBAL_BATCH}-sample batch), torch {torch.__version__}")
    print(
        f"ops captured: {len(workload.ops)}; FLOPs per sample: capture {workload.flops_total:.4g}, "
        f"FlopCounterMode {warm['flops']:.4g} (it counts the CPU attention kernels as 0)"
    )
    print(f"cold capture (fresh process):       {cold_single['wall']:.3f} s wall, {cold_single['cpu']:.3f} s CPU")
    print(f"  phases (s): {phase_line(cold_single['phases'])}")
    print(f"warm capture (median of {repeats}):       {median['single']:.3f} s wall, {median['cpu']:.3f} s CPU")
    print(f"  phases (s): {phase_line(median_phases(warm['phases']))}")
    fit_s, derive_s = statistics.median(warm["fit"]), statistics.median(warm["derive"])
    pair_total = median["pair"] + fit_s + derive_s
    print(
        f"two batches {BATCHES} + fit + derive batch {DERIVED_BATCH}, warm: {median['pair']:.3f} + "
        f"{fit_s * 1e3:.1f} ms + {derive_s * 1e3:.1f} ms = {pair_total:.3f} s "
        f"({pair_total / (2 * median['single']):.2f}x two captures; CPU {median['pair_cpu']:.3f} s)"
    )
    print(f"  phases (s): {phase_line(median_phases(warm['pair_phases']))}")
    print(
        f"two batches, cold (fresh process):  {cold_pair['wall']:.3f} s wall, {cold_pair['cpu']:.3f} s CPU; "
        f"phases (s): {phase_line(cold_pair['phases'])}"
    )
    print(f"FlopCounterMode alone (median):     {median['counter']:.3f} s")
    print(f"capture overhead:                   {median['single'] / median['counter']:.2f}x  (target <= 2x)")
    system = make_system("d1", "5x5")
    simulate(workload, system)
    simulate_s = [timed(lambda: simulate(workload, system))[1] for _ in range(max(5, repeats))]
    simulate_ms = statistics.median(simulate_s) * 1e3
    print(f"simulation on 5x5 (median of {len(simulate_s)}): {simulate_ms:.2f} ms  (target < 50 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--network", default="hydranet")
    parser.add_argument("--cold-child", choices=("single", "pair"), help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.cold_child:
        cold_child(arguments.network, arguments.cold_child)
        return
    report(build_step(arguments.network), arguments.repeats)


if __name__ == "__main__":
    main()
