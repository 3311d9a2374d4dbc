"""What-if studies: sensitivity ranking, scaling curves and side-by-side systems.

Every expected figure is derived by hand from the D1 datasheet numbers in
``docs/reference/dojo-hardware.md`` (written out below, not read from the presets), with every
efficiency at 1.0 so that no calibration can move them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwmodel import HwModelError, Workload, make_system, parse_mesh
from hwmodel.ops.classes import OP_CLASSES
from hwmodel.ops.efficiency import EfficiencyTable
from hwmodel.step.workload import OpRecord, ParameterRecord
from hwmodel.studies.scaling import scaling_curve
from hwmodel.studies.sensitivity import sensitivity
from hwmodel.studies.whatif import KNOBS, compare_systems, knob_names

PEAK_BF16 = 362e12  # D1 chip: BF16 peak [S]
SRAM_READ = 354 * 400e9  # Node: 400 GB/s load x 354 nodes
LINK = 2e12  # D1 chip: ~2 TB/s per edge per direction
HOP = 100e-9  # D1 chip: die-to-die latency
STEP_LATENCY = 2 * HOP  # a collective step: one die-to-die round trip
OP_OVERHEAD = 37 / 2e9  # one barrier across the node array: 37 hops at 2 GHz
BACKING = 800e9 * 20 / 25  # DIP HBM 800 GB/s x 20 DIPs / 25 chips
SRAM = 440e6

UNIT_EFFICIENCY = EfficiencyTable(
    chip="test", compute=(1.0,) * len(OP_CLASSES), memory=(1.0,) * len(OP_CLASSES), calibration="peak"
)
FULL_MATRIX = 64 * 354  # output elements that give each of the 354 nodes one 8x8 tile
FULL_VECTOR = 16 * 354


def matmul(phase: str, flops: float) -> OpRecord:
    """A matrix op of ``flops`` with negligible traffic that occupies every node."""
    return OpRecord(
        name="aten.mm.default",
        phase=phase,
        module="Net",
        flops=flops,
        flop_source="torch",
        bytes_read=64,
        bytes_written=64,
        output_elements=FULL_MATRIX * 100,
        dtype="float32",
    )


def stream(phase: str, bytes_read: int) -> OpRecord:
    """A zero-FLOP op that reads ``bytes_read`` captured FP32 bytes (half that in BF16)."""
    return OpRecord(
        name="aten.add.Tensor",
        phase=phase,
        module="Net",
        flops=0.0,
        flop_source="formula",
        bytes_read=bytes_read,
        bytes_written=0,
        output_elements=FULL_VECTOR * 1000,
        dtype="float32",
    )


def workload(ops: list[OpRecord], parameters: int, batch: int = 1) -> Workload:
    """Ops plus one parameter whose gradient is ready after the last op (its all-reduce is exposed)."""
    return Workload(
        name="synthetic",
        batch_size=batch,
        ops=tuple(ops),
        parameters=(ParameterRecord(name="w", numel=parameters, dtype="float32", grad_ready_op=len(ops) - 1),),
    )


def speedups(result: object) -> dict[str, float]:
    return {entry.knob: entry.speedup for entry in result.entries}  # type: ignore[attr-defined]


def test_compute_bound_step_speeds_up_with_flops_only() -> None:
    """10 ms of matmul, a 4 kB gradient: 2x FLOP/s halves the step, links change nothing."""
    compute_s = 10e-3
    step = workload([matmul("forward", compute_s * PEAK_BF16)], parameters=1000)
    result = sensitivity(step, make_system("d1", "5x5"), efficiency=UNIT_EFFICIENCY)
    found = speedups(result)
    assert found["flops"] == pytest.approx(2.0, rel=1e-3)
    assert found["link_bandwidth"] == pytest.approx(1.0, rel=1e-3)
    assert found["inter_tile_link_bandwidth"] == 1.0
    assert result.entries[0].knob == "flops"
    assert result.baseline.bound == "compute"


def test_ranking_of_compute_link_and_sram_by_hand() -> None:
    """Step = C + M + 2 overheads + all-reduce, nothing overlapped (the gradient is ready last).

    C = 200 us of matmul; M = 40 us of SRAM reads (11.328 GB captured FP32 = 5.664 GB in BF16 at
    141.6 TB/s); the all-reduce of 25e6 FP32 gradients (N = 100 MB) on a 5x5 folded-ring mesh costs
    2 x [4 (alpha + 2h) + 4/5 N/B] + 2 x [4 (alpha + 2h) + 4/5 (N/5)/B]
    = 16 x 400 ns + 1.92 N/B = 6.4 us + 96 us.
    """
    compute_s, memory_s = 200e-6, 40e-6
    latency_s, bandwidth_s = 16 * (STEP_LATENCY + 2 * HOP), 1.92 * 100e6 / LINK
    step = workload(
        [matmul("forward", compute_s * PEAK_BF16), stream("backward", int(2 * memory_s * SRAM_READ))],
        parameters=25_000_000,
    )
    base = compute_s + memory_s + 2 * OP_OVERHEAD + latency_s + bandwidth_s
    expected = {
        "flops": base / (base - compute_s / 2),
        "link_bandwidth": base / (base - bandwidth_s / 2),
        "local_memory_bandwidth": base / (base - memory_s / 2),
        "hop_latency": base / (base - latency_s / 2),
        "op_overhead": base / (base - OP_OVERHEAD),
        "local_memory_capacity": 1.0,
        "inter_tile_link_bandwidth": 1.0,
        "backing_memory_bandwidth": 1.0,
    }
    result = sensitivity(step, make_system("d1", "5x5"), efficiency=UNIT_EFFICIENCY)
    assert result.baseline.step_time_s == pytest.approx(base, rel=1e-9)
    assert [entry.knob for entry in result.entries] == list(expected)
    for knob, speedup in expected.items():
        assert speedups(result)[knob] == pytest.approx(speedup, rel=1e-9), knob
    # With half the compute (100 us) the exposed all-reduce (102.4 us) is the largest part.
    assert result.entries[0].describe() == f"2x FLOP/s: {expected['flops']:.2f}x faster (bound link)"
    assert result.ranked_lines()[3].startswith("1/2x hop latency: ")


def test_ranking_of_a_spilling_step_by_hand() -> None:
    """One chip, 54e6 parameters: 6 + 4 bytes each (BF16 + FP32 weights, FP32 gradients) = 540 MB,
    100 MB over the 440 MB SRAM, spilled out and back: S = 200 MB / 640 GB/s = 312.5 us.
    Compute C = 100 us. 2x SRAM ends the spill, 2x DIP bandwidth halves it, 2x FLOP/s halves C.
    """
    compute_s = 100e-6
    spill_s = 2 * (540e6 - SRAM) / BACKING
    step = workload([matmul("forward", compute_s * PEAK_BF16)], parameters=54_000_000)
    result = sensitivity(step, make_system("d1", "1x1"), efficiency=UNIT_EFFICIENCY)
    base = compute_s + OP_OVERHEAD + spill_s
    assert result.baseline.step_time_s == pytest.approx(base, rel=1e-9)
    assert result.baseline.bound == "hbm"
    ranked = [entry.knob for entry in result.entries[:3]]
    assert ranked == ["local_memory_capacity", "backing_memory_bandwidth", "flops"]
    found = speedups(result)
    assert found["local_memory_capacity"] == pytest.approx(base / (base - spill_s), rel=1e-9)
    assert found["backing_memory_bandwidth"] == pytest.approx(base / (base - spill_s / 2), rel=1e-9)
    assert found["flops"] == pytest.approx(base / (base - compute_s / 2), rel=1e-9)


def test_knob_selection_and_bad_input() -> None:
    step = workload([matmul("forward", 1e9)], parameters=10)
    system = make_system("d1", "2x2")
    result = sensitivity(step, system, knobs=["flops", "hop_latency"], factor=4.0, efficiency=UNIT_EFFICIENCY)
    assert [entry.knob for entry in result.entries] == ["flops", "hop_latency"]
    assert result.entries[1].describe().startswith("1/4x hop latency")
    with pytest.raises(HwModelError, match="unknown what-if knob 'sram'"):
        sensitivity(step, system, knobs=["sram"])
    with pytest.raises(HwModelError, match="factor must be > 1"):
        sensitivity(step, system, factor=0.5)
    assert knob_names() == tuple(knob.name for knob in KNOBS)
    assert "ingest_bandwidth" not in speedups(sensitivity(step, system, efficiency=UNIT_EFFICIENCY))


def test_a_custom_knob_combines_changes() -> None:
    """2x FLOP/s and 2x SRAM bandwidth at once halve both parts of the hand-computed step."""
    from hwmodel.studies.whatif import Hardware, Knob

    def both(hardware: Hardware, factor: float) -> Hardware:
        for knob in KNOBS:
            if knob.name in ("flops", "local_memory_bandwidth"):
                hardware = knob.improve(hardware, factor)
        return hardware

    compute_s, memory_s = 200e-6, 40e-6
    step = workload(
        [matmul("forward", compute_s * PEAK_BF16), stream("backward", int(2 * memory_s * SRAM_READ))], parameters=1
    )
    result = sensitivity(
        step,
        make_system("d1", "1x1"),
        knobs=["flops", Knob(name="both", label="FLOP/s and SRAM bandwidth", improve=both)],
        efficiency=UNIT_EFFICIENCY,
    )
    base = compute_s + memory_s + 2 * OP_OVERHEAD
    assert [entry.knob for entry in result.entries] == ["both", "flops"]
    assert result.entries[0].speedup == pytest.approx(base / (base - compute_s / 2 - memory_s / 2), rel=1e-9)


@settings(max_examples=30, deadline=None)
@given(
    flops=st.floats(min_value=1e6, max_value=1e13),
    parameters=st.integers(min_value=1, max_value=20_000_000),
    mesh=st.sampled_from(["1x1", "1x2", "2x2", "5x5", "10x15"]),
)
def test_no_improvement_slows_a_step(flops: float, parameters: int, mesh: str) -> None:
    """Physical invariant: improving any parameter never makes the step slower."""
    step = workload([matmul("forward", flops), stream("backward", 10_000_000)], parameters=parameters)
    result = sensitivity(step, make_system("d1", mesh), efficiency=UNIT_EFFICIENCY)
    assert all(entry.speedup >= 1.0 - 1e-12 for entry in result.entries)
    assert [entry.speedup for entry in result.entries] == sorted((e.speedup for e in result.entries), reverse=True)


def batched(flops_per_sample: float, parameters: int, memory_bytes_per_sample: int = 0):  # type: ignore[no-untyped-def]
    """A step whose work grows with the batch, as a captured network's does."""

    def at(batch: int) -> Workload:
        ops = [matmul("forward", flops_per_sample * batch)]
        if memory_bytes_per_sample:
            ops.append(stream("backward", memory_bytes_per_sample * batch))
        return workload(ops, parameters=parameters, batch=batch)

    return at


