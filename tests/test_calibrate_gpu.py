"""``pytest-dojo calibrate-gpu``: the measure file's format (fake timer, no GPU) and the fit on a
device's shipped kernel rows rewritten into that format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dojo_validation.gpu_calibration import document, fit, measure, shapes
from dojo_validation.kernels import data
from dojo_validation.kernels import fit as kernel_fit
from hwmodel import SpecError, System, parse_mesh, simulate
from hwmodel.ops.kernels.from_chip import kernel_device_from_chip
from hwmodel.ops.kernels.parameters import load_parameters
from hwmodel.spec.precision import FP32
from hwmodel.spec.presets import get_preset, register_preset_file
from pytest_dojo.cli import main

V100 = "Tesla V100-PCIE-32GB"


def _fake_timer(run: Any) -> list[float]:
    """Runs the kernel once (so it must build and run), then reports 20 calls of 1 ms and 5 of 3 ms."""
    run()
    return [3e-3] * 5 + [1e-3] * 20


def _tiny_plan() -> list[shapes.KernelShape]:
    rows = [
        ("bmm", {"B": 2, "M": 3, "N": 4, "K": 5}),
        ("linear", {"B": 1, "M": 2, "N": 3, "K": 4}),
        (
            "conv",
            {
                "B": 1,
                "Input_Channel": 2,
                "Output_Channel": 3,
                "Kernel_Szie": 3,
                "Input_Size": 5,
                "Stride": 1,
                "Padding": 1,
            },
        ),
        *((op, {"B": 2, "H": 8}) for op in (*data.ELEMENTWISE_OPS, "ln", "softmax")),
        ("add", {"B": 1 << 20, "H": 1 << 10}),
    ]
    return [shapes.KernelShape(op=op, shape=tuple(sorted(shape.items())), split=shapes.TRAIN) for op, shape in rows]


def test_measure_writes_the_shipped_row_format(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    lines: list[str] = []
    written = measure.run(
        out,
        _tiny_plan(),
        budget_s=60,
        steps=False,
        command="test",
        progress=lines.append,
        device=torch.device("cpu"),
        timer=_fake_timer,
        record={"Device": "Fake GPU"},
    )
    loaded = document.read(out)
    assert loaded == json.loads(json.dumps(written))
    assert len(loaded["kernels"]) == 16 and loaded["kernels"][0]["Latency"] == pytest.approx(1.0)
    assert loaded["kernels"][0]["Median"] == pytest.approx(1.0)
    assert [item["reason"] for item in loaded["skipped"]] == ["tensors exceed a third of free memory"]
    first = loaded["kernels"][0]
    assert set(first) == {"OPName", "Latency", "Median", "Device", "B", "M", "N", "K", "Kernel Count", "Split"}
    assert first["Device"] == "Fake GPU" and first["Split"] == shapes.TRAIN
    rows = document.kernel_rows(loaded["kernels"])
    assert sorted(rows) == ["conv", "matmul", "vector"] and rows["matmul"].latency_s[0] == pytest.approx(1e-3)
    assert any(line.startswith("wrote ") for line in lines)


def test_latency_is_the_mean_of_the_fastest_five_as_the_shipped_data() -> None:
    fastest_five, median = measure.latency_ms([5e-3, 1e-3, 2e-3, 3e-3, 4e-3, 6e-3, 7e-3])
    assert fastest_five == pytest.approx(3.0) and median == pytest.approx(4.0)


def test_the_plan_samples_the_shipped_shapes_with_held_out_ones() -> None:
    plan = shapes.plan(train=3, test=2, ops=("bmm", "conv"))
    assert [(item.op, item.split) for item in plan].count(("bmm", shapes.TRAIN)) == 3
    assert [(item.op, item.split) for item in plan].count(("bmm", shapes.TEST)) == 2
    assert [item.split for item in plan if item.op == "conv"].count(shapes.TEST) == 5 // 3
    assert plan == shapes.plan(train=3, test=2, ops=("bmm", "conv")), "the same seed gives the same shapes"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is visible")
def test_measure_without_a_gpu_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate-gpu", "measure", "--out", str(tmp_path / "gpu.json")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("pytest-dojo calibrate-gpu measure: no CUDA GPU visible to torch") and "\n" not in error
    assert not (tmp_path / "gpu.json").exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["measure"], "the following arguments are required: --out"),
        (["measure", "--out", "x.json", "--budget-s", "0"], "argument --budget-s: must be > 0, got '0'"),
        (["measure", "--out", "x.json", "--train", "-1"], "argument --train: must be a whole number >= 1, got '-1'"),
        (["fit", "x.json"], "the following arguments are required: --chip"),
    ],
)
def test_bad_arguments_are_one_usage_line(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["calibrate-gpu", *arguments])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def _shipped_rows_as_measured(path: Path, per_op: int) -> dict[str, Any]:
    """The shipped V100 rows rewritten as ``calibrate-gpu measure`` writes them (a third of the
    convolutions held out, as the measure plan holds them out)."""
    written = document.new_document(
        device={"Device": V100}, command="test", timing="shipped", measured_utc="2026-12-02T00:00:00Z"
    )
    rng = np.random.default_rng(0)
    for rows in data.load_all().values():
        for op in sorted(set(rows.op.tolist())):
            for split in (shapes.TRAIN, shapes.TEST):
                index = np.flatnonzero((rows.op == op) & (rows.device == V100) & (rows.split == split))
                for position, i in enumerate(index[rng.permutation(len(index))[:per_op]]):
                    shape = {name: int(column[i]) for name, column in rows.shapes.items()}
                    held = split == shapes.TEST or (op == "conv" and position % 3 == 0)
                    latency = float(rows.latency_s[i] * 1e3)
                    written["kernels"].append(
                        document.kernel_record(op, shape, shapes.TEST if held else shapes.TRAIN, V100, latency, latency)
                    )
    written["steps"] = [
        {
            "network": "mlp",
            "size": "small",
            "batch_size": 64,
            "precision": "fp32",
            "step_times_s": [2e-3],
            "median_step_s": 2e-3,
        }
    ]
    document.write(path, written)
    return written


def test_fit_on_v100_rows_writes_a_preset_that_uses_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "v100.json"
    written = _shipped_rows_as_measured(source, per_op=30)
    arguments = ["fit", str(source), "--chip", "v100-pcie-32gb", "--name", "my-v100", "--out-dir", str(tmp_path)]
    assert main(["calibrate-gpu", *arguments, "--per-pair", "30", "--iterations", "30"]) == 0
    output = capsys.readouterr().out
    for heading in ("class", "bmm", "linear", "elementwise", "softmax", "layernorm", "conv", "mlp small b64"):
        assert heading in output
    parameters = load_parameters(tmp_path / "my-v100.kernel-parameters.json")
    recorded = json.loads((tmp_path / "my-v100.kernel-parameters.json").read_text(encoding="utf-8"))
    assert recorded["provenance"]["device"] == V100 and "v100-pcie-32gb" in recorded["provenance"]["device_figures"]
    assert set(recorded["held_out_class_mean_error"]) == {
        "bmm",
        "linear",
        "elementwise",
        "softmax",
        "layernorm",
        "conv",
    }
    # Nelder–Mead keeps its best vertex and starts at the shipped parameters: on the rows it was
    # fitted on, each group's error can only fall.
    device = kernel_device_from_chip(get_preset("v100-pcie-32gb").chip, FP32)
    rows = fit.relabelled(document.kernel_rows(written["kernels"]), device.name)
    for group in kernel_fit.GROUPS:
        pairs = kernel_fit.batches(rows[group.family], group.ops, {device.name: device}, 30)
        assert kernel_fit.mean_relative_error(parameters, pairs) <= kernel_fit.mean_relative_error(
            load_parameters(), pairs
        )
    preset = register_preset_file(tmp_path / "my-v100.toml")
    assert preset.chip.kernel_parameters_file == str(tmp_path / "my-v100.kernel-parameters.json")
    assert preset.chip.matrix_fp32_flops_per_s == get_preset("v100-pcie-32gb").chip.matrix_fp32_flops_per_s
    from hwmodel.ops.cost_model import own_parameters_account

    description, class_errors = own_parameters_account(preset.chip.kernel_parameters_file)
    assert description == f"gpu kernel models, fitted on {V100} kernels (my-v100.kernel-parameters.json)"
    assert dict(class_errors) == recorded["held_out_class_mean_error"]


def test_a_file_that_is_not_a_calibration_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "other.json").write_text('{"format": "something else"}', encoding="utf-8")
    assert main(["calibrate-gpu", "fit", str(tmp_path / "other.json"), "--chip", "h200"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"pytest-dojo calibrate-gpu fit: {tmp_path / 'other.json'} is not a GPU calibration file "
        "(pytest-dojo/gpu-calibration/1); write one with calibrate-gpu measure"
    )


def test_a_preset_naming_a_missing_parameters_file_is_one_line(tmp_path: Path) -> None:
    text = fit.calibrated_preset(fit.preset_text(get_preset("t4"), "t4"), "t4", "t4-mine", "absent.json", "a test")
    (tmp_path / "t4-mine.toml").write_text(text, encoding="utf-8")
    with pytest.raises(SpecError, match=r"t4-mine: kernel_parameters_file '.*absent.json': "):
        register_preset_file(tmp_path / "t4-mine.toml")


def test_a_chip_with_its_own_parameters_is_costed_with_them(tmp_path: Path) -> None:
    """Half the sustained bandwidth doubles a memory-bound step; the shipped preset's figure stays."""
    from dataclasses import replace

    from hwmodel import OpRecord, Workload

    shipped = load_parameters()
    halved = dict(shipped.as_dict(), memory_bandwidth_fraction=shipped.memory_bandwidth_fraction / 2)
    (tmp_path / "slow.json").write_text(json.dumps({"parameters": halved, "provenance": {}}), encoding="utf-8")
    op = OpRecord(
        name="aten.add.Tensor",
        phase="forward",
        module="m",
        flops=4.0,
        flop_source="formula",
        bytes_read=8 * 10**8,
        bytes_written=4 * 10**8,
        output_elements=10**8,
        dtype="float32",
    )
    workload = Workload(name="w", batch_size=1, ops=(op,))
    base = get_preset("t4")
    mesh = parse_mesh("1x1")
    before = simulate(workload, System(chip=base.chip, fabric=base.fabric, mesh=mesh), precision=FP32).step_time_s
    mine = replace(base.chip, name="t4-slow", kernel_parameters_file=str(tmp_path / "slow.json"))
    after = simulate(workload, System(chip=mine, fabric=base.fabric, mesh=mesh), precision=FP32).step_time_s
    assert after == pytest.approx(2 * before, rel=0.05)
    assert (
        simulate(workload, System(chip=base.chip, fabric=base.fabric, mesh=mesh), precision=FP32).step_time_s == before
    )


@pytest.mark.slow  # captures BERT-base (about 10 s of CPU)
def test_fit_predicts_a_measured_transformers_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("transformers")
    source = tmp_path / "v100.json"
    written = _shipped_rows_as_measured(source, per_op=5)
    written["steps"] = [
        {
            "network": "bert",
            "size": "transformers",
            "batch_size": 8,
            "seqlen": 512,
            "precision": "fp32",
            "mode": "forward_backward",
            "step_times_s": [0.2],
            "median_step_s": 0.2,
        }
    ]
    document.write(source, written)
    arguments = ["fit", str(source), "--chip", "v100-pcie-32gb", "--out-dir", str(tmp_path), "--iterations", "5"]
    assert main(["calibrate-gpu", *arguments]) == 0
    (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("bert transformers b8")]
    measured_ms, shipped_ms = (float(cell) for cell in line.split()[3:5])
    assert measured_ms == 200.0 and shipped_ms > 0
