"""Microbenchmarks that measure this machine's rates for the ``host`` preset (torch allowed here).

Run ``python -m pytest_dojo.hostbench`` to re-measure and write the calibration file that
:mod:`hwmodel.host` reads (``--output PATH``; default: the file ``hwmodel.host.calibration_path()``
names). Every figure is the median of repeated timings with a fixed thread count:

* matrix FLOP/s per dtype: ``torch.mm`` of square matrices, ``2 n^3`` FLOPs per product;
* vector FLOP/s: ``torch.addcmul`` (one multiply-add, 2 FLOPs per element) on a cache-resident
  FP32 tensor, so arithmetic and not DRAM sets its time;
* memory bandwidth: ``Tensor.copy_`` at sizes from L2-resident to far beyond the last-level
  cache, counting bytes read plus bytes written (the largest size is the DRAM figure);
* per-op overhead: an ``add`` of two 1-element tensors, dispatched from Python (the cost a tiny op
  pays for dispatch, allocation and the Python call).

The same functions run on a CUDA device (``device="cuda"``): the H200 validation script reuses them.
Not measured: caches between the two extremes (an op whose operands fit L2 runs faster than the
copy bandwidth says), frequency scaling under sustained load.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

MATRIX_DTYPES = ("float32", "bfloat16")
MEMORY_SIZES_BYTES = (1 << 18, 1 << 21, 1 << 24, 1 << 28)
"""Copy sizes: in L2, in L3, about L3, far beyond any cache; the last is the DRAM figure."""


def _timed(run: Callable[[], object], device: torch.device, *, repeats: int, inner: int) -> float:
    """Median seconds of one call of ``run`` over ``repeats`` timings of ``inner`` calls each."""
    run()
    _sync(device)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            run()
        _sync(device)
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matrix_flops_per_s(dtype: str, *, size: int, device: str = "cpu", repeats: int = 5) -> float:
    """FLOP/s of ``torch.mm`` on ``size`` x ``size`` matrices of ``dtype`` (2 size^3 FLOPs each)."""
    target = torch.device(device)
    a = torch.randn(size, size, device=target).to(getattr(torch, dtype))
    b = torch.randn(size, size, device=target).to(getattr(torch, dtype))
    seconds = _timed(lambda: torch.mm(a, b), target, repeats=repeats, inner=3)
    return 2.0 * size**3 / seconds


def vector_flops_per_s(*, elements: int = 1 << 16, device: str = "cpu", repeats: int = 7) -> float:
    """FLOP/s of an in-place FP32 multiply-add on ``elements`` values that stay in cache."""
    target = torch.device(device)
    x = torch.zeros(elements, device=target)
    y = torch.full((elements,), 1.0001, device=target)
    seconds = _timed(lambda: x.addcmul_(y, y, value=1e-9), target, repeats=repeats, inner=50)
    return 2.0 * elements / seconds


def memory_bytes_per_s(*, nbytes: int = 1 << 28, device: str = "cpu", repeats: int = 5) -> float:
    """Bytes read plus written per second by ``copy_`` of an ``nbytes`` FP32 tensor."""
    target = torch.device(device)
    source = torch.ones(nbytes // 4, device=target)
    destination = torch.empty_like(source)
    seconds = _timed(lambda: destination.copy_(source), target, repeats=repeats, inner=3)
    return 2.0 * nbytes / seconds


def op_overhead_s(*, device: str = "cpu", repeats: int = 7) -> float:
    """Seconds of one tiny op (``torch.add`` of two 1-element tensors) issued from Python."""
    target = torch.device(device)
    a = torch.ones(1, device=target)
    b = torch.ones(1, device=target)
    return _timed(lambda: torch.add(a, b), target, repeats=repeats, inner=2000)


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


def measure_host(
    *, threads: int = 1, matrix_size: int = 1024, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Every rate of the host preset, measured now with ``threads`` intra-op threads.

    Returns the JSON document :func:`hwmodel.host.calibration_from_dict` reads.
    """
    say = progress or (lambda _line: None)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        matrix = {}
        for dtype in MATRIX_DTYPES:
            say(f"matrix {dtype} {matrix_size}^3 ...")
            matrix[dtype] = matrix_flops_per_s(dtype, size=matrix_size)
            say(f"  {matrix[dtype] / 1e9:.1f} GFLOP/s")
        say("vector multiply-add ...")
        vector = vector_flops_per_s()
        say(f"  {vector / 1e9:.1f} GFLOP/s")
        memory_by_size = {}
        for nbytes in MEMORY_SIZES_BYTES:
            say(f"memory copy {nbytes / 1e6:g} MB ...")
            memory_by_size[str(nbytes)] = memory_bytes_per_s(nbytes=nbytes, repeats=5 if nbytes > 1 << 24 else 15)
            say(f"  {memory_by_size[str(nbytes)] / 1e9:.1f} GB/s (read + write)")
        memory = memory_by_size[str(MEMORY_SIZES_BYTES[-1])]
        say("per-op overhead ...")
        overhead = op_overhead_s()
        say(f"  {overhead * 1e6:.2f} us")
    finally:
        torch.set_num_threads(previous_threads)
    return {
        "schema_version": 1,
        "measured_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python -m pytest_dojo.hostbench " + " ".join(sys.argv[1:])
        if __name__ == "__main__"
        else "pytest_dojo.hostbench.measure_host",
        "threads": threads,
        "machine": machine_info(),
        "matrix_fp32_flops_per_s": matrix["float32"],
        "matrix_bf16_flops_per_s": matrix["bfloat16"],
        "vector_flops_per_s": vector,
        "memory_bytes_per_s": memory,
        "memory_bytes_per_s_by_size": memory_by_size,
        "op_overhead_s": overhead,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_dojo.hostbench", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, metavar="N", help="intra-op threads (default: 1)")
    parser.add_argument("--matrix-size", type=int, default=1024, metavar="N", help="matmul size (default: 1024)")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        metavar="PATH",
        help="calibration file to write (default: hwmodel.host.calibration_path())",
    )
    parser.add_argument("--print-only", action="store_true", help="print the JSON and write nothing")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    from hwmodel.host import calibration_from_dict, calibration_path

    document = measure_host(
        threads=args.threads, matrix_size=args.matrix_size, progress=lambda line: print(line, file=sys.stderr)
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
