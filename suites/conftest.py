"""Shared fixture of the suite tests: one full-size network's training step on the ``--dojo-mesh``.

Each ``suites/test_<network>.py`` asks for :func:`simulate_full_network`, which builds the network
at ``full`` on the meta device (no memory), makes a storage-free batch of one sample per chip
(every chip a data-parallel replica, the plugin's default plan), runs ``dojo.train_step`` and
checks the report against physics before the test adds its own checks. Thresholds and baselines
are the gate's business (markers, thresholds file); here every test must produce its report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

from dojo_networks import NetworkSpec, get_network
from hwmodel import Report
from pytest_dojo.capture import capture_key
from pytest_dojo.plugin.fixtures import Dojo

SAMPLES_PER_CHIP = 1


@dataclass(frozen=True, kw_only=True)
class SimulatedNetwork:
    """A simulated full-size step: the report, the model it came from, and torch's own count of
    the forward FLOPs of one sample (convolutions and matmuls only, the floor of the capture's)."""

    name: str
    model: nn.Module
    report: Report
    forward_flops_per_sample: float

    @property
    def flops_per_sample(self) -> float:
        """Training-step FLOPs of one sample, as the capture counted them."""
        return self.report.flops_total / self.report.global_batch


def _forward_flops_per_sample(spec: NetworkSpec, model: nn.Module) -> float:
    """FlopCounterMode's forward FLOPs of one full-size sample of ``model`` (on the meta device),
    run on fake tensors of its parameters' and inputs' shapes."""
    inputs, _ = spec.make_batch("full", 1, "meta")
    counter = FlopCounterMode(display=False)
    with FakeTensorMode():
        state = {name: torch.empty(tensor.shape, dtype=tensor.dtype) for name, tensor in _state(model)}
        fake_inputs = {key: torch.empty(value.shape, dtype=value.dtype) for key, value in inputs.items()}
        with counter:
            torch.func.functional_call(model, state, (), fake_inputs)
    return float(counter.get_total_flops())


def _state(model: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [*model.named_parameters(), *model.named_buffers()]


def forward_flops_per_sample(config: pytest.Config, spec: NetworkSpec, model: nn.Module) -> float:
    """:func:`_forward_flops_per_sample`, kept in pytest's cache (where there is one) under the key
    a capture of the same forward would have, so that a run with nothing changed does not count again."""
    cache = getattr(config, "cache", None)
    if cache is None:
        return _forward_flops_per_sample(spec, model)
    inputs, _ = spec.make_batch("full", 1, "meta")
    key = f"dojo/forward-flops/{capture_key(model, inputs, name=spec.name)}"
    stored = cache.get(key, None)
    if isinstance(stored, float):
        return stored
    flops = _forward_flops_per_sample(spec, model)
    cache.set(key, flops)
    return flops


def check_physics(simulated: SimulatedNetwork, dojo: Dojo, global_batch: int) -> None:
    """What any simulated step must satisfy, whatever the network, chip or mesh."""
    report = simulated.report
    assert report.num_chips == dojo.mesh.num_chips
    assert report.global_batch == global_batch
    assert 0 < report.mfu <= 1
    # No chip computes faster than its dense BF16 peak.
    assert report.step_time_s >= report.flops_total / (dojo.mesh.num_chips * dojo.chip.matrix_bf16_flops_per_s)
    assert report.samples_per_s == pytest.approx(report.global_batch / report.step_time_s, rel=1e-9)
    # A training step computes at least the forward pass and the weight gradients: twice the
    # forward's matmul and convolution FLOPs, which torch's counter sees too.
    assert simulated.flops_per_sample >= 2 * simulated.forward_flops_per_sample
    # Every op of the suite networks has a cost formula: nothing is costed by bytes alone.
    assert report.unmodeled_ops == {}
    if report.parameter_count:
        assert report.parameter_count == sum(parameter.numel() for parameter in simulated.model.parameters())


@pytest.fixture
def simulate_full_network(dojo: Dojo, pytestconfig: pytest.Config) -> Callable[[str], SimulatedNetwork]:
    """``simulate(name)``: the full-size network's step on the mesh, checked against physics."""

    def simulate(name: str) -> SimulatedNetwork:
        spec = get_network(name)
        with torch.device("meta"):
            model = spec.build("full")
        global_batch = SAMPLES_PER_CHIP * dojo.mesh.num_chips
        inputs, targets = spec.make_batch("full", global_batch, "meta")
        report = dojo.train_step(model, inputs, targets=targets, loss_fn=spec.loss, name=name)
        forward_flops = forward_flops_per_sample(pytestconfig, spec, model)
        simulated = SimulatedNetwork(name=name, model=model, report=report, forward_flops_per_sample=forward_flops)
        check_physics(simulated, dojo, global_batch)
        return simulated

    return simulate
