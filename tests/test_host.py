"""The host preset: calibration file parsing, the chip it builds, its predictions, the plugin option."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwmodel import OpRecord, SpecError, System, Workload, get_preset, parse_mesh, simulate
from hwmodel.ops.calibration import peak_table
from hwmodel.ops.element_rates import ELEMENT_FUNCTIONS
from hwmodel.spec.host import (
    CALIBRATION_ENV,
    HostCalibration,
    calibration_from_dict,
    calibration_path,
    host_chip,
    host_fabric,
    load_calibration,
)
from hwmodel.spec.precision import FP32
from hwmodel.spec.presets import measured_chip_fields
from pytest_dojo import hostbench

HOST_FIELDS = measured_chip_fields("host")


def _document(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "schema_version": 1,
        "measured_utc": "2026-11-28T00:00:00Z",
        "command": "python -m pytest_dojo.hostbench",
        "threads": 1,
        "machine": {"processor": "Test CPU", "hostname": "box", "memory_bytes": 1e10},
        "matrix_fp32_flops_per_s": 1e11,
        "matrix_bf16_flops_per_s": 2e11,
        "vector_flops_per_s": 2e10,
        "memory_bytes_per_s": 1e10,
        "memory_bytes_per_s_by_size": {"262144": 5e10, "268435456": 1e10},
        "op_overhead_s": 1e-5,
        "dispatch_overhead_s": 2e-6,
    }
    document.update(overrides)
    return document


def test_chip_takes_measured_rates_dram_copy_and_cache_tiers() -> None:
    chip = host_chip(calibration_from_dict(_document()), HOST_FIELDS)
    assert chip.name == "host"
    assert chip.matrix_flops_per_s("float32") == 1e11
    assert chip.matrix_flops_per_s("bfloat16") == 2e11
    assert chip.vector_flops_per_s == 2e10
    # The largest copy (256 MiB, past every cache) is DRAM; the smaller sizes are cache tiers, keyed
    # by what the copy moves: a 256 KiB tensor read and written is a 512 KiB footprint.
    assert chip.local_memory_read_bytes_per_s == 1e10
    assert chip.cache_tiers == ((524288.0, 5e10),)
    assert chip.local_memory_kind == "dram"
    assert not chip.local_memory_full_duplex
    assert chip.compute_units == 1
    assert chip.vector_tile_output_elements == 32768  # ATen's GRAIN_SIZE
    assert chip.local_memory_bytes == 1e10
    # An op's fixed cost is one tiny op's dispatch from Python, not a tiny training step's time per op.
    assert chip.op_overhead_s == 2e-6
    assert "Test CPU" in chip.source and "2026-11-28" in chip.source
    fabric = host_fabric(calibration_from_dict(_document()))
    assert fabric.link_bytes_per_s == 5e9  # half the DRAM copy bandwidth per direction


def _mm_workload() -> Workload:
    op = OpRecord(
        name="aten.mm.default",
        phase="forward",
        module="Global",
        flops=2e9,
        flop_source="torch",
        bytes_read=8_000_000,
        bytes_written=4_000_000,
        output_elements=1_000_000,
        dtype="float32",
    )
    return Workload(name="mm", batch_size=1, ops=(op,))


def test_golden_mm_step_on_the_host() -> None:
    """One FP32 mm, 2 GFLOP, 12 MB: compute 2e9 / 1e11 = 20 ms; memory 12e6 / 1e10 = 1.2 ms (12 MB is
    past the 512 KiB tier: DRAM); one wave on one thread (occupancy 1); step = max(20, 1.2) ms + 2 us
    dispatch = 20.002 ms."""
    calibration = calibration_from_dict(_document())
    system = System(chip=host_chip(calibration, HOST_FIELDS), fabric=host_fabric(calibration), mesh=parse_mesh("1x1"))
    report = simulate(_mm_workload(), system, precision=FP32, efficiency=peak_table())
    assert report.step_time_s == pytest.approx(0.020002, rel=1e-12)
    assert report.bound == "compute"


@settings(max_examples=40, deadline=None)
@given(
    factor=st.floats(min_value=1.0, max_value=100.0),
    field=st.sampled_from(["matrix_fp32_flops_per_s", "vector_flops_per_s", "memory_bytes_per_s"]),
    flops=st.floats(min_value=0.0, max_value=1e12),
    nbytes=st.integers(min_value=0, max_value=10**10),
)
def test_faster_host_never_predicts_a_slower_step(factor: float, field: str, flops: float, nbytes: int) -> None:
    ops = (
        OpRecord(
            name="aten.mm.default",
            phase="forward",
            module="m",
            flops=flops,
            flop_source="torch",
            bytes_read=nbytes,
            bytes_written=nbytes // 2,
            output_elements=4096,
            dtype="float32",
        ),
        OpRecord(
            name="aten.add.Tensor",
            phase="backward",
            module="m",
            flops=flops / 100,
            flop_source="formula",
            bytes_read=nbytes,
            bytes_written=nbytes,
            output_elements=10**6,
            dtype="float32",
        ),
    )
    workload = Workload(name="w", batch_size=1, ops=ops)
    table = peak_table()

    def step(document: dict[str, Any]) -> float:
        calibration = calibration_from_dict(document)
        chip, fabric = host_chip(calibration, HOST_FIELDS), host_fabric(calibration)
        system = System(chip=chip, fabric=fabric, mesh=parse_mesh("1x1"))
        return simulate(workload, system, precision=FP32, efficiency=table).step_time_s

    base = _document(memory_bytes_per_s_by_size={})
    faster = _document(memory_bytes_per_s_by_size={}, **{field: base[field] * factor})
    assert step(faster) <= step(base)


def test_gemm_rates_by_shape_are_read_when_measured() -> None:
    table = {"dims": [1, 64], "flops_per_s": [1e9] * 7 + [5e10]}
    chip = host_chip(calibration_from_dict(_document(gemm_flops_per_s=table)), HOST_FIELDS)
    assert chip.gemm_rates is not None
    assert chip.gemm_rates.dims == (1, 64)
    assert chip.gemm_rates.flops_per_s[-1] == 5e10
    assert host_chip(calibration_from_dict(_document()), HOST_FIELDS).gemm_rates is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"matrix_fp32_flops_per_s": -1.0}, "host calibration: matrix_fp32_flops_per_s must be > 0, got -1.0"),
        ({"op_overhead_s": -1e-6}, "host calibration: op_overhead_s must be >= 0, got -1e-06"),
        ({"dispatch_overhead_s": -1e-6}, "host calibration: dispatch_overhead_s must be >= 0, got -1e-06"),
        ({"threads": 0}, "host calibration: threads must be >= 1, got 0"),
        ({"schema_version": 7}, "host calibration schema version 7 is not supported (expected 1)*"),
        ({"vector_flops_per_s": "fast"}, "host calibration is malformed: ValueError*"),
        ({"gemm_flops_per_s": {"dims": [1, 64], "flops_per_s": [1e9]}}, "GEMM rate table: needs 8 rates*"),
        ({"gemm_flops_per_s": {"flops_per_s": [1e9]}}, "host calibration is malformed: KeyError: 'dims'"),
    ],
)
def test_bad_calibration_is_one_line_error(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as error:
        calibration_from_dict(_document(**overrides))
    text = str(error.value)
    assert "\n" not in text
    assert text == message or (message.endswith("*") and text.startswith(message[:-1]))


def test_missing_key_is_one_line_error() -> None:
    document = _document()
    del document["vector_flops_per_s"]
    with pytest.raises(SpecError, match=r"^host calibration is malformed: KeyError: 'vector_flops_per_s'$"):
        calibration_from_dict(document)


def test_missing_file_names_the_remedy(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"cannot read the host calibration .*python -m pytest_dojo\.hostbench"):
        load_calibration(tmp_path / "absent.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(SpecError, match="is not valid JSON"):
        load_calibration(broken)


def test_environment_variable_chooses_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "mine.json"
    target.write_text(json.dumps(_document(vector_flops_per_s=3e10)), encoding="utf-8")
    monkeypatch.setenv(CALIBRATION_ENV, str(target))
    assert calibration_path() == target
    assert load_calibration().vector_flops_per_s == 3e10
    monkeypatch.delenv(CALIBRATION_ENV)
    assert calibration_path().name == "host_calibration.json"


def test_shipped_calibration_is_the_registered_preset() -> None:
    shipped = load_calibration(calibration_path())
    assert isinstance(shipped, HostCalibration)
    assert get_preset("host").chip == host_chip(shipped, HOST_FIELDS)
    assert shipped.threads >= 1 and shipped.measured_utc


def test_microbenchmarks_measure_positive_rates() -> None:
    for value in (
        hostbench.matrix_flops_per_s("float32", size=64, repeats=1),
        hostbench.vector_flops_per_s(elements=1024, repeats=1),
        hostbench.memory_bytes_per_s(nbytes=1 << 16, repeats=1),
        hostbench.op_overhead_s(repeats=1),
        hostbench.dispatch_overhead_s(repeats=1),
    ):
        assert math.isfinite(value) and value > 0


def test_hostbench_command_writes_a_readable_calibration(tmp_path: Path) -> None:
    output = tmp_path / "host.json"
    assert hostbench.main(["--matrix-size", "64", "--gemm-max", "4", "--output", str(output)]) == 0
    calibration = load_calibration(output)
    assert calibration.threads == 1
    assert calibration.command == f"python -m pytest_dojo.hostbench --matrix-size 64 --gemm-max 4 --output {output}"
    assert calibration.gemm_rates is not None and calibration.gemm_rates.dims == (1, 2, 4)
    assert tuple(name for name, _ in calibration.element_rates) == tuple(sorted(ELEMENT_FUNCTIONS))


def test_hostbench_rejects_zero_threads(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        hostbench.main(["--threads", "0"])
    assert exit_info.value.code == 2
    assert "--threads must be >= 1, got 0" in capsys.readouterr().err


def test_hostbench_rejects_a_gemm_grid_that_is_not_a_power_of_two(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        hostbench.main(["--gemm-max", "100"])
    assert exit_info.value.code == 2
    assert "--gemm-max must be a power of two >= 2, got 100" in capsys.readouterr().err


def test_plugin_simulates_on_the_host(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_step="""
import torch