MESHES = [(name, parse_mesh(name)) for name in ("1x1", "2x2", "5x5")]


def test_weak_scaling_efficiency_by_hand() -> None:
    """Per-chip batch 4 of 1 ms/sample: T1 = 4 ms + overheads; on 5x5 the 40 MB all-reduce adds
    6.4 us + 1.92 x 40 MB / 2 TB/s = 44.8 us; on 2x2: 2 x [1 (alpha + h) + N/2/B] +
    2 x [1 (alpha + h) + (N/2)/2/B] = 4 x 300 ns + 1.5 N/B = 1.2 us + 30 us.
    """
    compute_s = 1e-3
    curve = scaling_curve(
        batched(compute_s * PEAK_BF16, 10_000_000), "d1", MESHES, mode="weak", batch=4, efficiency=UNIT_EFFICIENCY
    )
    single = 4 * compute_s + OP_OVERHEAD
    two_by_two = single + 4 * (STEP_LATENCY + HOP) + 1.5 * 40e6 / LINK
    tile = single + 16 * (STEP_LATENCY + 2 * HOP) + 1.92 * 40e6 / LINK
    points = curve.points
    assert [p.global_batch for p in points] == [4, 16, 100]
    assert points[0].efficiency == 1.0
    assert points[1].efficiency == pytest.approx(single / two_by_two, rel=1e-9)
    assert points[2].efficiency == pytest.approx(single / tile, rel=1e-9)
    assert points[2].samples_per_s == pytest.approx(100 / tile, rel=1e-9)


