"""Measure real bf16 training steps of the suite networks on one CUDA GPU; write JSON to ``--out``.

Run on the lent H200 through ``dojo_validation/h200/run.sh`` (about 5 minutes in all). For each
(network, size, batch) of :data:`GPU_PLAN`, in order, while the time budget lasts:

1. build the network on the GPU, AdamW(foreach=True), forward and loss under
   ``torch.autocast(bfloat16)`` (``cudnn.benchmark`` only with CUDNN_BENCHMARK=1);
2. warm up, then time steps between CUDA events (median of up to 15, at most a few seconds);
3. time one more step op by op (an event pair around every aten op, at the capture's level).

Before the networks, the GPU's own ceilings are measured (bf16 and fp32/tf32 matmul, copy
bandwidth, per-op overhead) with :mod:`pytest_dojo.hostbench`. The JSON is rewritten after every
network, so a run cut short keeps what it measured. Predictions are made afterwards, on any machine,
by ``dojo_validation/h200/compare_h200.py`` (capture with FakeTensorMode + the h200 preset).

``--dry-run`` runs the same logic on the CPU at ``small`` sizes in seconds (a test of the script).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from dojo_validation import measure
from pytest_dojo import hostbench

GPU_PLAN: tuple[tuple[str, str, int], ...] = (
    # ``full`` sizes at batches that run in tens to hundreds of milliseconds on an H200.
    ("hydranet", "full", 1),
    ("regnety_4_0gf", "full", 128),
    ("cnn", "full", 128),
    ("transformer", "full", 16),
    ("mlp", "full", 1024),
    ("occupancy", "full", 1),
    ("lanes", "full", 1),
    ("efficientdet_d0", "full", 16),
    ("regnety_1_6gf", "full", 128),
    ("regnety_8_0gf", "full", 64),
    # ``small`` sizes: launch-bound steps, a test of the per-op overhead.
    ("hydranet", "small", 8),
    ("cnn", "small", 64),
    ("transformer", "small", 32),
    ("occupancy", "small", 8),
    ("lanes", "small", 8),
)
DRY_RUN_PLAN: tuple[tuple[str, str, int], ...] = (
    ("mlp", "small", 4),
    ("cnn", "small", 2),
    ("transformer", "small", 2),
    ("efficientdet_d0", "small", 2),
    ("nonexistent", "small", 1),
)
FORMAT = "pytest-dojo/h200-measured/1"


def measure_ceilings(device: str, dry_run: bool) -> dict[str, Any]:
    """The device's matmul rates, copy bandwidth and per-op overhead (an error string for any that
    fails, so the networks are still measured)."""
    size = 256 if dry_run else 8192
    copy_bytes = (1 << 22) if dry_run else (1 << 32)
    probes: list[tuple[str, Callable[[], float]]] = [
        ("matrix_bf16_flops_per_s", lambda: hostbench.matrix_flops_per_s("bfloat16", size=size, device=device)),
        ("matrix_fp32_flops_per_s", lambda: hostbench.matrix_flops_per_s("float32", size=size, device=device)),
        ("memory_bytes_per_s", lambda: hostbench.memory_bytes_per_s(nbytes=copy_bytes, device=device)),
        ("op_overhead_s", lambda: hostbench.op_overhead_s(device=device, repeats=3)),
    ]
    if device.startswith("cuda"):
        probes.append(("matrix_tf32_flops_per_s", lambda: _tf32_rate(size, device)))
    ceilings: dict[str, Any] = {}
    for key, probe in probes:
        try:
            ceilings[key] = probe()
        except Exception as error:  # a failed probe must not cost the network measurements
            ceilings[key] = f"{type(error).__name__}: {error}"
    return ceilings


def _tf32_rate(size: int, device: str) -> float:
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        return hostbench.matrix_flops_per_s("float32", size=size, device=device)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = False


def measure_one(name: str, size: str, batch: int, device: str, budget_s: float, dry_run: bool) -> dict[str, Any]:
    """Step times and per-op times of one configuration (an ``error`` key if it could not run)."""
    record: dict[str, Any] = {"network": name, "size": size, "batch_size": batch, "device": device}
    networks = measure.all_networks()
    if name not in networks:
        record["error"] = f"network {name!r} is not registered"
        record["wall_s"] = 0.0
        return record
    autocast = torch.bfloat16 if device.startswith("cuda") else None
    record["precision"] = "bf16-autocast" if autocast is not None else "fp32"
    started = time.perf_counter()
    try:
        step = measure.prepare(networks[name], size, batch, device, autocast_dtype=autocast)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        times = measure.time_steps(step, warmup=1 if dry_run else 3, repeats=3 if dry_run else 15, budget_s=budget_s)
        record["step_times_s"] = times
        record["median_step_s"] = statistics.median(times)
        op_runs = measure.time_ops(step, repeats=1)
        record["ops"] = [[op_name, phase, seconds] for op_name, phase, seconds in op_runs[0]]
        if device.startswith("cuda"):
            record["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated())
        del step
    except Exception as error:  # one network's failure (OOM, an unsupported op) must not stop the run
        record["error"] = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
        record["traceback_tail"] = traceback.format_exc().splitlines()[-6:]
    finally:
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    record["wall_s"] = time.perf_counter() - started
    return record


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path(os.environ.get("OUT", "out")), help="output folder (default: $OUT)"
    )
    parser.add_argument("--budget-s", type=float, default=200.0, help="wall-clock for the networks (default: 200)")
    parser.add_argument("--dry-run", action="store_true", help="CPU, small sizes, a few seconds: tests the script")
    parser.add_argument("--only", default="", help="comma-separated network names to keep from the plan")
    args = parser.parse_args(argv)
    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device visible to torch; use --dry-run for a CPU test", file=sys.stderr)
        return 2
    plan = DRY_RUN_PLAN if args.dry_run else GPU_PLAN
    if args.only:
        keep = set(args.only.split(","))
        plan = tuple(entry for entry in plan if entry[0] in keep)
    args.out.mkdir(parents=True, exist_ok=True)
    output = args.out / ("h200_measured_dry_run.json" if args.dry_run else "h200_measured.json")
    started = time.perf_counter()
    if device == "cpu":
        torch.set_num_threads(1)
    if device == "cuda":
        # Autotuning every convolution shape of a full-size network can take longer than its timing.
        torch.backends.cudnn.benchmark = os.environ.get("CUDNN_BENCHMARK", "0") == "1"
        torch.backends.cuda.matmul.allow_tf32 = False
    document: dict[str, Any] = {
        "format": FORMAT,
        "command": "dojo_validation/h200/run.sh"
        if not args.dry_run
        else "python -m dojo_validation.h200.measure_h200 --dry-run",
        "environment": measure.environment(torch.device(device)),
        "plan": [list(entry) for entry in plan],
        "runs": [],
    }
    print(f"[h200] {document['environment']}", flush=True)
    document["ceilings"] = measure_ceilings(device, args.dry_run)
    print(f"[h200] ceilings {json.dumps(document['ceilings'])} ({time.perf_counter() - started:.0f} s)", flush=True)
    output.write_text(json.dumps(document), encoding="utf-8")
    deadline = started + args.budget_s
    for index, (name, size, batch) in enumerate(plan):
        remaining = deadline - time.perf_counter()
        if remaining < 5:
            document.setdefault("skipped", []).append([name, size, batch])
            continue
        per_config = min(6.0, max(1.0, 0.5 * remaining / (len(plan) - index)))
        record = measure_one(name, size, batch, device, per_config, args.dry_run)
        document["runs"].append(record)
        summary = (
            record.get("error") or f"median {record['median_step_s'] * 1e3:.2f} ms over {len(record['step_times_s'])}"
        )
        print(f"[h200] {name} {size} b{batch}: {summary} ({record['wall_s']:.1f} s)", flush=True)
        output.write_text(json.dumps(document), encoding="utf-8")
    document["total_wall_s"] = time.perf_counter() - started
    output.write_text(json.dumps(document), encoding="utf-8")
    print(f"[h200] wrote {output} in {document['total_wall_s']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
