"""Precision as PyTorch runs it: IEEE FP32, TF32 matmuls, BF16 mixed precision, and the report
section that says which peak each op class ran at."""

from __future__ import annotations

import json

import pytest
from synthetic_workloads import chain_workload

from hwmodel import make_system, simulate
from hwmodel.errors import SpecError, WorkloadError
from hwmodel.spec.precision import FP32, MIXED_BF16, PRECISIONS, TF32, parse_precision
from hwmodel.step.report import Report
from hwmodel.step.sections import ClassRate, OpClassRates

WORKLOAD = chain_workload(layers=4, batch=64, width=2048)


def test_the_named_precisions() -> None:
    assert list(PRECISIONS) == ["bf16", "fp32", "tf32"]
    assert parse_precision(" TF32 ") is TF32
    assert TF32.tf32_matmuls and not FP32.tf32_matmuls and not MIXED_BF16.tf32_matmuls
    # TF32 changes the matmul rate only: storage is FP32, as in fp32
    assert TF32.weight_bytes_per_parameter == FP32.weight_bytes_per_parameter == 4
    assert TF32.activation_scale("float32") == 1.0
    with pytest.raises(SpecError, match="unknown precision 'fp8'; known: bf16, fp32, tf32"):
        parse_precision("fp8")


@pytest.mark.parametrize(
    ("chip", "precision", "matmul_rate", "flops_per_s"),
    [
        ("a100", "fp32", "ieee-fp32-matrix", 19.5e12),  # gpus.md "A100": FP32 [S]
        ("a100", "tf32", "tf32-matrix", 156e12),  # TF32 tensor [S]
        ("a100", "bf16", "bf16-matrix", 312e12),  # BF16 / FP16 tensor [S]
        ("h100", "tf32", "tf32-matrix", 494.5e12),
        ("t4", "tf32", "ieee-fp32-matrix", 8.1e12),  # no TF32 on Turing: IEEE FP32, at its rate
        ("t4", "bf16", "bf16-matrix", 65e12),  # the FP16 tensor rate
        ("d1", "fp32", "ieee-fp32-matrix", 22.6e12),
    ],
)
def test_the_report_says_which_rate_each_class_ran_at(
    chip: str, precision: str, matmul_rate: str, flops_per_s: float
) -> None:
    report = simulate(WORKLOAD, make_system(chip, "1x1"), precision=parse_precision(precision))
    assert report.op_class_rates is not None
    rates = dict(report.op_class_rates.classes)
    assert rates["matmul"].rate == matmul_rate
    assert rates["matmul"].flops_per_s == pytest.approx(flops_per_s)
    vector = make_system(chip, "1x1").chip.vector_flops_per_s
    assert rates["elementwise"] == rates["optimizer"] == ClassRate(rate="fp32-vector", flops_per_s=vector)
    assert set(rates) <= set(json.loads(json.dumps(report.to_dict()))["op_class_rates"])


def test_tf32_is_faster_than_ieee_fp32_only_where_the_chip_has_tensor_cores() -> None:
    def step_s(chip: str, precision: str) -> float:
        return simulate(WORKLOAD, make_system(chip, "1x1"), precision=parse_precision(precision)).step_time_s

    assert step_s("a100", "tf32") < step_s("a100", "fp32")
    assert step_s("a100", "bf16") < step_s("a100", "tf32")
    assert step_s("t4", "tf32") == step_s("t4", "fp32")
    assert step_s("d1", "tf32") == step_s("d1", "fp32")


def test_the_rate_section_round_trips_and_older_reports_still_load() -> None:
    report = simulate(WORKLOAD, make_system("a100-sxm4-80gb", "1x8"), precision=TF32)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["op_class_rates"]["matmul"] == {"rate": "tf32-matrix", "flops_per_s": 156e12}
    assert Report.from_dict(data) == report
    del data["op_class_rates"]  # a report written before the section existed
    assert Report.from_dict(data).op_class_rates is None
    assert Report.from_dict(data).to_dict()["op_class_rates"] == {}


def test_a_malformed_rate_section_is_one_line() -> None:
    with pytest.raises(WorkloadError, match="unknown keys: peak"):
        OpClassRates.from_dict({"matmul": {"rate": "tf32-matrix", "peak": 1.0}})
    with pytest.raises(WorkloadError, match="must map op classes"):
        OpClassRates.from_dict({"matmul": 1.0})


RATE_TEST = """
import torch

def test_rates(dojo):
    model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256))
    report = dojo.train_step(model, torch.randn(8 * 16, 256))
    rates = dict(report.op_class_rates.classes)
    print("RUN", report.chip, report.precision, rates["matmul"].rate, rates["matmul"].flops_per_s)
"""


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (("--dojo-chip=t4", "--dojo-precision=tf32"), "RUN t4 float32 ieee-fp32-matrix 8100000000000.0"),
        (("--dojo-chip=t4",), "RUN t4 float32 ieee-fp32-matrix 8100000000000.0"),
        (("--dojo-chip=a100-sxm4-80gb", "--dojo-precision=tf32"), "RUN a100 float32 tf32-matrix 156000000000000.0"),
    ],
)
def test_gpu_presets_and_tf32_from_the_command_line(
    pytester: pytest.Pytester, options: tuple[str, ...], expected: str
) -> None:
    pytester.makepyfile(test_rates=RATE_TEST)
    result = pytester.runpytest("-s", "--dojo-mesh=1x8", *options)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*{expected}"])
