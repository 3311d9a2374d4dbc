"""Capture overhead and simulation speed of the full HydraNet step, measured side by side.

Prints, from one run on this machine (medians of interleaved repeats):
* the capture of the HydraNet training step (forward, loss, backward, AdamW) under FakeTensorMode;
* the same step under FakeTensorMode with ``torch.utils.flop_counter.FlopCounterMode`` alone, the
  floor any capture pays (their ratio is the capture's overhead; target <= 2x);
* one simulation of the captured workload on a 5x5 D1 tile (target < 50 ms).

Run from the repository root: ``python -m benchmarks.bench_capture [--repeats N] [--network NAME]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

from dojo_networks import get_network
from hwmodel import make_system, simulate
from pytest_dojo.capture import capture_train_step, default_optimizer

GLOBAL_BATCH = 25


def flop_counter_step(model: torch.nn.Module, inputs: Any, targets: Any, loss: Callable[..., Any]) -> float:
    """The same fake step counted by FlopCounterMode only; returns its total FLOPs."""
    fake_mode = FakeTensorMode()
    with fake_mode:
        parameters = {n: torch.empty(p.shape, dtype=p.dtype).requires_grad_() for n, p in model.named_parameters()}
        buffers = {n: torch.empty(b.shape, dtype=b.dtype) for n, b in model.named_buffers()}

        def fake(t: torch.Tensor) -> torch.Tensor:
            return torch.empty((1, *t.shape[1:]), dtype=t.dtype)

        fake_inputs = pytree.tree_map_only(torch.Tensor, fake, inputs)
        fake_targets = pytree.tree_map_only(torch.Tensor, fake, targets)
        optimizer = default_optimizer(list(parameters.values()))
        counter = FlopCounterMode(display=False)
        with counter:
            outputs = torch.func.functional_call(model, {**parameters, **buffers}, (), fake_inputs)
            loss(outputs, fake_targets).backward()
            optimizer.step()
    return float(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--network", default="hydranet")
    arguments = parser.parse_args()
    spec = get_network(arguments.network)
    with torch.device("meta"):
        model = spec.build("full")
    inputs, targets = spec.make_batch("full", GLOBAL_BATCH, "meta")
    system = make_system("d1", "5x5")

    capture_s, counter_s = [], []
    workload = None
    for repeat in range(arguments.repeats):
        start = time.perf_counter()
        counter_flops = flop_counter_step(model, inputs, targets, spec.loss)
        counter_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        workload = capture_train_step(
            model, inputs, targets=targets, loss_fn=spec.loss, batch_size=1, name=arguments.network
        )
        capture_s.append(time.perf_counter() - start)
        print(
            f"  repeat {repeat + 1}/{arguments.repeats}: "
            f"capture {capture_s[-1]:.2f} s, FlopCounterMode {counter_s[-1]:.2f} s"
        )
    assert workload is not None
    simulate(workload, system)
    simulate_s = []
    for _ in range(max(5, arguments.repeats)):
        start = time.perf_counter()
        simulate(workload, system)
        simulate_s.append(time.perf_counter() - start)

    capture_median, counter_median = statistics.median(capture_s), statistics.median(counter_s)
    print(
        f"network {arguments.network} (full, 1 sample per chip of a {GLOBAL_BATCH}-sample batch), "
        f"torch {torch.__version__}"
    )
    print(
        f"ops captured: {len(workload.ops)}; FLOPs per sample: capture {workload.flops_total:.4g}, "
        f"FlopCounterMode {counter_flops:.4g} (it counts the CPU attention kernels as 0)"
    )
    print(f"capture (median of {len(capture_s)}):         {capture_median:.3f} s")
    print(f"FlopCounterMode alone (median):  {counter_median:.3f} s")
    print(f"capture overhead:                {capture_median / counter_median:.2f}x  (target <= 2x)")
    simulate_median_ms = statistics.median(simulate_s) * 1e3
    print(f"simulation on 5x5 (median of {len(simulate_s)}): {simulate_median_ms:.2f} ms  (target < 50 ms)")


if __name__ == "__main__":
    main()
