"""Capture time of each full network, real step time of each small network, and the docs table.

Prints, from one run on this machine:

* per network, the capture of its ``full`` training step (forward, loss, backward, AdamW; batch 2)
  under FakeTensorMode: seconds (median of ``--repeats``) and recorded ops (target: < 5 s each);
* per network, the median wall-clock time of a real ``small`` training step on the CPU (batch 2,
  AdamW, after two warm-up steps), with the torch thread count it ran with;
* with ``--markdown``, the table of ``docs/networks.md``: per network and preset, parameters,
  training-step FLOPs per sample and peak activation memory per sample, from the capture at batch 2
  divided by 2 (batch 1 would leave BatchNorm one value per channel in EfficientDet's 1x1 level).

The header prints the load average: on a shared machine, other processes' load inflates every
figure, and two torch threads that wait on each other inflate real steps most (``--threads 1``).

Run from the repository root: ``python -m benchmarks.bench_networks [--repeats N] [--steps N]
[--threads N] [--networks a,b] [--markdown]``. Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass

import torch

from dojo_networks import NETWORKS, SIZES, get_network
from hwmodel import Workload
from hwmodel.spec.precision import FP32, MIXED_BF16
from hwmodel.step.memory import activation_peak_bytes
from pytest_dojo.capture import capture_train_step

BATCH = 2
WARMUP_STEPS = 2


@dataclass(frozen=True, kw_only=True)
class CaptureFigures:
    """One preset's capture at ``BATCH`` samples: its cost and what the docs table shows (per sample)."""

    seconds: list[float]
    ops: int
    parameters: int
    flops_per_sample: float
    activation_bf16_bytes: float
    activation_fp32_bytes: float


def capture(name: str, size: str, repeats: int) -> CaptureFigures:
    """Capture ``repeats`` times (timing each); the figures come from the last workload."""
    spec = get_network(name)
    with torch.device("meta"):
        model = spec.build(size)
    inputs, targets = spec.make_batch(size, BATCH, "meta")
    seconds = []
    workload: Workload | None = None
    for _ in range(repeats):
        start = time.perf_counter()
        workload = capture_train_step(model, inputs, targets=targets, loss_fn=spec.loss, name=name)
        seconds.append(time.perf_counter() - start)
    assert workload is not None  # repeats >= 1, checked by the argument parser
    return CaptureFigures(
        seconds=seconds,
        ops=len(workload.ops),
        parameters=sum(parameter.numel() for parameter in model.parameters()),
        flops_per_sample=workload.flops_total / BATCH,
        activation_bf16_bytes=activation_peak_bytes(workload, MIXED_BF16) / BATCH,
        activation_fp32_bytes=activation_peak_bytes(workload, FP32) / BATCH,
    )


def small_step_seconds(name: str, steps: int) -> list[float]:
    """Wall-clock seconds of ``steps`` real training steps of the small preset (after warm-up)."""
    spec = get_network(name)
    torch.manual_seed(0)
    model = spec.build("small")
    inputs, targets = spec.make_batch("small", BATCH, "cpu")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    seconds = []
    for step in range(WARMUP_STEPS + steps):
        start = time.perf_counter()
        loss = spec.loss(model(**inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        optimizer.step()
        if step >= WARMUP_STEPS:
            seconds.append(time.perf_counter() - start)
    return seconds


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _networks(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in NETWORKS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown networks {unknown}; known: {', '.join(sorted(NETWORKS))}")
    return names


def _mebibytes(value: float) -> str:
    return f"{value / 2**20:,.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeats", type=_positive, default=2, help="captures per full network. Default: 2")
    parser.add_argument("--steps", type=_positive, default=10, help="timed small steps per network. Default: 10")
    parser.add_argument("--threads", type=_positive, default=None, help="torch threads. Default: torch's")
    parser.add_argument("--networks", type=_networks, default=list(NETWORKS), help="comma-separated. Default: all")
    parser.add_argument("--markdown", action="store_true", help="also print the docs/networks.md table")
    arguments = parser.parse_args()

    if arguments.threads is not None:
        torch.set_num_threads(arguments.threads)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average {load}")
    print(f"{'network':<16} {'full capture s':>15} {'ops':>6} {'small step ms':>14}")
    figures: dict[tuple[str, str], CaptureFigures] = {}
    for name in arguments.networks:
        full = capture(name, "full", arguments.repeats)
        figures[name, "full"] = full
        small_seconds = small_step_seconds(name, arguments.steps)
        print(
            f"{name:<16} {statistics.median(full.seconds):>15.2f} {full.ops:>6} "
            f"{1e3 * statistics.median(small_seconds):>14.1f}",
            flush=True,
        )
    if not arguments.markdown:
        return
    for name in arguments.networks:
        figures[name, "small"] = capture(name, "small", 1)
    print()
    print(
        "| network | preset | parameters | training FLOPs / sample | activation peak, BF16 (MiB) "
        "| activation peak, FP32 (MiB) |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for name in arguments.networks:
        for size in SIZES:
            row = figures[name, size]
            print(
                f"| {name} | {size} | {row.parameters / 1e6:,.2f} M | {row.flops_per_sample / 1e9:,.1f} G "
                f"| {_mebibytes(row.activation_bf16_bytes)} | {_mebibytes(row.activation_fp32_bytes)} |"
            )


if __name__ == "__main__":
    main()