def test_strong_scaling_splits_the_global_batch_and_skips_what_does_not_split() -> None:
    curve = scaling_curve(batched(1e9, 1000), "d1", MESHES, mode="strong", batch=100, efficiency=UNIT_EFFICIENCY)
    assert [p.per_chip_batch for p in curve.points] == [100, 25, 4]
    odd = scaling_curve(batched(1e9, 1000), "d1", MESHES, mode="strong", batch=10, efficiency=UNIT_EFFICIENCY)
    assert odd.points[2].report is None
    assert odd.points[2].reason == "global batch 10 does not split over 25 chips"
    assert odd.points[2].samples_per_s is None and odd.points[2].efficiency is None


def test_a_point_that_does_not_fit_keeps_its_reason() -> None:
    """3e9 parameters x 10 bytes = 30 GB per replica: more than 440 MB SRAM + 25.6 GB of DIP HBM."""
    curve = scaling_curve(batched(1e9, 3_000_000_000), "d1", MESHES, mode="weak", batch=1)
    assert all(point.report is None for point in curve.points)
    assert "use more chips or a smaller batch" in curve.points[0].reason


@settings(max_examples=25, deadline=None)
@given(
    flops_per_sample=st.floats(min_value=1e8, max_value=1e13),
    parameters=st.integers(min_value=1, max_value=30_000_000),
    memory_bytes=st.integers(min_value=0, max_value=10_000_000),
    mode=st.sampled_from(["strong", "weak"]),
)
def test_scaling_efficiency_never_exceeds_one_without_spill(
    flops_per_sample: float, parameters: int, memory_bytes: int, mode: str
) -> None:
    """Without spill (<= 300 MB of weights and gradients), more chips never do better than linear."""
    meshes = [(name, parse_mesh(name)) for name in ("1x1", "2x2", "5x5", "10x15")]
    curve = scaling_curve(
        batched(flops_per_sample, parameters, memory_bytes),
        "d1",
        meshes,
        mode=mode,
        batch=300,
        efficiency=UNIT_EFFICIENCY,
    )
    efficiencies = [p.efficiency for p in curve.points if p.efficiency is not None]
    assert efficiencies and all(0 < value <= 1.0 + 1e-12 for value in efficiencies)


