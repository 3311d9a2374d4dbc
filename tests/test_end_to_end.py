"""The whole path through pytest: options, the dojo fixture, the summary table and usage errors."""

from __future__ import annotations

from importlib import resources

import pytest

SIMPLE_TEST = """
import torch

def test_mlp_step(dojo):
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
    report = dojo.train_step(model, torch.randn(50, 32))
    assert report.global_batch == 50
    assert report.num_chips == dojo.mesh.num_chips
    assert 0 < report.mfu <= 1
    assert report.samples_per_s == pytest.approx(report.global_batch / report.step_time_s)
"""


def test_summary_table_lists_each_simulated_step(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_step="import pytest\n" + SIMPLE_TEST)
    result = pytester.runpytest("--dojo-mesh=5x5")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*dojo: simulated training steps*",
            "pytest-dojo: chip d1, mesh 5x5 (25 chips*peak 9.05 PFLOP/s BF16, compiled execution",
            "test*network*batch*step ms*samples/s*MFU*bound",
            "test_step.py::test_mlp_step*Sequential*50*",
        ]
    )


def test_ini_keys_set_the_defaults(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ndojo_mesh = 1x5\ndojo_chip = d1\n")
    pytester.makepyfile(test_step="import pytest\n" + SIMPLE_TEST)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*mesh 1x5 (5 chips*"])


def test_command_line_overrides_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ndojo_mesh = 1x5\n")
    pytester.makepyfile(test_step="import pytest\n" + SIMPLE_TEST)
    result = pytester.runpytest("--dojo-mesh=2x5")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*mesh 2x5 (10 chips*"])


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("--dojo-mesh=0x5", "ERROR: --dojo-mesh: mesh must have at least 1 row and 1 column, got '0x5'"),
        ("--dojo-mesh=5x", "ERROR: --dojo-mesh: mesh must be ROWSxCOLS*got '5x'"),
        ("--dojo-mesh=abc", "ERROR: --dojo-mesh: mesh must be ROWSxCOLS*got 'abc'"),
        ("--dojo-mesh=-1x3", "ERROR: --dojo-mesh: mesh must be ROWSxCOLS*got '-1x3'"),
        ("--dojo-chip=tpu9", "ERROR: --dojo-chip: unknown chip 'tpu9'; known chips: *d1*"),
        ("--dojo-chip=missing.toml", "ERROR: --dojo-chip: cannot read the preset file *missing.toml: *"),
    ],
)
def test_bad_option_is_one_usage_line(pytester: pytest.Pytester, option: str, expected: str) -> None:
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = pytester.runpytest(option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([expected])
    assert "Traceback" not in result.stderr.str()


def test_uncapturable_step_fails_its_test_in_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bad="""
import torch

class Selective(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 4)

    def forward(self, x):
        y = self.linear(x)
        return y[y > 0].sum()

def test_bad(dojo):
    dojo.train_step(Selective(), torch.randn(25, 4))
"""
    )
    result = pytester.runpytest("--dojo-mesh=5x5")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*cannot capture Selective: *data-dependent*"])
    assert "Traceback" not in result.stdout.str()


PRECISION_TEST = """
import torch

def test_precision(dojo):
    model = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256))
    report = dojo.train_step(model, torch.randn(25 * 64, 256))
    print("PRECISION", report.precision)
"""


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ((), "PRECISION bfloat16"),
        (("--dojo-precision=fp32",), "PRECISION float32"),
        (("--dojo-chip=host", "--dojo-mesh=1x1", "--dojo-host-calibration=committed"), "PRECISION float32"),
        (
            ("--dojo-chip=host", "--dojo-mesh=1x1", "--dojo-host-calibration=committed", "--dojo-precision=bf16"),
            "PRECISION bfloat16",
        ),
    ],
)
def test_precision_follows_the_preset_unless_given(
    pytester: pytest.Pytester, options: tuple[str, ...], expected: str
) -> None:
    """D1 trains in mixed BF16 by default, the host preset in FP32 (as an eager CPU step does)."""
    pytester.makepyfile(test_precision=PRECISION_TEST)
    result = pytester.runpytest("-s", *options)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*{expected}"])


def test_unknown_precision_is_one_usage_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = pytester.runpytest("--dojo-precision=fp8")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --dojo-precision: unknown precision 'fp8'; known: bf16, fp32, tf32"])


def _chip_file_text(name: str) -> str:
    """The shipped H100 preset as a user's own chip: renamed, on the H100's fabric, twice the BF16 peak."""
    h100 = (resources.files("hwmodel.spec") / "presets" / "h100.toml").read_text(encoding="utf-8")
    chip_only = h100.replace('name = "h100"', f'name = "{name}"').replace('aliases = ["h100-sxm"]\n', "")
    return chip_only.replace("value = 989,", "value = 1978,", 1)


def test_a_chip_data_file_is_a_chip_option(pytester: pytest.Pytester) -> None:
    """``--dojo-chip=FILE.toml``: a chip of the user's own, one data file, no code."""
    pytester.path.joinpath("x2.toml").write_text(_chip_file_text("x2"), encoding="utf-8")
    pytester.makepyfile(test_step="import pytest\n" + SIMPLE_TEST)
    result = pytester.runpytest("--dojo-chip=x2.toml", "--dojo-mesh=1x2")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["pytest-dojo: chip x2, mesh 1x2 (2 chips, fabric dgx-h100-nvswitch-ndr)*"])


def test_a_chip_data_file_in_the_ini_is_relative_to_the_rootdir(pytester: pytest.Pytester) -> None:
    pytester.mkdir("chips").joinpath("x3.toml").write_text(_chip_file_text("x3"), encoding="utf-8")
    pytester.makeini("[pytest]\ndojo_chip = chips/x3.toml\ndojo_mesh = 1x2\n")
    pytester.makepyfile(test_step="import pytest\n" + SIMPLE_TEST)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["pytest-dojo: chip x3, mesh 1x2*"])
