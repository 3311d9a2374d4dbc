"""Microbenchmarks that measure this machine's rates for the ``host`` preset (torch allowed here).

Run ``python -m pytest_dojo.hostbench`` to re-measure and write the calibration file that
:mod:`hwmodel.spec.host` reads (``--output PATH``; default: the file ``hwmodel.spec.host.calibration_path()``
names). Every figure is the median of repeated timings with a fixed thread count; with one thread
the clock is the thread's CPU time, so other processes on a shared machine do not inflate it:

* matrix FLOP/s per dtype: ``torch.mm`` of square matrices, ``2 n^3`` FLOPs per product;
* matrix FLOP/s by shape: FP32 ``torch.mm`` of an ``m x k`` by a ``k x n`` matrix for every
  ``m, n, k`` in :data:`GEMM_DIMS` (:class:`hwmodel.ops.gemm.GemmRateTable`): a BLAS library runs
  small or skinny products at a fraction of its square-matrix rate;
* vector FLOP/s: ``torch.addcmul`` (one multiply-add, 2 FLOPs per element) on a cache-resident
  FP32 tensor, so arithmetic and not DRAM sets its time;
* memory bandwidth: ``Tensor.copy_`` at sizes from L2-resident to far beyond the last-level
  cache, counting bytes read plus bytes written (the largest size is the DRAM figure; the host
  chip keys each smaller one by the copy's footprint, twice the tensor's size);
* per-op fixed cost: the dispatch of one tiny ``add`` from Python (``dispatch_overhead_s``), what
  an op costs besides its work as the per-op timer of the calibration sees it: the unit of the
  efficiency row's per-class overhead factors. A training step of a network whose ops do almost
  no work, divided by the aten ops it dispatches (``op_overhead_s``: Python, autograd and
  optimizer code between ops included), is recorded too: the fabric's hop latency;
* what a step's ops pay beyond those rates (:mod:`pytest_dojo.hostbench_in_step`): the element
  rates of transcendental functions (``element_rates_per_s``) and the rate at which a GEMM fetches
  operands that are in no cache (``gemm_cold_operand_bytes_per_s``);
* op classes at DRAM size (``op_classes``, :mod:`pytest_dojo.hostbench_op_classes`), recorded to
  compare machines, not read by the model.

Every timing is a median (:mod:`pytest_dojo.bench_timing`); the probes that take milliseconds (the
dispatch, the vector rate, the copies below DRAM size) are sampled four times over the run and
their medians kept, since a shared machine drifts over seconds (:func:`short_probes`). The whole
measurement takes about 20 s on one core: a dtype without a fast path (BF16 on a CPU without
AVX-512 BF16) is timed on a smaller square (:data:`MATRIX_BUDGET_S`), and the GEMM grid multiplies
views of two random pools.
The same functions run on a CUDA device (``device="cuda"``).
Not measured: frequency scaling under sustained load, the rates of GEMM shapes between the grid's
(interpolated), BF16 GEMMs by shape (scaled from FP32 by the square-matrix ratio).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from pytest_dojo.bench_timing import timed
from pytest_dojo.hostbench_in_step import in_step_rates
from pytest_dojo.hostbench_op_classes import op_class_rates

MATRIX_DTYPES = ("float32", "bfloat16")
GEMM_DIMS = tuple(1 << power for power in range(12))
"""Sizes of m, n and k in the GEMM grid: powers of two from 1 to 2048 (1,728 shapes)."""
GEMM_TIMING_FLOPS = 2e6
"""Each GEMM timing repeats small products until it covers about this many FLOPs (~20 us)."""
MEMORY_SIZES_BYTES = (1 << 18, 1 << 21, 1 << 24, 1 << 28)
"""Copy sizes: in L2, in L3, about L3, far beyond any cache; the last is the DRAM figure."""
BENCH_VERSION = 3
"""Changes whenever what :func:`measure_host` measures, or how, changes: part of every cache key."""


MATRIX_BUDGET_S = 2.0
"""Seconds the square-matrix rate of one dtype may take (see :func:`matrix_flops_per_s`)."""


def matrix_flops_per_s(dtype: str, *, size: int, device: str = "cpu", repeats: int = 5) -> float:
    """FLOP/s of ``torch.mm`` on ``size`` x ``size`` matrices of ``dtype`` (2 size^3 FLOPs each).

    A dtype without a fast path (BF16 on a CPU without AVX-512 BF16 runs at about 1 GFLOP/s) would
    take minutes at ``size``: a product of side 128 is timed first, and the side is halved (down to
    128) while the timings at that pace would take over :data:`MATRIX_BUDGET_S`, so the benchmark
    keeps its time budget; such a rate hardly depends on the size. (A small square runs below the
    large one's rate, so the estimate is pessimistic: FP32 at 1024 stays within it from 8 GFLOP/s.)
    """
    target = torch.device(device)

    def square(side: int) -> tuple[torch.Tensor, torch.Tensor]:
        def matrix() -> torch.Tensor:
            return torch.randn(side, side, device=target).to(getattr(torch, dtype))

        return matrix(), matrix()

    probe_a, probe_b = square(min(size, 128))
    probe_s = timed(lambda: torch.mm(probe_a, probe_b), target, repeats=1, inner=1)
    calls = 1 + 3 * repeats
    while size > 128 and calls * probe_s * (size / 128) ** 3 > MATRIX_BUDGET_S:
        size //= 2
    a, b = square(size)
    seconds = timed(lambda: torch.mm(a, b), target, repeats=repeats, inner=3)
    return 2.0 * size**3 / seconds


def gemm_flops_per_s(
    dims: tuple[int, ...] = GEMM_DIMS,
    *,
    device: str = "cpu",
    repeats: int = 3,
    progress: Callable[[str], None] | None = None,
) -> list[float]:
    """FP32 ``torch.mm`` FLOP/s at every ``(m, n, k)`` of ``dims``, in :class:`GemmRateTable` order.

    Operands are contiguous views of two random pools drawn once (drawing them per shape cost
    3 s of the grid's 16 on a 45 GFLOP/s core)."""
    target = torch.device(device)
    generator = torch.Generator().manual_seed(0)
    largest = max(dims) ** 2
    pool_a = torch.randn(largest, generator=generator).to(target)
    pool_b = torch.randn(largest, generator=generator).to(target)
    rates = []
    for index_m, m in enumerate(dims):
        if progress is not None:
            progress(f"  m = {m} ({index_m + 1}/{len(dims)})")
        for n in dims:
            for k in dims:
                a = pool_a[: m * k].view(m, k)
                b = pool_b[: k * n].view(k, n)
                flops = 2.0 * m * n * k
                inner = max(1, min(1000, int(GEMM_TIMING_FLOPS / flops)))
                seconds = timed(partial(torch.mm, a, b), target, repeats=repeats, inner=inner)
                rates.append(flops / seconds)
    return rates


def vector_flops_per_s(*, elements: int = 1 << 16, device: str = "cpu", repeats: int = 7) -> float:
    """FLOP/s of an in-place FP32 multiply-add on ``elements`` values that stay in cache."""
    target = torch.device(device)
    x = torch.zeros(elements, device=target)
    y = torch.full((elements,), 1.0001, device=target)
    seconds = timed(lambda: x.addcmul_(y, y, value=1e-9), target, repeats=repeats, inner=50)
    return 2.0 * elements / seconds


def memory_bytes_per_s(*, nbytes: int = 1 << 28, device: str = "cpu", repeats: int = 5) -> float:
    """Bytes read plus written per second by ``copy_`` of an ``nbytes`` FP32 tensor."""
    target = torch.device(device)
    source = torch.ones(nbytes // 4, device=target)
    destination = torch.empty_like(source)
    seconds = timed(lambda: destination.copy_(source), target, repeats=repeats, inner=3)
    return 2.0 * nbytes / seconds


def dispatch_overhead_s(*, device: str = "cpu", repeats: int = 7) -> float:
    """Seconds of one tiny op (``torch.add`` of two 1-element tensors) issued from Python."""
    target = torch.device(device)
    a = torch.ones(1, device=target)
    b = torch.ones(1, device=target)
    return timed(lambda: torch.add(a, b), target, repeats=repeats, inner=2000)


class _OpCounter(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Counts the non-view aten ops dispatched inside it."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.count = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if not func.is_view:
            self.count += 1
        return func(*args, **(kwargs or {}))


def op_overhead_s(*, device: str = "cpu", repeats: int = 5) -> float:
    """Seconds per aten op of a training step whose ops do almost no work.

    The step (Linear 4->4, LayerNorm, ReLU, Linear 4->4 on one sample; sum; backward; AdamW with
    foreach) costs what every op of a real step pays besides its arithmetic and memory traffic:
    Python and module calls, dispatch, autograd bookkeeping, allocation, a kernel launch on a GPU.
    Its time divided by the ops it dispatches is the fixed cost per op.
    """
    target = torch.device(device)
    generator = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 4), torch.nn.LayerNorm(4), torch.nn.ReLU(), torch.nn.Linear(4, 4)
    ).to(target)
    x = torch.randn(1, 4, generator=generator).to(target)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model(x).sum().backward()
        optimizer.step()

    for _ in range(3):
        step()
    counter = _OpCounter()
    with counter:
        step()
    return timed(step, target, repeats=repeats, inner=10) / counter.count


def machine_info() -> dict[str, Any]:
    """What the rates belong to: CPU model, cores, memory, library versions."""
    import os
    import platform

    memory_bytes = 0
    with contextlib.suppress(ValueError, OSError, AttributeError):
        memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    model = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), model)
    except OSError:
        pass
    return {
        "hostname": platform.node(),
        "processor": model,
        "cpu_count": os.cpu_count(),
        "memory_bytes": memory_bytes,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def machine_key(threads: int = 1) -> str:
    """What a measurement belongs to: CPU model, cores, torch version, the thread count it is measured
    with and :data:`BENCH_VERSION`, hashed (16 hex digits) for a cache entry's name."""
    import hashlib

    info = machine_info()
    parts = (info["processor"], info["cpu_count"], info["torch"], threads, BENCH_VERSION)
    return hashlib.sha256(repr(parts).encode("utf-8")).hexdigest()[:16]


DRIFT_SAMPLES = 4
"""How many times :func:`measure_host` samples the short probes (:func:`short_probes`) over its run."""


def short_probes() -> dict[str, float]:
    """The probes that take milliseconds: the dispatch of a tiny op, the vector rate and the copy
    rates of the sizes below the DRAM one (keyed by size as text).

    On a shared machine these drift over seconds (a tiny op's dispatch 1.9-4.2 us and a 256 KiB copy
    24-35 GB/s within 15 s on one 2-core slice), and a step's fixed costs and cache-resident work
    hang on them: :func:`measure_host` takes the median of :data:`DRIFT_SAMPLES` samples spread over
    its run."""
    copies = {str(size): memory_bytes_per_s(nbytes=size, repeats=15) for size in MEMORY_SIZES_BYTES[:-1]}
    return {"dispatch": dispatch_overhead_s(), "vector": vector_flops_per_s(), **copies}


def measure_host(
    *,
    threads: int = 1,
    matrix_size: int = 1024,
    gemm_dims: tuple[int, ...] = GEMM_DIMS,
    gemm_repeats: int = 3,
    progress: Callable[[str], None] | None = None,
    command: str = "pytest_dojo.hostbench.measure_host",
) -> dict[str, Any]:
    """Every rate of the host preset, measured now with ``threads`` intra-op threads.

    Returns the JSON document :func:`hwmodel.spec.host.calibration_from_dict` reads. With
    ``gemm_repeats=2`` (the plugin's first-use measurement) it takes about 20 s on one core (15-23 s seen).
    """
    say = progress or (lambda _line: None)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        samples = [short_probes()]
        say(f"matrix {', '.join(MATRIX_DTYPES)} {matrix_size}^3 ...")
        matrix = {dtype: matrix_flops_per_s(dtype, size=matrix_size) for dtype in MATRIX_DTYPES}
        say("  " + ", ".join(f"{dtype} {rate / 1e9:.1f} GFLOP/s" for dtype, rate in matrix.items()))
        say(f"matrix float32 by shape, {len(gemm_dims) ** 3} shapes ...")
        gemm = gemm_flops_per_s(gemm_dims, repeats=gemm_repeats, progress=say)
        samples.append(short_probes())
        say(f"memory copy {MEMORY_SIZES_BYTES[-1] / 1e6:g} MB (DRAM) ...")
        memory = memory_bytes_per_s(nbytes=MEMORY_SIZES_BYTES[-1], repeats=5)
        samples.append(short_probes())
        say("per-op overhead (tiny training step) ...")
        overhead = op_overhead_s()
        in_step, classes = in_step_rates(say), op_class_rates(say)
        samples.extend(short_probes() for _ in range(DRIFT_SAMPLES - len(samples)))
    finally:
        torch.set_num_threads(previous_threads)
    short = {key: statistics.median(sample[key] for sample in samples) for key in samples[0]}
    memory_by_size = {str(size): short.get(str(size), memory) for size in MEMORY_SIZES_BYTES}  # DRAM: timed once
    say(
        f"median of {len(samples)} samples: dispatch {short['dispatch'] * 1e6:.2f} us, vector "
        f"{short['vector'] / 1e9:.1f} GFLOP/s, copies "
        + ", ".join(f"{int(size) >> 10} KiB {rate / 1e9:.1f} GB/s" for size, rate in memory_by_size.items())
    )
    return {
        "schema_version": 1,
        "bench_version": BENCH_VERSION,
        "measured_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command,
        "threads": threads,
        "clock": "thread_time" if threads == 1 else "perf_counter",
        "machine": machine_info(),
        "matrix_fp32_flops_per_s": matrix["float32"],
        "matrix_bf16_flops_per_s": matrix["bfloat16"],
        "gemm_flops_per_s": {"dims": list(gemm_dims), "flops_per_s": gemm},
        "vector_flops_per_s": short["vector"],
        "memory_bytes_per_s": memory,
        "memory_bytes_per_s_by_size": memory_by_size,
        "op_overhead_s": overhead,
        "dispatch_overhead_s": short["dispatch"],
        **in_step,
        "op_classes": classes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_dojo.hostbench", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, metavar="N", help="intra-op threads (default: 1)")
    parser.add_argument("--matrix-size", type=int, default=1024, metavar="N", help="matmul size (default: 1024)")
    parser.add_argument(
        "--gemm-max",
        type=int,
        default=GEMM_DIMS[-1],
        metavar="N",
        help=f"largest m, n and k of the GEMM grid, a power of two (default: {GEMM_DIMS[-1]})",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        metavar="PATH",
        help="calibration file to write (default: hwmodel.spec.host.calibration_path())",
    )
    parser.add_argument("--print-only", action="store_true", help="print the JSON and write nothing")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.gemm_max < 2 or args.gemm_max & (args.gemm_max - 1):
        parser.error(f"--gemm-max must be a power of two >= 2, got {args.gemm_max}")
    from hwmodel.spec.host import calibration_from_dict, calibration_path

    command = " ".join(["python -m pytest_dojo.hostbench", *(argv if argv is not None else sys.argv[1:])])
    document = measure_host(
        command=command,
        threads=args.threads,
        matrix_size=args.matrix_size,
        gemm_dims=tuple(size for size in GEMM_DIMS if size <= args.gemm_max),
        progress=lambda line: print(line, file=sys.stderr),
    )
    calibration_from_dict(document)
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    if args.print_only:
        print(text, end="")
        return 0
    path = args.output or calibration_path()
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
