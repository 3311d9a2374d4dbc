"""Validation of the GPU kernel models: the shipped data, leave-one-device-out and predict-kernels."""

from __future__ import annotations

import csv
import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dojo_validation.kernels import data, lodo
from dojo_validation.steps.labels import DATA_DIR as STEP_DATA
from hwmodel.ops.kernels.parameters import PARAMETER_NAMES, load_parameters, load_provenance

DEVICE_FILE = data.DATA_DIR / "devices" / "Tesla_T4.json"


def test_the_data_ships_with_its_licence_and_readme() -> None:
    assert (data.DATA_DIR / "LICENSE.NeuSight").read_text().startswith("MIT License")
    assert "NeuSight" in (data.DATA_DIR / "README.md").read_text()
    for stem in (*set(data.TRAIN_FILES.values()), *data.TEST_FILES):
        assert (data.DATA_DIR / f"{stem}.csv.gz").is_file(), stem
    assert set(lodo.devices_by_name()) >= {*lodo.TRAIN_DEVICES, lodo.TEST_ONLY_DEVICE}


def test_recorded_parameters_say_where_they_came_from() -> None:
    provenance = load_provenance()
    assert provenance["devices"] == list(lodo.TRAIN_DEVICES)
    assert provenance["command"].startswith("pytest-dojo validate kernels --write-parameters")
    assert {"date", "files", "rows", "objective"} <= set(provenance)
    assert len(PARAMETER_NAMES) <= 14


def test_a_small_fold_runs_and_returns_a_table() -> None:
    rows = data.load(["bmm", "test_bmm", "add", "relu", "test_elem"])
    results = lodo.leave_one_device_out(rows, lodo.devices_by_name(), folds=("Tesla P4",), per_pair=40, iterations=8)
    assert set(results["bmm"].model) == {"Tesla P4"}
    assert np.all(results["elementwise"].pooled() >= 0)
    lines = lodo.table(results)
    assert lines[0].split()[:4] == ["class", "rows", "mean", "p90"]
    assert {line.split()[0] for line in lines[2:]} == {"bmm", "elementwise"}


def test_every_device_seen_scores_each_devices_test_rows_with_one_fit() -> None:
    """The comparison table: one set of parameters, every device's test rows, no convolution (whose
    rows are all train shapes, so in the fit)."""
    rows = data.load(["test_bmm", "test_elem"])
    results = lodo.every_device_seen(rows, lodo.devices_by_name(), load_parameters())
    assert set(results["bmm"].model) == {*lodo.TRAIN_DEVICES, lodo.TEST_ONLY_DEVICE}
    assert "conv" not in results and not results["linear"].model
    assert [line.split()[0] for line in lodo.table(results)[2:]] == ["bmm", "elementwise"]


@pytest.fixture(scope="module")
def full_results() -> dict[str, lodo.Scores]:
    return lodo.leave_one_device_out(data.load_all(), lodo.devices_by_name())


@pytest.fixture(scope="module")
def full_leave_one_device_out(full_results: dict[str, lodo.Scores]) -> dict[str, float]:
    return lodo.class_means(full_results)


MISSED = {
    "linear": (
        "P100's X W^T kernels (cuBLAS's Pascal 32x128 / 64x64 family) fall from 73% to 29% of its FP32 peak "
        "on 30,522+ inputs, while P4's test rows ran a 128x128 family no training row ran (docs/fidelity.md)"
    ),
}
"""Classes whose target the model does not meet yet, and why; an XPASS (strict) asks to drop them."""


@pytest.mark.slow
@pytest.mark.parametrize(
    "op_class",
    [
        pytest.param(name, marks=pytest.mark.xfail(reason=MISSED[name], strict=True)) if name in MISSED else name
        for name in sorted(lodo.TARGETS)
    ],
)
def test_leave_one_device_out_meets_the_target(full_leave_one_device_out: dict[str, float], op_class: str) -> None:
    """Each class's mean error on devices the fit never saw is at most NeuSight's published
    out-of-distribution figure (LayerNorm: 25%)."""
    assert full_leave_one_device_out[op_class] <= lodo.TARGETS[op_class]


@pytest.mark.slow
def test_convolutions_on_unseen_devices_beat_the_roofline(full_results: dict[str, lodo.Scores]) -> None:
    """Convolution has no published target; the model must at least beat the plain roofline on the
    devices it never saw (as an implicit GEMM alone it did not: 44.0% against 42.1%)."""
    conv = full_results["conv"]
    assert float(np.mean(conv.pooled("model"))) < float(np.mean(conv.pooled("roofline")))


