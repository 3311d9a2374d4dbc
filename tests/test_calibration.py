"""Fitting per-op-class efficiencies from measured op times, and the validation scripts' plumbing."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwmodel import ChipSpec, OpRecord, SpecError, Workload
from hwmodel.ops.calibration import (
    CalibrationSample,
    efficiency_row,
    fit_efficiency,
    pair_ops,
    write_row,
)
from hwmodel.ops.efficiency import table_from_row
from hwmodel.spec.precision import FP32

OVERHEAD_S = 1e-6
CHIP = ChipSpec(
    name="testchip",
    matrix_bf16_flops_per_s=2e11,
    matrix_fp32_flops_per_s=1e11,
    matrix_tf32_flops_per_s=1e11,
    vector_flops_per_s=1e10,
    compute_units=1,
    matrix_tile_output_elements=64,
    vector_tile_output_elements=64,
    local_memory_bytes=1e12,
    local_memory_read_bytes_per_s=1e10,
    local_memory_write_bytes_per_s=1e10,
    local_memory_full_duplex=False,
    local_memory_kind="dram",
    op_overhead_s=OVERHEAD_S,
    multi_tensor_kernels=True,
    sync_batchnorm=False,
    op_cost_model="efficiency",
    efficiency_row="testchip",
    default_precision="bf16",
)
MATMUL_COMPUTE = 10**-0.3  # on the fit's grid (10^(-k/40), k = 12)
ELEMENTWISE_MEMORY = 10**-0.6  # k = 24


def _op(name: str, flops: float, nbytes: int, phase: str = "forward") -> OpRecord:
    return OpRecord(
        name=name,
        phase=phase,
        module="m",
        flops=flops,
        flop_source="torch",
        bytes_read=nbytes // 2,
        bytes_written=nbytes - nbytes // 2,
        output_elements=4096,
        dtype="float32",
    )


def _sample(index: int) -> CalibrationSample:
    """Compute-bound mms and memory-bound adds, with "measured" times computed by hand:
    mm: flops / (1e11 x 10^-0.3) + 1 us (its 1 MB of traffic takes 0.1 ms at most: compute-bound);
    add: bytes / (1e10 x 10^-0.6) + 1 us (its 1 MFLOP takes 0.1 ms at most: memory-bound)."""
    mm_flops = [2e9 * (index + 1), 5e8]
    add_bytes = [400_000_000, 40_000_000 * (index + 1)]
    ops = tuple(
        [_op("aten.mm.default", f, 1_000_000) for f in mm_flops] + [_op("aten.add.Tensor", 1e6, b) for b in add_bytes]
    )
    measured = [("aten.mm.default", "forward", f / (1e11 * MATMUL_COMPUTE) + OVERHEAD_S) for f in mm_flops]
    measured += [("aten.add.Tensor", "forward", b / (1e10 * ELEMENTWISE_MEMORY) + OVERHEAD_S) for b in add_bytes]
    return CalibrationSample(
        name=f"net{index}", workload=Workload(name=f"net{index}", batch_size=1, ops=ops), measured_ops=tuple(measured)
    )


def test_fit_recovers_the_efficiencies_that_made_the_times() -> None:
    fit = fit_efficiency([_sample(0), _sample(1), _sample(2)], CHIP, FP32, calibration="synthetic")
    by_class = {item.op_class: item for item in fit.classes}
    assert by_class["matmul"].compute == pytest.approx(MATMUL_COMPUTE, rel=1e-9)
    assert by_class["elementwise"].memory == pytest.approx(ELEMENTWISE_MEMORY, rel=1e-9)
    # Not identifiable (the other side is never the bound): ties go to the ceiling.
    assert by_class["matmul"].memory == 1.0
    assert by_class["elementwise"].compute == 1.0
    # No measured op: the class keeps the ceiling and says so.
    assert (by_class["softmax"].compute, by_class["softmax"].memory, by_class["softmax"].paired_ops) == (1.0, 1.0, 0)
    assert by_class["matmul"].predicted_s == pytest.approx(by_class["matmul"].measured_s, rel=1e-9)
    assert by_class["matmul"].overhead == by_class["elementwise"].overhead == 1.0
    assert fit.table.chip == "testchip" and fit.networks == ("net0", "net1", "net2")


def test_ops_timed_by_gemm_shapes_leave_the_memory_fraction_to_the_others() -> None:
    """On a chip with GEMM rates (1e10 FLOP/s at every shape), mms with recorded 64^3 GEMMs take
    524,288 / 1e10 = 52.4 us + 1 us; their 200 KB set only a floor (20 us at the full 1e10 B/s). An mm
    without recorded GEMMs, in the same class, streams 4 MB at 10^-0.6 of the bandwidth + 1 us. The
    fit recovers that fraction and matches every op: had the GEMMs' bytes taken it too (80 us), no
    fraction would."""
    from dataclasses import replace

    from hwmodel.ops.gemm import GemmRateTable

    chip = replace(CHIP, gemm_rates=GemmRateTable(dims=(1, 64), flops_per_s=(1e10,) * 8))
    shaped = replace(_op("aten.mm.default", 2.0 * 64**3, 200_000), gemms=((1, 64, 64, 64),))
    plain = _op("aten.mm.default", 1e3, 4_000_000)
    samples = []
    for index in range(2):
        ops = (shaped,) * (index + 1) + (plain,)
        measured = [("aten.mm.default", "forward", 2.0 * 64**3 / 1e10 + OVERHEAD_S)] * (index + 1)
        measured.append(("aten.mm.default", "forward", 4e6 / (1e10 * ELEMENTWISE_MEMORY) + OVERHEAD_S))
        workload = Workload(name=f"net{index}", batch_size=1, ops=ops)
        samples.append(CalibrationSample(name=f"net{index}", workload=workload, measured_ops=tuple(measured)))
    matmul = next(
        item for item in fit_efficiency(samples, chip, FP32, calibration="t").classes if item.op_class == "matmul"
    )
    assert (matmul.compute, matmul.overhead) == (1.0, 1.0)
    assert matmul.memory == pytest.approx(ELEMENTWISE_MEMORY, rel=1e-9)
    assert matmul.predicted_s == pytest.approx(matmul.measured_s, rel=1e-9)


def test_fit_needs_a_network() -> None:
    with pytest.raises(SpecError, match="at least one network"):
        fit_efficiency([], CHIP, FP32, calibration="none")


def test_pairing_matches_occurrences_per_phase() -> None:
    workload = Workload(
        name="w",
        batch_size=1,
        ops=(_op("aten.mm.default", 1, 8), _op("aten.mm.default", 1, 8, "backward"), _op("aten.mm.default", 1, 8)),
    )
    measured = [
        ("aten.mm.default", "backward", 3.0),
        ("aten.mm.default", "forward", 1.0),
        ("aten.sum.default", "forward", 9.0),
    ]
    pairing = pair_ops(workload, measured)
    assert pairing.op_index.tolist() == [0, 1]
    assert pairing.measured_s.tolist() == [1.0, 3.0]
    assert (pairing.unpaired_captured, pairing.unpaired_measured) == (1, 1)


@settings(max_examples=25, deadline=None)
@given(
    times=st.lists(st.floats(min_value=1e-6, max_value=10.0), min_size=4, max_size=4),
    slowdown=st.floats(min_value=1.0, max_value=50.0),
)
def test_fitted_efficiencies_are_fractions_and_slower_ops_never_raise_them(times: list[float], slowdown: float) -> None:
    base = _sample(0)
    measured = tuple((name, phase, t) for (name, phase, _), t in zip(base.measured_ops, times, strict=True))
    slower = tuple((name, phase, t * slowdown) for name, phase, t in measured)
    fast = fit_efficiency(
        [CalibrationSample(name="a", workload=base.workload, measured_ops=measured)], CHIP, FP32, calibration="a"
    )
    slow = fit_efficiency(
        [CalibrationSample(name="a", workload=base.workload, measured_ops=slower)], CHIP, FP32, calibration="a"
    )
    for table in (fast.table, slow.table):
        assert all(0 < value <= 1 for value in (*table.compute, *table.memory))
    matmul = 0
    # Within one grid step (the search is coarse to fine).
    assert slow.table.compute[matmul] <= fast.table.compute[matmul] * 10 ** (3 / 120) + 1e-12


def test_row_round_trips_through_the_efficiency_file(tmp_path: Path) -> None:
    source = Path(str(resources.files("hwmodel.ops").joinpath("efficiency.json")))
    target = tmp_path / "efficiency.json"
    shutil.copy(source, target)
    fit = fit_efficiency([_sample(0), _sample(1)], CHIP, FP32, calibration="synthetic fit")
    write_row(target, "testchip", efficiency_row(fit, {"what": "test", "command": "pytest"}))
    data = json.loads(target.read_text(encoding="utf-8"))
    assert data["chips"]["host"] == json.loads(source.read_text(encoding="utf-8"))["chips"]["host"]
    table = table_from_row("testchip", data["chips"]["testchip"])
    assert table.compute == pytest.approx(fit.table.compute, rel=1e-5)
    assert table.memory == pytest.approx(fit.table.memory, rel=1e-5)
    assert data["chips"]["testchip"]["provenance"] == {
        "what": "test",
        "command": "pytest",
        "networks": ["net0", "net1"],
    }


def test_shipped_host_row_has_provenance() -> None:
    data = json.loads(resources.files("hwmodel.ops").joinpath("efficiency.json").read_text(encoding="utf-8"))
    row = data["chips"]["host"]
    table_from_row("host", row)
    assert {"what", "when", "machine", "command", "networks"} <= set(row["provenance"])


@pytest.mark.slow
def test_host_held_out_errors_meet_the_targets() -> None:
    """Leave-one-network-out on the committed measurement: median |error| <= 10%, worst <= 25%."""
    from dojo_validation.host import latest_measured, leave_one_out, load_measured, median_absolute_error

    comparisons = leave_one_out(load_measured(latest_measured()))
    assert len(comparisons) == 10
    assert median_absolute_error(comparisons) <= 0.10
    assert max(abs(item.error) for item in comparisons) <= 0.25


def test_functions_timed_by_their_measured_rate_leave_the_compute_fraction_to_the_others() -> None:
    """On a chip that measured ``sqrt`` at 4,096 elements per ms, a sqrt of 4,096 elements computes for
    1 ms; a mul of 1e7 FLOPs at 1e10 FLOP/s for 1 ms at peak, measured at 10^-0.3 of it. Two networks,
    one with one mul and one with two, each with a sqrt: the fit recovers 10^-0.3 and matches both;
    had the sqrt been scaled by the fraction too, no fraction would."""
    from dataclasses import replace

    chip = replace(CHIP, element_rates=(("sqrt", 4096 / 1e-3),))
    sqrt, mul = _op("aten.sqrt.default", 4096.0, 0), _op("aten.mul.Tensor", 1e7, 0)
    fraction = 10**-0.3
    samples = []
    for index in range(2):
        ops = (sqrt,) + (mul,) * (index + 1)
        measured = [("aten.sqrt.default", "forward", 1e-3 + OVERHEAD_S)]
        measured += [("aten.mul.Tensor", "forward", 1e-3 / fraction + OVERHEAD_S)] * (index + 1)
        workload = Workload(name=f"net{index}", batch_size=1, ops=ops)
        samples.append(CalibrationSample(name=f"net{index}", workload=workload, measured_ops=tuple(measured)))
    fitted = next(
        item for item in fit_efficiency(samples, chip, FP32, calibration="t").classes if item.op_class == "elementwise"
    )
    assert fitted.compute == pytest.approx(fraction, rel=1e-9)
    assert fitted.predicted_s == pytest.approx(fitted.measured_s, rel=1e-9)
