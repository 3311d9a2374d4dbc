"""The host preset against steps measured now, with the committed rates and with rates measured now.

    pytest-dojo validate host --now mlp,cnn --runs 3

What the plugin's ``--dojo-host-calibration=measured`` buys on a machine whose rates are not the
committed calibration's. Each run: (1) this machine's rates, as the plugin measures them on first use
(:func:`pytest_dojo.hostbench.measure_host`, the quick GEMM grid); (2) each network's real step,
median of 11 after 2 warm-up steps (thread CPU time, one thread), as ``validate host --measure``
times it; (3) two predictions of the host preset, 1x1, FP32, with the efficiency row fitted on the
newest committed measurement *without that network* (leave-one-out: the network was never fitted
on): one on the committed rates, one on the rates of (1). Printed per run, then per network the
median and the spread (lowest to highest) of predicted / measured over the runs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from dojo_validation import host, measure
from hwmodel import make_system, simulate
from hwmodel.ops.efficiency import EfficiencyTable
from hwmodel.spec.host import HostCalibration, calibration_from_dict, host_fabric, load_calibration, with_calibration
from hwmodel.spec.precision import FP32
from hwmodel.spec.system import System

TARGET = 0.15
"""Largest |predicted / measured - 1| that passes, with the rates measured now."""


@dataclass(frozen=True, kw_only=True)
class NowRow:
    """One network in one run: measured now, predicted on the committed rates and on today's."""

    network: str
    measured_s: float
    committed_s: float
    measured_rates_s: float


def host_system(calibration: HostCalibration) -> System:
    """The host preset, 1x1, on ``calibration``'s rates."""
    system = make_system("host", "1x1")
    return System(chip=with_calibration(system.chip, calibration), fabric=host_fabric(calibration), mesh=system.mesh)


def held_out_tables(names: Sequence[str], document: dict[str, Any]) -> dict[str, EfficiencyTable]:
    """Per network, the efficiency row fitted on every other network of the committed ``document``."""
    samples = host.samples(document)
    return {
        name: host.fit([s for s in samples if s.name != name], calibration=f"leave-one-out without {name}").table
        for name in names
    }


def step_now(name: str, threads: int = host.DEFAULT_THREADS) -> float:
    """Median seconds of ``name``'s real step now, timed as ``validate host --measure`` times it."""
    torch.set_num_threads(threads)
    step = measure.prepare(measure.all_networks()[name], host.HOST_SIZE, host.HOST_BATCHES[name], "cpu")
    return statistics.median(measure.time_steps(step, warmup=2, repeats=11, budget_s=30.0))


def one_run(
    names: Sequence[str], tables: dict[str, EfficiencyTable], say: Callable[[str], None]
) -> tuple[HostCalibration, list[NowRow]]:
    """Rates now, then each network's step now and its two predictions."""
    from pytest_dojo import hostbench

    rates = calibration_from_dict(hostbench.measure_host(gemm_repeats=2, command="pytest-dojo validate host --now"))
    committed, today = make_system("host", "1x1"), host_system(rates)
    rows = []
    for name in names:
        workload = host.capture(name, host.HOST_SIZE, host.HOST_BATCHES[name])
        predicted = [
            simulate(workload, system, precision=FP32, efficiency=tables[name]).step_time_s
            for system in (committed, today)
        ]
        rows.append(
            NowRow(network=name, measured_s=step_now(name), committed_s=predicted[0], measured_rates_s=predicted[1])
        )
        say(f"  {name}: measured {rows[-1].measured_s * 1e3:.2f} ms")
    return rates, rows


def rate_ratios(now: HostCalibration, committed: HostCalibration) -> str:
    """The rates that differ between ``now`` and ``committed``, as ratios, and what ``now`` measured
    that ``committed`` may lack (a function's element rate, the cold GEMM operand rate)."""
    pairs = [
        ("fp32 matmul", now.matrix_fp32_flops_per_s / committed.matrix_fp32_flops_per_s),
        ("DRAM copy", now.memory_bytes_per_s / committed.memory_bytes_per_s),
        *(
            (f"{size / 2**20:g} MiB tier", rate / old)
            for (size, rate), (_, old) in zip(now.cache_tiers, committed.cache_tiers, strict=False)
        ),
        ("vector", now.vector_flops_per_s / committed.vector_flops_per_s),
        ("dispatch", now.dispatch_overhead_s / committed.dispatch_overhead_s),
        ("tiny step per op", now.op_overhead_s / committed.op_overhead_s),
    ]
    figures = ", ".join(f"{label} x{ratio:.2f}" for label, ratio in pairs)
    elements = dict(now.element_rates)
    if "sqrt" in elements:
        figures += f"; sqrt {elements['sqrt'] / 1e9:.2f} Gelem/s"
    if now.gemm_cold_operand_bytes_per_s is not None:
        figures += f", cold GEMM operands {now.gemm_cold_operand_bytes_per_s / 1e9:.2f} GB/s"
    return figures


def report(names: Sequence[str], runs: int, say: Callable[[str], None] = print) -> int:
    """Measure ``runs`` times and print the tables; 0 when every median ratio with today's rates is
    within :data:`TARGET`, else 1."""
    path = host.latest_measured()
    say(f"efficiency rows: leave-one-out on {path.name}; load before: {_load()}")
    tables = held_out_tables(names, host.load_measured(path))
    committed = load_calibration()
    ratios: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for run in range(1, runs + 1):
        started = time.perf_counter()
        rates, rows = one_run(names, tables, say)
        say(
            f"run {run}/{runs} ({time.perf_counter() - started:.0f} s, load {_load()}): rates now / committed: "
            f"{rate_ratios(rates, committed)}"
        )
        say(
            f"  {'network':<12} {'measured ms':>11} {'committed rates ms':>18} {'ratio':>6} "
            f"{'rates now ms':>12} {'ratio':>6}"
        )
        for row in rows:
            pair = (row.committed_s / row.measured_s, row.measured_rates_s / row.measured_s)
            ratios[row.network].append(pair)
            say(
                f"  {row.network:<12} {row.measured_s * 1e3:>11.2f} {row.committed_s * 1e3:>18.2f} {pair[0]:>6.2f} "
                f"{row.measured_rates_s * 1e3:>12.2f} {pair[1]:>6.2f}"
            )
    say(f"predicted / measured over {runs} run(s): median (lowest-highest)")
    passed = True
    for name, pairs in ratios.items():
        old, new = ([pair[i] for pair in pairs] for i in (0, 1))
        passed &= abs(statistics.median(new) - 1) <= TARGET
        say(
            f"  {name:<12} committed rates {statistics.median(old):.2f} ({min(old):.2f}-{max(old):.2f})   "
            f"rates now {statistics.median(new):.2f} ({min(new):.2f}-{max(new):.2f})"
        )
    say(f"target: rates now within {TARGET:.0%} of the measured step: {'met' if passed else 'NOT met'}")
    return 0 if passed else 1


def _load() -> str:
    """The 1-minute load average (what else shares the machine)."""
    import os

    return f"{os.getloadavg()[0]:.2f}"
