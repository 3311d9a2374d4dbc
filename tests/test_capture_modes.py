"""Capture modes: a whole training step, forward and backward without the optimizer, or a no-grad
forward pass; the mode is recorded in the Workload and survives its JSON round trip."""

from __future__ import annotations

import pytest
import torch

from hwmodel import Plan, make_system, simulate
from hwmodel.errors import WorkloadError
from hwmodel.spec.precision import FP32
from hwmodel.step.memory import activation_peak_bytes
from hwmodel.step.workload import Workload
from pytest_dojo.capture import capture_train_step
from pytest_dojo.errors import CaptureError


def small_network() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))


def names(workload: Workload, phase: str) -> list[str]:
    return [op.name for op in workload.ops if op.phase == phase]


def test_forward_backward_records_no_optimizer() -> None:
    train = capture_train_step(small_network(), torch.randn(8, 16))
    step = capture_train_step(small_network(), torch.randn(8, 16), mode="forward_backward")
    assert (train.mode, step.mode) == ("train", "forward_backward")
    assert names(step, "optimizer") == [] and names(train, "optimizer")
    assert names(step, "forward") == names(train, "forward")
    assert names(step, "backward") == names(train, "backward")
    assert step.optimizer == "none"
    assert not any(record.kind == "optimizer_state" for record in step.tensors)
    # every parameter still gets its gradient
    assert all(parameter.grad_ready_op >= 0 for parameter in step.parameters)


def test_inference_is_a_no_grad_forward() -> None:
    model = small_network().eval()
    train = capture_train_step(model, torch.randn(8, 16))
    step = capture_train_step(model, torch.randn(8, 16), mode="inference")
    assert step.mode == "inference"
    assert {op.phase for op in step.ops} == {"forward"}
    # the forward ops of the training step, without the default loss's mean
    assert names(step, "forward") == names(train, "forward")[: len(names(step, "forward"))]
    assert not any(op.name.startswith("aten.mean") for op in step.ops)
    assert all(parameter.grad_ready_op == -1 for parameter in step.parameters)


def test_dropout_is_recorded_as_the_model_is_set() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Dropout(0.1))
    training = capture_train_step(model.train(), torch.randn(4, 16), mode="inference")
    evaluating = capture_train_step(model.eval(), torch.randn(4, 16), mode="inference")
    assert any("bernoulli_" in op.name for op in training.ops)
    assert not any("bernoulli_" in op.name for op in evaluating.ops)


@pytest.mark.parametrize("mode", ["train", "forward_backward", "inference"])
def test_mode_survives_json(mode: str) -> None:
    workload = capture_train_step(small_network(), torch.randn(4, 16), mode=mode)  # type: ignore[arg-type]
    again = Workload.from_json(workload.to_json())
    assert again == workload and again.mode == mode
    # a training step's dict is what it was before modes existed
    assert ("mode" in workload.to_dict()) == (mode != "train")
    # only a step under no_grad has no weight gradients to hold or all-reduce
    assert workload.keeps_gradients == (mode != "inference")
    has_backward = any(op.phase == "backward" for op in workload.ops)
    assert has_backward == workload.keeps_gradients


def test_a_bad_mode_is_one_line() -> None:
    with pytest.raises(CaptureError, match="mode must be one of train, forward_backward, inference") as error:
        capture_train_step(small_network(), torch.randn(4, 16), mode="eval")  # type: ignore[arg-type]
    assert "\n" not in str(error.value)
    with pytest.raises(WorkloadError, match="mode must be one of"):
        Workload(name="x", batch_size=1, ops=(), mode="eval")


def test_simulated_phases_follow_the_mode() -> None:
    system = make_system("a100", "1x1")
    step = simulate(capture_train_step(small_network(), torch.randn(8, 16), mode="forward_backward"), system)
    forward = simulate(capture_train_step(small_network(), torch.randn(8, 16), mode="inference"), system)
    assert step.phase_time_s.optimizer_s == 0.0 and step.phase_time_s.backward_s > 0.0
    assert forward.phase_time_s.backward_s == 0.0 and forward.phase_time_s.optimizer_s == 0.0
    assert forward.step_time_s == pytest.approx(forward.phase_time_s.forward_s)


def test_an_inference_step_holds_its_weights_alone() -> None:
    """16 x 32 + 32 + 32 x 4 + 4 = 676 parameters: inference keeps their FP32 copy (4 B each) and no
    gradients, where a forward and backward under BF16 mixed precision keeps an FP32 master and a
    BF16 working copy (6 B) and FP32 gradients (4 B)."""
    system = make_system("a100", "1x1")
    forward = simulate(capture_train_step(small_network(), torch.randn(8, 16), mode="inference"), system)
    step = simulate(capture_train_step(small_network(), torch.randn(8, 16), mode="forward_backward"), system)
    assert (forward.memory_bytes_per_chip.weights_bytes, forward.memory_bytes_per_chip.gradients_bytes) == (4 * 676, 0)
    assert (step.memory_bytes_per_chip.weights_bytes, step.memory_bytes_per_chip.gradients_bytes) == (6 * 676, 4 * 676)


def test_inference_all_reduces_nothing_under_any_plan() -> None:
    workload = capture_train_step(small_network(), torch.randn(8, 16), mode="inference")
    plan = Plan(data_parallel=2, pipeline_parallel=2, micro_batches=2)
    report = simulate(workload, make_system("d1", "2x2"), plan=plan)
    assert report.communication.gradient_bytes == 0.0
    assert report.communication.all_reduce_total_s == 0.0 and report.breakdown_s.communication_s == 0.0


class KeyValueCache:
    """What a causal language model returns beside its logits: an object holding per-layer tensors."""

    def __init__(self, keys: torch.Tensor) -> None:
        self.layers = [{"keys": keys}]


class CachingNetwork(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.key = torch.nn.Linear(16, 32)
        self.head = torch.nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> dict[str, object]:
        keys = self.key(x)
        return {"logits": self.head(torch.relu(x)), "cache": KeyValueCache(keys)}


def test_what_inference_returns_lives_to_the_end_of_the_step() -> None:
    """Ops: keys = addmm (0), relu (1), logits = addmm (2). Batch 8, FP32: the input 8 x 16 x 4 =
    512 B (last read by op 1), the keys 8 x 32 x 4 = 1,024 B, the relu 512 B, the logits 128 B. The
    caller holds the keys to the end, so the peak is at op 1: input 512 + keys 1,024 + relu 512 =
    2,048 B (at op 2: 1,664 B). Were the keys dropped after op 0, the peak would be op 0's 1,536 B."""
    workload = capture_train_step(CachingNetwork().eval(), torch.randn(8, 16), mode="inference")
    keys = workload.ops[0].output_ids[0]
    assert next(t.last_op for t in workload.tensors if t.tensor_id == keys) == len(workload.ops) - 1 == 2
    assert activation_peak_bytes(workload, FP32) == 2048.0
