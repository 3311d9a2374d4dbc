"""``--dojo-execution`` through pytest: the option, its ini key, the fixture argument, and the
error band in the summary and the JSON results."""

from __future__ import annotations

import json

import pytest

STEP_TESTS = """
import torch

def mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.LayerNorm(64), torch.nn.GELU(), torch.nn.Linear(64, 8))

def test_mlp(dojo):
    dojo.train_step(mlp(), torch.randn(50, 32), name="mlp"{argument})
"""


def run(pytester: pytest.Pytester, *args: str, argument: str = "") -> tuple[pytest.RunResult, dict[str, object]]:
    pytester.makepyfile(test_steps=STEP_TESTS.format(argument=argument))
    result = pytester.runpytest("--dojo-json=out.json", *args)
    result.assert_outcomes(passed=1)
    report = json.loads((pytester.path / "out.json").read_text())["results"][0]["report"]
    return result, report


def test_the_d1_runs_compiled_by_default_and_eager_when_told(pytester: pytest.Pytester) -> None:
    result, compiled = run(pytester, "--dojo-mesh=1x1")
    result.stdout.fnmatch_lines(["pytest-dojo: *, compiled execution"])
    _, eager = run(pytester, "--dojo-mesh=1x1", "--dojo-execution=eager")
    assert compiled["op_cost_model"]["execution"] == "compiled" and compiled["op_cost_model"]["fused_groups"] > 0
    assert eager["op_cost_model"]["execution"] == "eager" and eager["op_cost_model"]["fused_groups"] == 0
    assert compiled["step_time_s"] < eager["step_time_s"]
    assert compiled["flops_total"] == eager["flops_total"]


def test_the_ini_key_and_the_fixture_argument(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ndojo_execution = compiled\ndojo_chip = a100\n")
    result, report = run(pytester, "--dojo-mesh=1x1")
    assert report["op_cost_model"]["execution"] == "compiled"
    result.stdout.fnmatch_lines(["pytest-dojo: *, compiled execution"])
    _, report = run(pytester, "--dojo-mesh=1x1", argument=', execution="eager"')
    assert report["op_cost_model"]["execution"] == "eager"


def test_a_bad_value_is_one_usage_error_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_steps=STEP_TESTS.format(argument=""))
    result = pytester.runpytest("--dojo-execution=jit")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --dojo-execution: must be one of eager, compiled, got 'jit'"])
    assert "Traceback" not in result.stderr.str()


def test_a_bad_fixture_argument_fails_the_test_in_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_steps=STEP_TESTS.format(argument=', execution="jit"'))
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*execution must be one of eager, compiled, got 'jit'"])


def test_the_band_is_in_the_summary_and_the_json(pytester: pytest.Pytester) -> None:
    result, report = run(pytester, "--dojo-mesh=1x1", "--dojo-chip=v100-pcie-32gb")
    band = report["confidence"]
    assert band["source"] == "step validation" and 0 < band["band"] < 1
    cell = f"+-{band['band']:.0%}"
    result.stdout.fnmatch_lines(
        [
            "test*step ms  samples/s  band*MFU  gate  bound",
            f"test_steps.py::test_mlp *  {cell}  *",
            f"band {cell}: step validation (v100-pcie-32gb train: * measured steps, median *, worst *)*",
        ]
    )
    _, d1 = run(pytester, "--dojo-mesh=1x1")
    assert d1["confidence"]["source"] == "GPU leave-one-device-out proxy"
    assert any("bfloat16 compute is not validated" in note for note in d1["confidence"]["notes"])