def test_step(dojo):
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
    report = dojo.train_step(model, torch.randn(16, 32))
    assert report.chip == "host" and report.num_chips == 1
    assert 0 < report.mfu <= 1
"""
    )
    result = pytester.runpytest("--dojo-chip=host", "--dojo-mesh=1x1", "--dojo-host-calibration=committed")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*chip host, mesh 1x1 (1 chips*"])


@pytest.mark.parametrize(("chip", "per_sample_gemms"), [("host", True), ("d1", False)])
def test_plugin_captures_with_the_host_calibrations_threads(
    pytester: pytest.Pytester, chip: str, per_sample_gemms: bool
) -> None:
    """The shipped calibration has one thread: on the host preset ATen's one-thread choice (a 1x1
    convolution at batch 2 runs per sample) is captured whatever the session's thread count; on a D1
    the session's two threads are kept (oneDNN, no GEMM calls)."""
    pytester.makepyfile(
        test_threads=f"""
import torch


def test_step(dojo):
    torch.set_num_threads(2)
    model = torch.nn.Sequential(torch.nn.Conv2d(16, 32, 1), torch.nn.Flatten())
    step = dojo.capture(model, torch.randn(2, 16, 4, 4))
    convolution = next(op for op in step.workload(2).ops if op.name == "aten.convolution.default")
    assert bool(convolution.gemms) is {per_sample_gemms}
    assert torch.get_num_threads() == 2
"""
    )
    result = pytester.runpytest(f"--dojo-chip={chip}", "--dojo-mesh=1x1", "--dojo-host-calibration=committed")
    result.assert_outcomes(passed=1)


