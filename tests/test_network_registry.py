"""Adding a network is one module: its build function joins the registry with ``@network``, and the
``dojo`` fixture simulates it like any suite network."""

from __future__ import annotations

import pkgutil
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import dojo_networks
from dojo_networks import registry

TINY_NETWORK = '''
"""A two-layer MLP: the whole of a new network, in one module."""

import torch.nn.functional as F
import torch
from torch import Tensor, nn

from dojo_networks import network
from dojo_networks.synthetic import SyntheticBatch

WIDTHS = {"small": 16, "full": 256}


def make_batch(size, batch_size, device, *, seed=0):
    data = SyntheticBatch(device, seed)
    inputs = {"features": data.normal(batch_size, WIDTHS[size])}
    return inputs, {"labels": data.integers(10, batch_size)}


def loss(outputs, targets):
    return F.cross_entropy(outputs["logits"], targets["labels"])


class TinyMlp(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.hidden = nn.Linear(width, width)
        self.classifier = nn.Linear(width, 10)

    def forward(self, features):
        return {"logits": self.classifier(F.relu(self.hidden(features)))}


@network("tiny_mlp", description="two-layer MLP", make_batch=make_batch, loss=loss)
def build(size):
    return TinyMlp(WIDTHS[size])
'''

TINY_TEST = """
import torch

import tiny_network  # registers "tiny_mlp"
from dojo_networks import NETWORKS, get_network


def test_tiny_network_is_simulated(dojo):
    spec = get_network("tiny_mlp")
    assert NETWORKS["tiny_mlp"] is spec and spec.description == "two-layer MLP"
    with torch.device("meta"):
        model = spec.build("full")
    inputs, targets = spec.make_batch("full", dojo.mesh.num_chips, "meta")
    report = dojo.train_step(model, inputs, targets=targets, loss_fn=spec.loss, name=spec.name)
    assert report.global_batch == dojo.mesh.num_chips == 2
    assert report.parameter_count == 256 * 256 + 256 + 256 * 10 + 10
    assert report.samples_per_s > 0 and report.unmodeled_ops == {}
"""


def test_a_network_is_one_module_and_the_dojo_fixture_simulates_it(pytester: pytest.Pytester) -> None:
    """In a subprocess: the registry is process-wide, and a capture imports torch modules that an
    in-process pytester run would drop."""
    pytester.makepyfile(tiny_network=TINY_NETWORK, test_tiny=TINY_TEST)
    result = pytester.runpytest_subprocess("--dojo-mesh=1x2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def _make_batch(size: str, batch_size: int, device: registry.Device) -> registry.Batch:
    return {}, None


def _build(size: str) -> nn.Module:
    return nn.Linear(1, 1)


def _loss(outputs: dict[str, Tensor], targets: Any) -> Tensor:
    return torch.zeros(())


def test_network_registers_the_build_function_and_returns_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "NETWORKS", {})
    decorated = registry.network("linear", description="one layer", make_batch=_make_batch, loss=_loss)(_build)
    assert decorated is _build
    spec = registry.get_network("linear")
    assert (spec.name, spec.description, spec.build, spec.make_batch) == ("linear", "one layer", _build, _make_batch)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("hydranet", "duplicate network name 'hydranet'"),
        ("", "a network name is a non-empty string without spaces, got ''"),
        ("two words", "a network name is a non-empty string without spaces, got 'two words'"),
    ],
)
def test_network_refuses_duplicate_and_malformed_names(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        registry.network(name, description="", make_batch=_make_batch, loss=_loss)


def test_every_module_of_the_package_is_imported_with_it() -> None:
    """So a network module dropped into ``dojo_networks/`` registers with no other edit."""
    modules = {f"dojo_networks.{module.name}" for module in pkgutil.iter_modules(dojo_networks.__path__)}
    assert modules <= set(sys.modules)


ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IMPORTS = {
    "dojo_networks": ("suites", "dojo_validation", "pytest_dojo", "pytest", "_pytest"),
    "dojo_validation": ("suites",),
}


@pytest.mark.parametrize(
    "path",
    sorted(path for package in FORBIDDEN_IMPORTS for path in (ROOT / package).rglob("*.py")),
    ids=lambda path: str(path.relative_to(ROOT)),
)
def test_networks_and_validation_never_import_the_layers_above(path: Path) -> None:
    """The networks need only torch; validation uses the networks and the plugin's capture, never the suites."""
    package = path.relative_to(ROOT).parts[0]
    names = "|".join(FORBIDDEN_IMPORTS[package])
    pattern = re.compile(rf"^\s*(import|from)\s+({names})\b", re.MULTILINE)
    assert pattern.findall(path.read_text(encoding="utf-8")) == []
