"""The plugin stays out of the way where it is not used, shows itself where it is, and turns the
mistakes that used to escape as tracebacks into one clear line."""

from __future__ import annotations

import json

import pytest

HEAVY_MODULES = ("torch", "hwmodel", "matplotlib", "pytest_dojo.capture")

RECORD_MODULES = f"""
import json, sys

def pytest_unconfigure(config):
    loaded = sorted(name for name in {HEAVY_MODULES!r} if name in sys.modules)
    with open("loaded.json", "w") as stream:
        json.dump(loaded, stream)
"""


def test_unused_plugin_prints_nothing_and_imports_nothing_heavy(pytester: pytest.Pytester) -> None:
    """A project that never uses the plugin: no header line, and neither torch nor the hardware
    model is imported (a subprocess, so that this process's imports do not count)."""
    pytester.makeconftest(RECORD_MODULES)
    pytester.makepyfile(test_plain="def test_plain():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    assert "pytest-dojo" not in result.stdout.str()
    assert json.loads((pytester.path / "loaded.json").read_text()) == []


@pytest.mark.parametrize(
    "test_source",
    [
        "def test_uses_fixture(dojo):\n    assert dojo.mesh.num_chips == 25\n",
        "import pytest\n\n@pytest.mark.dojo\ndef test_marked():\n    pass\n",
    ],
    ids=["fixture", "marker"],
)
def test_header_shows_where_a_test_uses_the_plugin(pytester: pytest.Pytester, test_source: str) -> None:
    pytester.makepyfile(test_used=test_source)
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(["pytest-dojo: chip d1, mesh 5x5 (25 chips*"])


@pytest.mark.parametrize("setting", ["ini", "option"])
def test_header_shows_where_a_setting_is_given(pytester: pytest.Pytester, setting: str) -> None:
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    if setting == "ini":
        pytester.makeini("[pytest]\ndojo_mesh = 2x2\n")
        result = pytester.runpytest()
    else:
        result = pytester.runpytest("--dojo-mesh=2x2")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["pytest-dojo: chip d1, mesh 2x2 (4 chips*"])


def test_a_model_that_is_not_a_module_is_named(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_step="import torch\n\ndef test_step(dojo):\n    dojo.train_step('not a model', torch.randn(4, 3))\n"
    )
    result = pytester.runpytest("-rN")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*model must be a torch.nn.Module, got str: 'not a model'"])
    assert "AttributeError" not in result.stdout.str()
    assert "Traceback" not in result.stdout.str()


def test_report_dir_without_matplotlib_is_one_usage_line(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("import sys\n\nsys.modules['matplotlib'] = None\n")
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    result = pytester.runpytest("--dojo-report-dir=reports")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.stderr.lines[0] == (
        'ERROR: --dojo-report-dir needs matplotlib to draw its plots: pip install "pytest-dojo[plots]"'
    )
    assert "Traceback" not in result.stderr.str()


def test_capture_failure_is_torch_message_once_without_internal_logs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_step=(
            "import torch\n\ndef test_step(dojo):\n    dojo.train_step(torch.nn.Linear(4, 2), torch.randn(3, 5))\n"
        )
    )
    result = pytester.runpytest("-rN", "--dojo-mesh=1x1")
    result.assert_outcomes(failed=1)
    output = result.stdout.str() + result.stderr.str()
    message = "a and b must have same reduction dim, but got [3, 5] X [4, 2]."
    result.stdout.fnmatch_lines(
        [f"cannot capture Linear: RuntimeError in the forward phase after the first op: {message}"]
    )
    assert output.count(message) == 1
    assert "failed while attempting to run meta" not in output
    assert "Traceback" not in output


def test_integer_inputs_into_a_float_layer_are_refused(pytester: pytest.Pytester) -> None:
    """Eager PyTorch refuses them ("mat1 and mat2 must have the same dtype"); so does the capture."""
    pytester.makepyfile(
        test_step=(
            "import torch\n\n"
            "def test_step(dojo):\n"
            "    dojo.train_step(torch.nn.Linear(4, 2), torch.ones(3, 4, dtype=torch.long))\n"
        )
    )
    result = pytester.runpytest("-rN", "--dojo-mesh=1x1")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["cannot capture Linear: RuntimeError in the forward phase *operands must have the same dtype*int64*"]
    )


def test_a_misspelt_step_keyword_is_a_type_error() -> None:
    """The step's keyword arguments are one TypedDict; a name that is not one of them is refused
    as Python refuses an unexpected keyword argument."""
    import torch

    from pytest_dojo.plugin.steps import CapturedStep

    with pytest.raises(TypeError, match="unexpected keyword argument 'targt'"):
        CapturedStep(torch.nn.Linear(2, 2), torch.randn(3, 2), targt=None)  # type: ignore[call-arg]