def test_broken_calibration_leaves_other_presets_and_warns(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    code = "import hwmodel; print(','.join(hwmodel.preset_names()))"
    result = subprocess.run(
        [sys.executable, "-W", "always", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, CALIBRATION_ENV: str(broken)},
    )
    assert "d1" in result.stdout.split(",") and "host" not in result.stdout
    assert f"HostCalibrationWarning: no host preset: host calibration {broken} is not valid JSON" in result.stderr


def test_an_op_that_fits_a_cache_tier_moves_its_bytes_at_that_tier() -> None:
    """Copy rates 5e10 B/s up to 256 KiB, 1e10 B/s beyond: an op reading and writing 64 KiB each
    takes 131,072 B / 5e10 = 2.62 us of memory time; one of 64 MiB each takes 134,217,728 / 1e10 =
    13.4 ms (efficiency 1, the host's memory being shared by reads and writes)."""
    from hwmodel.ops.classes import OP_CLASSES
    from hwmodel.ops.cost import op_costs
    from hwmodel.ops.efficiency import EfficiencyTable
    from hwmodel.spec.precision import FP32

    chip = host_chip(calibration_from_dict(_document()), HOST_FIELDS)
    ones = (1.0,) * len(OP_CLASSES)
    table = EfficiencyTable(chip="host", compute=ones, memory=ones, calibration="test")

    def copy(nbytes: int) -> OpRecord:
        return OpRecord(
            name="aten.clone.default",
            phase="forward",
            module="m",
            flops=0.0,
            flop_source="formula",
            bytes_read=nbytes,
            bytes_written=nbytes,
            output_elements=nbytes // 4,
            dtype="float32",
        )

    workload = Workload(name="copies", batch_size=1, ops=(copy(1 << 16), copy(1 << 26)))
    memory_s = op_costs(workload, chip, table, FP32).memory_s
    assert memory_s.tolist() == pytest.approx([2 * (1 << 16) / 5e10, 2 * (1 << 26) / 1e10])


def test_a_foreach_op_pays_one_launch_per_tensor_on_the_host_and_one_on_a_d1() -> None:
    """``_foreach_mul_`` over 3 parameter tensors: eager PyTorch on a CPU runs 3 kernels (3 x 2 us
    of dispatch at factor 1); a D1 step runs it as one (one barrier, 18.5 ns)."""
    from hwmodel.ops.classes import OP_CLASSES
    from hwmodel.ops.cost import op_costs
    from hwmodel.ops.efficiency import EfficiencyTable
    from hwmodel.spec.precision import FP32

    D1 = get_preset("d1").chip

    ones = (1.0,) * len(OP_CLASSES)
    table = EfficiencyTable(chip="any", compute=ones, memory=ones, calibration="test")
    op = OpRecord(
        name="aten._foreach_mul_.Scalar",
        phase="optimizer",
        module="Global",
        flops=12.0,
        flop_source="formula",
        bytes_read=48,
        bytes_written=48,
        output_elements=12,
        dtype="float32",
        input_ids=(0, 1, 2),
        output_ids=(0, 1, 2),
    )
    workload = Workload(name="update", batch_size=1, ops=(op,))
    host = host_chip(calibration_from_dict(_document()), HOST_FIELDS)
    assert op_costs(workload, host, table, FP32).overhead_s.tolist() == pytest.approx([3 * 2e-6])
    assert op_costs(workload, D1, table, FP32).overhead_s.tolist() == pytest.approx([D1.op_overhead_s])


TIERED = {"262144": 5e10, "2097152": 2e10, "268435456": 1e10}
"""Copy rates of 256 KiB and 2 MiB tensors (footprints 512 KiB and 4 MiB) and the DRAM copy."""


def _memory_op(name: str, nbytes: int, phase: str = "forward", **fields: Any) -> OpRecord:
    """An op reading and writing ``nbytes`` each, with no arithmetic."""
    return OpRecord(
        name=name,
        phase=phase,
        module="m",
        flops=float(fields.pop("flops", 0.0)),
        flop_source="formula",
        bytes_read=nbytes,
        bytes_written=nbytes,
        output_elements=max(1, nbytes // 4),
        dtype="float32",
        **fields,
    )


def _host_costs(ops: tuple[OpRecord, ...], document: dict[str, Any], memory: float = 1.0) -> Any:
    from hwmodel.ops.classes import OP_CLASSES
    from hwmodel.ops.cost import op_costs
    from hwmodel.ops.efficiency import EfficiencyTable

    chip = host_chip(calibration_from_dict(document), HOST_FIELDS)
    count = len(OP_CLASSES)
    table = EfficiencyTable(chip="host", compute=(1.0,) * count, memory=(memory,) * count, calibration="test")
    return op_costs(Workload(name="w", batch_size=1, ops=ops), chip, table, FP32)


def test_a_copy_of_a_measured_size_moves_at_its_rate_and_others_between_two_tiers() -> None:
    """Footprints (read + written) of 512 KiB and 4 MiB are the two measured copies: their rates.
    1 MiB lies a third of the way between them in log size: 5e10^(2/3) x 2e10^(1/3) = 50^(1/3) x 1e10
    = 3.684e10 B/s. 128 MiB is past the largest tier: DRAM, 1e10 B/s."""
    sizes = (1 << 18, 1 << 19, 1 << 21, 1 << 26)
    ops = tuple(_memory_op("aten.clone.default", size) for size in sizes)
    memory_s = _host_costs(ops, _document(memory_bytes_per_s_by_size=TIERED)).memory_s
    rates = [5e10, 50 ** (1 / 3) * 1e10, 2e10, 1e10]
    assert memory_s.tolist() == pytest.approx([2 * size / rate for size, rate in zip(sizes, rates, strict=True)])


def test_a_foreach_op_finds_its_cache_tier_by_its_whole_list() -> None:
    """``_foreach_mul_`` over 4 tensors of 128 KiB: each kernel reads and writes 256 KiB (a 512 KiB
    footprint, the 5e10 B/s tier), but each sweeps its tensor after the other three, so the list's
    1 MiB sets the tier: past the largest, DRAM, 1 MiB / 1e10 = 105 us."""
    op = _memory_op(
        "aten._foreach_mul_.Scalar", 1 << 19, phase="optimizer", input_ids=(0, 1, 2, 3), output_ids=(0, 1, 2, 3)
    )
    assert _host_costs((op,), _document()).memory_s.tolist() == pytest.approx([(1 << 20) / 1e10])


def test_an_op_timed_by_its_gemm_shapes_takes_no_fitted_fraction_of_the_bandwidth() -> None:
    """A 64 x 64 x 64 mm at a measured 1e10 FLOP/s: 524,288 FLOPs take 52.43 us, plus 2 us of dispatch.
    Its 48 KiB move at the 512 KiB tier's 5e10 B/s (0.98 us), whatever the row's memory fraction
    (0.01 here, which would have made them 98 us); an add of the same bytes takes that fraction."""
    gemm_table = {"dims": [1, 64], "flops_per_s": [1e10] * 8}
    mm = OpRecord(
        name="aten.mm.default",
        phase="forward",
        module="m",
        flops=2.0 * 64**3,
        flop_source="torch",
        bytes_read=32768,
        bytes_written=16384,
        output_elements=4096,
        dtype="float32",
        gemms=((1, 64, 64, 64),),
    )
    add = _memory_op("aten.add.Tensor", 24576)
    costs = _host_costs((mm, add), _document(gemm_flops_per_s=gemm_table), memory=0.01)
    assert costs.memory_s.tolist() == pytest.approx([49152 / 5e10, 49152 / (5e10 * 0.01)])
    assert costs.time_s[0] == pytest.approx(2.0 * 64**3 / 1e10 + 2e-6)


def test_a_convolution_without_gemm_calls_moves_its_bytes_at_the_nearest_cache() -> None:
    """A oneDNN convolution (no recorded GEMMs) reading and writing 8 MiB each, on a host with GEMM
    rates: its per-byte work runs in the nearest cache, 16 MiB / (5e10 x 0.5) = 671 us, not at DRAM's
    1e10 B/s as an add of the same footprint does (16 MiB / (1e10 x 0.5) = 3.36 ms)."""
    gemm_table = {"dims": [1, 64], "flops_per_s": [1e10] * 8}
    ops = (_memory_op("aten.convolution.default", 1 << 23), _memory_op("aten.add.Tensor", 1 << 23))
    costs = _host_costs(ops, _document(gemm_flops_per_s=gemm_table), memory=0.5)
    assert costs.memory_s.tolist() == pytest.approx([(1 << 24) / 2.5e10, (1 << 24) / 5e9])