def test_compare_systems_side_by_side() -> None:
    """A tile against a 2x2 slice at 2 samples per chip: the same 2 ms of compute per chip, and an
    all-reduce of 40 MB that costs 16 x 400 ns + 1.92 x 40 MB / 2 TB/s on the tile."""
    rows = compare_systems(
        batched(1e-3 * PEAK_BF16, 10_000_000),
        [("tile", make_system("d1", "5x5")), ("slice", make_system("d1", "2x2"))],
        per_chip_batch=2,
        efficiency=UNIT_EFFICIENCY,
    )
    assert [row.report.global_batch for row in rows if row.report] == [50, 8]
    per_chip = [row.samples_per_s_per_chip for row in rows]
    assert per_chip[0] is not None and per_chip[1] is not None
    tile_step = 2e-3 + OP_OVERHEAD + 16 * (STEP_LATENCY + 2 * HOP) + 1.92 * 40e6 / LINK
    assert per_chip[0] == pytest.approx(2 / tile_step, rel=1e-9)
    assert per_chip[0] < per_chip[1]


def test_precision_defaults_to_the_chip_presets() -> None:
    """The host preset trains in FP32, the D1 in BF16 mixed precision, unless a study says otherwise."""
    from hwmodel import get_preset
    from hwmodel.spec.precision import MIXED_BF16

    step = workload([matmul("forward", 1e9)], parameters=10)
    rows = compare_systems(
        lambda batch: step, [("host", make_system("host", "1x1")), ("d1", make_system("d1", "1x1"))], per_chip_batch=1
    )
    assert [row.report.precision for row in rows if row.report] == [
        get_preset("host").precision.compute_dtype,
        "bfloat16",
    ]
    forced = sensitivity(step, make_system("host", "1x1"), knobs=["flops"], precision=MIXED_BF16)
    assert forced.baseline.precision == "bfloat16"


def test_plan_of_a_report_round_trips() -> None:
    from hwmodel.search.plans import Plan
    from hwmodel.studies.whatif import plan_of

    step = workload([matmul("forward", 1e9)], parameters=10)
    report = sensitivity(step, make_system("d1", "5x5"), efficiency=UNIT_EFFICIENCY).baseline
    assert plan_of(report) == Plan(data_parallel=25)
    with pytest.raises(HwModelError, match="cannot read the plan 'auto'"):
        plan_of(dataclasses.replace(report, plan="auto"))


PLUGIN_TEST = """
import torch

def test_mlp_step(dojo):
    model = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 8))
    dojo.train_step(model, torch.randn(100, 256))
"""


def test_plugin_option_adds_the_ranked_sensitivity(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_step=PLUGIN_TEST)
    result = pytester.runpytest("--dojo-mesh=2x2", "--dojo-sensitivity")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*dojo: simulated training steps*",
            "*dojo: hardware sensitivity (one parameter at a time, 2x better)*",
            "test_step.py::test_mlp_step [[]Sequential[]]:",
            "  1. 2x *: *.??x faster (bound *)",
        ]
    )
    ranked = [line for line in result.stdout.lines if line.startswith("  ") and "x faster" in line]
    assert len(ranked) == 8  # every knob but ingest (no data feed in the plugin)
    speedups = [float(line.split(": ")[1].split("x faster")[0]) for line in ranked]
    assert speedups == sorted(speedups, reverse=True) and speedups[-1] >= 1.0


