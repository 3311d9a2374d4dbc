"""What a training step's ops pay on this CPU that the core rates of :mod:`pytest_dojo.hostbench` miss.

* **Element functions**: elements per second of the aten ops of
  :data:`hwmodel.ops.element_rates.ELEMENT_FUNCTIONS` (``sqrt``, ``exp``, ``gelu``, ``gelu_backward``...)
  on 1 MiB of FP32, which stays in cache: a ``sqrt`` costs several multiply-adds per element, a
  ``tanh`` tens, which no FLOP count says.
* **GEMM operands from beyond the caches**: a training step touches far more memory between two
  uses of a weight than the caches hold, so its GEMMs fetch their operands from DRAM, while the
  GEMM grid times products whose operands stay cached. Each of :data:`COLD_GEMM_SHAPES` is timed
  warm (the previous call used the same operands) and cold (right after a read of
  :data:`SWEEP_BYTES`, which evicts them without leaving dirty lines to write back), the two
  interleaved; the extra time over the operands' bytes, summed over the shapes, is the rate at
  which a GEMM fetches cold operands. It is the difference of two timings, so it is noisy on a
  shared machine: 15 pairs a shape gave 2.7-4.0 GB/s in six probes minutes apart, 7 pairs
  2.1-5.5.

Timings use the thread's CPU time with one thread (wall-clock otherwise), medians of repeats.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from hwmodel.ops.element_rates import ELEMENT_FUNCTIONS
from pytest_dojo.bench_timing import clock_for

ELEMENT_PROBE_ELEMENTS = 1 << 18
"""1 MiB of FP32: resident in a core's L2 on current CPUs, so arithmetic sets the time."""

COLD_GEMM_SHAPES = ((64, 512, 512), (512, 512, 64), (64, 512, 256), (256, 256, 256), (128, 1024, 1024))
"""``(m, n, k)`` of the products timed warm and cold: a training batch against a layer's weight and
the weight gradient's shapes, whose operand bytes are large beside their FLOPs."""

SWEEP_BYTES = 64 << 20
"""Bytes read between cold timings: twice the largest last-level cache of a 2-core cloud slice (32 MiB)."""


def _element_calls(x: torch.Tensor) -> dict[str, Callable[[], object]]:
    aten = torch.ops.aten
    grad = torch.full_like(x, 0.5)
    calls: dict[str, Callable[[], object]] = {
        "sqrt": lambda: torch.sqrt(x),
        "rsqrt": lambda: torch.rsqrt(x),
        "exp": lambda: torch.exp(x),
        "log": lambda: torch.log(x),
        "tanh": lambda: torch.tanh(x),
        "sigmoid": lambda: torch.sigmoid(x),
        "erf": lambda: torch.erf(x),
        "gelu": lambda: aten.gelu(x),
        "gelu_backward": lambda: aten.gelu_backward(grad, x),
        "silu": lambda: aten.silu(x),
        "silu_backward": lambda: aten.silu_backward(grad, x),
    }
    assert tuple(calls) == ELEMENT_FUNCTIONS, "every function the model knows is measured"
    return calls


def element_rates_per_s(
    *, elements: int = ELEMENT_PROBE_ELEMENTS, repeats: int = 5, inner: int = 5
) -> dict[str, float]:
    """Elements per second of each of :data:`ELEMENT_FUNCTIONS` on ``elements`` FP32 values in (0.5, 1.5)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(elements, generator=generator) + 0.5
    clock = clock_for(torch.device("cpu"))
    rates = {}
    for name, call in _element_calls(x).items():
        call()
        samples = []
        for _ in range(repeats):
            start = clock()
            for _ in range(inner):
                call()
            samples.append((clock() - start) / inner)
        rates[name] = elements / statistics.median(samples)
    return rates


def _one_call_s(run: Callable[[], object], clock: Callable[[], float], before: Callable[[], object]) -> float:
    before()
    start = clock()
    run()
    return clock() - start


def gemm_cold_operand_bytes_per_s(
    shapes: tuple[tuple[int, int, int], ...] = COLD_GEMM_SHAPES, *, repeats: int = 15
) -> float | None:
    """Operand bytes per second a ``torch.mm`` fetches beyond its warm time once the caches were swept;
    None when the sweep cost nothing measurable."""
    generator = torch.Generator().manual_seed(0)
    sweep = torch.ones(SWEEP_BYTES // 4)
    clock = clock_for(torch.device("cpu"))
    extra_s, operand_bytes = 0.0, 0.0
    for m, n, k in shapes:
        a = torch.randn(m, k, generator=generator)
        b = torch.randn(k, n, generator=generator)
        product = partial(torch.mm, a, b)
        product()
        warm, cold = [], []
        for _ in range(repeats):  # interleaved, so a drift of the machine's speed shifts both alike
            warm.append(_one_call_s(product, clock, product))
            cold.append(_one_call_s(product, clock, sweep.sum))
        extra_s += statistics.median(cold) - statistics.median(warm)
        operand_bytes += 4.0 * (m * k + k * n)
    return operand_bytes / extra_s if extra_s > 0 else None


def in_step_rates(say: Callable[[str], None]) -> dict[str, Any]:
    """The calibration document's ``element_rates_per_s`` and ``gemm_cold_operand_bytes_per_s``,
    announced by ``say``."""
    say("element functions and cold GEMM operands ...")
    elements = element_rates_per_s()
    cold = gemm_cold_operand_bytes_per_s()
    say(f"  sqrt {elements['sqrt'] / 1e9:.2f} Gelem/s, cold GEMM operands {(cold or 0.0) / 1e9:.2f} GB/s")
    return {"element_rates_per_s": elements, "gemm_cold_operand_bytes_per_s": cold}
