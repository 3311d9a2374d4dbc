"""Under pytest-xdist the controller merges every worker's results: same JSON, summary and baseline."""

from __future__ import annotations

import json
from typing import Any

import pytest

TESTS = """
import pytest
import torch

def mlp(width):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, width), torch.nn.ReLU(), torch.nn.Linear(width, 4))

@pytest.mark.parametrize("width", [8, 16, 32, 64])
def test_width(dojo, width):
    dojo.train_step(mlp(width), torch.randn(25, 16), name=f"mlp{width}")

def test_twice(dojo):
    dojo.train_step(mlp(8), torch.randn(25, 16), name="mlp8")
    dojo.train_step(mlp(8), torch.randn(50, 16), name="mlp8")
"""


def summary(lines: list[str]) -> list[str]:
    start = next(index for index, line in enumerate(lines) if "dojo: simulated training steps" in line)
    return [line for line in lines[start:] if line.startswith(("test", "-", "pytest-dojo"))]


def without_measured(document: dict[str, Any]) -> dict[str, Any]:
    for entry in document["results"]:
        entry.pop("capture_s")
    return document


@pytest.mark.slow  # three pytest processes, each importing torch: ~40 s on a busy 2-core host
def test_xdist_run_matches_serial_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_steps=TESTS)
    serial = pytester.runpytest_subprocess(
        "-p", "no:randomly", "--dojo-json=serial.json", "--dojo-save-baseline=serial-base.json"
    )
    serial.assert_outcomes(passed=5)
    parallel = pytester.runpytest_subprocess(
        "-n", "2", "--dojo-json=xdist.json", "--dojo-save-baseline=xdist-base.json"
    )
    parallel.assert_outcomes(passed=5)
    assert "2 workers" in parallel.stdout.str()

    assert (pytester.path / "serial-base.json").read_text() == (pytester.path / "xdist-base.json").read_text()
    serial_json = without_measured(json.loads((pytester.path / "serial.json").read_text()))
    xdist_json = without_measured(json.loads((pytester.path / "xdist.json").read_text()))
    assert serial_json == xdist_json
    assert len(xdist_json["results"]) == 6
    assert summary(serial.outlines) == summary(parallel.outlines)
    assert len(summary(parallel.outlines)) == 3 + 6