def test_plugin_sensitivity_follows_the_plan_of_the_step(pytester: pytest.Pytester) -> None:
    """A pipelined step is re-simulated under its own plan (read back from the report)."""
    pytester.makepyfile(
        test_step="""
import torch
from hwmodel import Plan

def test_pipelined(dojo):
    layers = [torch.nn.Linear(256, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 1024), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(1024, 8))
    plan = Plan(data_parallel=2, pipeline_parallel=2, micro_batches=4)
    assert dojo.train_step(model, torch.randn(64, 256), plan=plan).plan == "dp=2 pp=2 mb=4"
"""
    )
    result = pytester.runpytest("--dojo-mesh=2x2", "--dojo-sensitivity")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["test_step.py::test_pipelined [[]Sequential[]]:", "  1. *x faster (bound *)"])
    assert "not available" not in result.stdout.str()


def test_plugin_without_the_option_prints_no_sensitivity(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_step=PLUGIN_TEST)
    result = pytester.runpytest("--dojo-mesh=2x2")
    result.assert_outcomes(passed=1)
    assert "hardware sensitivity" not in result.stdout.str()


def test_plugin_help_lists_the_option(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--dojo-sensitivity*After the summary, rank hardware changes*"])


@pytest.mark.slow
def test_plugin_sensitivity_under_xdist(pytester: pytest.Pytester) -> None:
    """Workers compute the ranking where the captured step lives and send it to the controller."""
    pytester.makepyfile(test_step=PLUGIN_TEST + PLUGIN_TEST.replace("test_mlp_step", "test_other_step"))
    result = pytester.runpytest_subprocess("-n", "2", "--dojo-mesh=2x2", "--dojo-sensitivity")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines_random(
        ["test_step.py::test_mlp_step [[]Sequential[]]:", "test_step.py::test_other_step [[]Sequential[]]:"]
    )


def whatif(*arguments: str) -> int:
    """``pytest-dojo whatif ARGUMENTS``, in this process."""
    from pytest_dojo.cli import main

    return main(["whatif", *arguments])


def test_cli_ingest_flags_the_links_that_cannot_keep_up(capsys: pytest.CaptureFixture[str]) -> None:
    """300 samples/s per chip of 14.75 MB: PCIe feeds 640 GB/s / 150 chips / 14.7456 MB = 289 per
    chip (too few), Ethernet 452, both 741; a tile's 25 samples take 368.64 MB / 106.7 GB/s = 3.456 ms."""
    assert whatif("ingest", "--meshes", "tile", "--samples-per-s", "300") == 0
    rows = {line.split()[1]: line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("tile")}
    assert rows["pcie"][6:10] == ["3.456", "7,234", "host", "pcie"] and rows["pcie"][-1] == "INGEST-BOUND"
    assert rows["ethernet"][-1] == "ok" and rows["pcie+ethernet"][-1] == "ok"


def test_cli_bad_input_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert whatif("ingest", "--meshes", "0x5") == 2
    assert capsys.readouterr().err == "error: mesh must have at least 1 row and 1 column, got '0x5'\n"


@pytest.mark.slow
def test_cli_studies_of_a_captured_network(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """The small HydraNet captured for real: tables print and the PNG plots are written."""
    sensitivity_png, scaling_png = tmp_path / "sensitivity.png", tmp_path / "scaling.png"
    assert (
        whatif("sensitivity", "--size", "small", "--mesh", "2x2", "--ingest", "pcie", "--plot", str(sensitivity_png))
        == 0
    )
    assert (
        whatif("scaling", "--size", "small", "--meshes", "1x1,2x2", "--global-batch", "4", "--plot", str(scaling_png))
        == 0
    )
    assert whatif("compare", "--size", "small", "--systems", "d1:2x2,h100:1x8") == 0
    out = capsys.readouterr().out
    assert "2x host ingest bandwidth" not in out and "host ingest bandwidth" in out
    assert "strong scaling (fixed global batch) of hydranet/small on d1" in out
    assert "h100 1x8" in out
    for png in (sensitivity_png, scaling_png):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