def _fraction_of_fp32_peak(rows: data.KernelRows, device: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Shapes and the achieved fraction of the FP32 peak (as the device's record gives it) of
    ``device`` 's rows of over 1 ms."""
    peak = data.device_records()[device]["SingleFLOPs"] * 1e9
    mask = (rows.device == device) & (rows.latency_s > 1e-3)
    shapes = {name: column[mask] for name, column in rows.shapes.items()}
    flops = 2.0 * shapes["B"] * shapes["M"] * shapes["N"] * shapes["K"]
    return shapes, flops / rows.latency_s[mask] / peak


def test_wide_linear_rows_collapse_on_p100_and_not_on_v100() -> None:
    """The measured cause of P100's linear error: its X W^T kernels reach 73% of the FP32 peak on
    fewer than 4,096 input features and 29% on 30,522 or more (2.5x slower); P4's newer kernels
    1.6x, V100 1.16x (docs/fidelity.md, "GPU kernels, leave one device out")."""
    rows = data.load(["test_linear"])["matmul"]
    expected = {  # device: (median fraction on narrow rows, on wide rows)
        "Tesla P100-PCIE-16GB": (0.731, 0.290),
        "Tesla P4": (0.798, 0.501),
        "Tesla V100-PCIE-32GB": (0.964, 0.830),
    }
    for device, (narrow, wide) in expected.items():
        shapes, fraction = _fraction_of_fp32_peak(rows, device)
        assert float(np.median(fraction[shapes["N"] < 4096])) == pytest.approx(narrow, abs=0.002), device
        assert float(np.median(fraction[shapes["N"] >= 30522])) == pytest.approx(wide, abs=0.002), device


def test_v100_runs_its_train_shape_gemms_nearest_its_peak() -> None:
    """Why V100 is the linear fold the model misses without P100's collapse: on its train-shape
    rows of over 1 ms V100 reaches 83% of its FP32 peak, where the four devices a fold without it
    is fitted on reach 74% (A100-PCIE-40GB, held at 250 W), 56% (P100, cuBLAS's Pascal ``tn``
    family), 37% (T4, 70 W) and 22% (P4, 75 W) (docs/fidelity.md, "GPU kernels, leave one device
    out")."""
    rows = data.load(["linear"])["matmul"]
    expected = {
        "Tesla V100-PCIE-32GB": 0.826,
        "NVIDIA A100-PCIE-40GB": 0.743,
        "Tesla P100-PCIE-16GB": 0.557,
        "Tesla T4": 0.373,
        "Tesla P4": 0.224,
    }
    for device, median in expected.items():
        _, fraction = _fraction_of_fp32_peak(rows, device)
        assert float(np.median(fraction)) == pytest.approx(median, abs=0.002), device


def test_one_gemm_runs_at_the_speed_of_its_session() -> None:
    """BERT-large's FFN GEMM (8,192 x 1,024 by 1,024 x 4,096) as the data's three sessions ran it:
    train-shape rows within a factor 1.5 of it in every dimension, test-shape rows likewise, and
    the per-layer label's node of BERT-large inference at batch 16. P4 ran it at 28%, 81% and 43%
    of its FP32 peak; T4, P100 and V100 took 7-40% longer on their train-shape rows than in the
    other two sessions, which agree within 16% (docs/fidelity.md, "GPU kernels, leave one device out")."""
    rows = data.load(["linear", "test_linear"])["matmul"]
    expected = {  # device: (train-shape rows, test-shape rows, per-layer node), fractions of the FP32 peak
        "Tesla P4": (0.284, 0.814, 0.432),
        "Tesla T4": (0.416, 0.505, 0.584),
        "Tesla P100-PCIE-16GB": (0.669, 0.753, 0.751),
        "Tesla V100-PCIE-32GB": (0.874, 0.960, 0.931),
    }
    near = np.ones(len(rows), dtype=bool)
    for column, size in (("M", 8192), ("N", 1024), ("K", 4096)):
        near &= np.abs(np.log(rows.shapes[column] / size)) < np.log(1.5)
    flops = 2.0 * rows.shapes["M"] * rows.shapes["N"] * rows.shapes["K"]
    for device, (train, test, layer) in expected.items():
        peak = data.device_records()[device]["SingleFLOPs"] * 1e9
        for split, median in (("train-shapes", train), ("test-shapes", test)):
            chosen = near & (rows.device == device) & (rows.split == split)
            fraction = flops[chosen] / rows.latency_s[chosen] / peak
            assert float(np.median(fraction)) == pytest.approx(median, abs=0.002), (device, split)
        node_ms = _layer_node_ms(device, "bert_large-inf-512-16", "bert_encoder_layer_0_intermediate_dense")
        assert 2.0 * 8192 * 1024 * 4096 / (node_ms * 1e-3) / peak == pytest.approx(layer, abs=0.002), device


def _layer_node_ms(device: str, label: str, node: str) -> float:
    """A per-layer label's forward time of one node (ms), from the shipped step data."""
    folder = STEP_DATA / "layers" / device.replace(" ", "_")
    with gzip.open(folder / f"{label}.csv.gz", "rt", newline="") as handle:
        return next(float(row["fw_latency"]) for row in csv.DictReader(handle) if row["Name"] == node)


def test_a100_at_250_watts_runs_the_same_gemms_ten_percent_slower_than_at_300() -> None:
    """A100-PCIE-40GB (250 W) and A100 80GB PCIe (300 W) have the same SMs, clocks and FP32 peak;
    on the same 905 linear shapes of over 1 ms the 250-W card takes 1.107x as long (median): the
    board power sets the clock of a long FP32 GEMM on a 7-nm part too."""
    rows = data.load(["test_linear"])["matmul"]

    def latency_by_shape(device: str) -> dict[tuple[float, ...], float]:
        index = np.flatnonzero(rows.device == device)
        return {tuple(rows.shapes[c][i] for c in "BMNK"): float(rows.latency_s[i]) for i in index}

    forty, eighty = latency_by_shape("NVIDIA A100-PCIE-40GB"), latency_by_shape("NVIDIA A100 80GB PCIe")
    ratios = [forty[shape] / eighty[shape] for shape in forty if shape in eighty and forty[shape] > 1e-3]
    assert len(ratios) == 905
    assert float(np.median(ratios)) == pytest.approx(1.107, abs=0.001)


def _predict_kernels(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pytest_dojo.cli", "predict-kernels", *arguments]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_predict_kernels_writes_a_predicted_column(tmp_path: Path) -> None:
    source = _write(
        tmp_path / "in.csv",
        ["OPName", "Latency", "Device", "B", "M", "N", "K", "H", "note"],
        [
            ["bmm", "1.0", "ignored", "8", "512", "64", "512", "", "a"],
            ["linear", "1.0", "ignored", "4", "128", "768", "3072", "", "b"],
            ["gelu", "1.0", "ignored", "32", "", "", "", "4096", "c"],
            ["scatter", "1.0", "ignored", "1", "", "", "", "", "d"],
        ],
    )
    target = tmp_path / "out.csv"
    completed = _predict_kernels("--device", str(DEVICE_FILE), str(source), "--out", str(target))
    assert completed.returncode == 0, completed.stderr
    with target.open(newline="") as handle:
        out = list(csv.DictReader(handle))
    assert list(out[0]) == ["OPName", "Latency", "Device", "B", "M", "N", "K", "H", "note", "Predicted"]
    assert [row["note"] for row in out] == ["a", "b", "c", "d"]
    assert all(float(row["Predicted"]) > 0 for row in out[:3])
    assert out[3]["Predicted"] == ""
    assert "1 rows with an unknown OPName left without a prediction: scatter (1)" in completed.stderr


def test_predict_kernels_names_a_malformed_row(tmp_path: Path) -> None:
    source = _write(
        tmp_path / "in.csv",
        ["OPName", "B", "M", "N", "K"],
        [["bmm", "2", "16", "16", "16"], ["bmm", "2", "sixteen", "16", "16"]],
    )
    completed = _predict_kernels("--chip", "t4", str(source), "--out", str(tmp_path / "out.csv"))
    assert completed.returncode == 2
    assert completed.stderr.strip() == "pytest-dojo predict-kernels: line 3 (bmm): M must be a number, got 'sixteen'"
    assert not (tmp_path / "out.csv").exists()


def test_predict_kernels_on_a_device_the_fit_never_saw(tmp_path: Path) -> None:
    """The A100 80GB PCIe has no train-shape rows: predict its test rows from its device record."""
    target = tmp_path / "out.csv"
    device = data.DATA_DIR / "devices" / "NVIDIA_A100_80GB_PCIe.json"
    completed = _predict_kernels("--device", str(device), str(data.DATA_DIR / "test_ln.csv.gz"), "--out", str(target))
    assert completed.returncode == 0, completed.stderr
    with target.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["Device"] == "NVIDIA A100 80GB PCIe"]
    errors = [abs(float(row["Predicted"]) / float(row["Latency"]) - 1) for row in rows]
    assert len(errors) == 81
    assert float(np.mean(errors)) < 0.25
