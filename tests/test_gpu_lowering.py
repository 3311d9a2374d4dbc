"""GPU op costs for the ops a CPU capture records differently from what CUDA runs: dropout as one
fused kernel each way, softmax backward as two kernels, NLL loss without streaming the
log-probabilities, fused attention without the score matrix, a dropout mask held in a byte an
element. Bytes by hand, from the shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwmodel import Workload, get_preset, make_system, simulate
from hwmodel.ops.cost_model import kernel_op_costs
from hwmodel.ops.gpu_lowering import gpu_lowering
from hwmodel.ops.kernels import gemm
from hwmodel.ops.kernels.from_chip import kernel_device_from_chip
from hwmodel.ops.kernels.memory_bound import achieved_bandwidth
from hwmodel.ops.kernels.parameters import load_parameters
from hwmodel.spec.precision import FP32, MIXED_BF16
from hwmodel.step.memory import activation_peak_bytes
from pytest_dojo.capture import capture_train_step

A100 = get_preset("a100").chip
DEVICE = kernel_device_from_chip(A100, FP32)
PARAMETERS = load_parameters()


def index_of(workload: Workload, packet: str, phase: str = "forward") -> int:
    return next(i for i, op in enumerate(workload.ops) if op.name.split(".")[1] == packet and op.phase == phase)


def streaming_s(moved: float) -> float:
    return float(moved / achieved_bandwidth(np.asarray(moved), DEVICE, PARAMETERS))


class LinearDropout(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(256, 256)
        self.dropout = torch.nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output: torch.Tensor = self.dropout(self.linear(x))
        return output


def test_dropout_is_one_fused_kernel_each_way() -> None:
    workload = capture_train_step(LinearDropout().train(), torch.randn(64, 256), mode="forward_backward")
    lowering = gpu_lowering(workload)
    elements = 64 * 256
    kernel = index_of(workload, "bernoulli_")
    division = index_of(workload, "div_")
    forward_mul = index_of(workload, "mul")
    backward_mul = next(
        i for i, op in enumerate(workload.ops) if op.phase == "backward" and op.name == "aten.mul.Tensor"
    )
    # native_dropout reads x and writes y (4 bytes each) and a one-byte mask
    assert (lowering.scaled_bytes[kernel], lowering.fixed_bytes[kernel]) == (8 * elements, elements)
    # native_dropout_backward reads the gradient and the mask and writes the input's gradient
    assert (lowering.scaled_bytes[backward_mul], lowering.fixed_bytes[backward_mul]) == (8 * elements, elements)
    assert lowering.fused_away[division] and lowering.fused_away[forward_mul]
    costs = kernel_op_costs(workload, A100, FP32)
    assert costs.time_s[division] == costs.time_s[forward_mul] == 0.0
    assert costs.memory_s[kernel] == pytest.approx(streaming_s(9.0 * elements))
    assert costs.time_s[kernel] == pytest.approx(streaming_s(9.0 * elements) + A100.op_overhead_s)
    assert costs.memory_s[backward_mul] == pytest.approx(streaming_s(9.0 * elements))


class SampleNoise(torch.nn.Module):
    """Stochastic depth: one Bernoulli draw per sample, broadcast over the features (not F.dropout)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = x.new_empty((x.shape[0], 1)).bernoulli_(0.9).div_(0.9)
        return x * noise


def test_a_bernoulli_that_is_not_dropout_keeps_its_kernels() -> None:
    workload = capture_train_step(SampleNoise(), torch.randn(64, 256), mode="inference")
    lowering = gpu_lowering(workload)
    assert not lowering.lowered.any() and not lowering.fused_away.any()
    assert lowering.kernels.tolist() == [1.0] * len(workload.ops)


class Softmax(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(128, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.linear(x), dim=-1)


def test_softmax_backward_is_a_product_then_the_row_kernel() -> None:
    workload = capture_train_step(Softmax(), torch.randn(32, 128), mode="forward_backward")
    lowering = gpu_lowering(workload)
    backward = index_of(workload, "_softmax_backward_data", "backward")
    elements = 32 * 128
    # grad * output (read 2, write 1), then the row kernel over it and the output (read 2, write 1)
    assert lowering.scaled_bytes[backward] == 6 * 4 * elements
    assert lowering.kernels[backward] == 2.0
    forward = index_of(workload, "_softmax")
    assert not lowering.lowered[forward] and lowering.kernels[forward] == 1.0
    costs = kernel_op_costs(workload, A100, FP32)
    assert costs.overhead_s[backward] == pytest.approx(2 * A100.op_overhead_s)


def test_nll_loss_never_streams_the_log_probabilities() -> None:
    rows, classes = 8, 1000

    def loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(outputs, targets)

    model = torch.nn.Linear(64, classes)
    targets = torch.zeros(rows, dtype=torch.int64)
    workload = capture_train_step(model, torch.randn(rows, 64), targets=targets, loss_fn=loss, mode="forward_backward")
    lowering = gpu_lowering(workload)
    forward = index_of(workload, "nll_loss_forward")
    backward = index_of(workload, "nll_loss_backward", "backward")
    # the int64 targets are read as they are, whatever the precision
    assert lowering.fixed_bytes[forward] == lowering.fixed_bytes[backward] == 8 * rows
    # forward: one log-probability a row in, the loss and total weight out
    op = workload.ops[forward]
    assert lowering.scaled_bytes[forward] == 4 * rows + op.bytes_written + (
        op.bytes_read - 4 * rows * classes - 8 * rows
    )
    # backward: the zero-filled gradient written once, and the scalars it reads
    op = workload.ops[backward]
    assert lowering.scaled_bytes[backward] == op.bytes_written + op.bytes_read - 4 * rows * classes - 8 * rows
    assert op.bytes_written == 4 * rows * classes and lowering.kernels[backward] == 2.0


class Attention(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = torch.nn.Linear(64, 3 * 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).view(x.shape[0], x.shape[1], 3, 4, 16).permute(2, 0, 3, 1, 4)
        return torch.nn.functional.scaled_dot_product_attention(q, k, v)


def test_fused_attention_keeps_the_scores_on_chip() -> None:
    workload = capture_train_step(Attention(), torch.randn(2, 512, 64), mode="forward_backward")
    costs = kernel_op_costs(workload, A100, FP32)
    for phase, kernels in (("forward", 1), ("backward", 3)):
        index = next(i for i, op in enumerate(workload.ops) if "scaled_dot_product" in op.name and op.phase == phase)
        op = workload.ops[index]
        shapes = np.asarray(op.implicit_gemms, dtype=np.float64)
        dims = gemm.GemmDims(shapes[:, 0], shapes[:, 1], shapes[:, 2], shapes[:, 3])
        compute = float(np.sum(gemm.best_compute_seconds(dims, DEVICE, PARAMETERS)))
        memory = streaming_s(float(op.bytes_read + op.bytes_written))
        assert costs.compute_s[index] == pytest.approx(compute)
        assert costs.memory_s[index] == pytest.approx(memory)
        assert costs.time_s[index] == pytest.approx(max(compute, memory) + kernels * A100.op_overhead_s)
        # the unfused GEMMs would also write and read the 512 x 512 scores of every head
        unfused = gemm.gemm_seconds(dims, DEVICE, PARAMETERS, launch_s=0.0, batched=True)
        assert costs.time_s[index] - kernels * A100.op_overhead_s <= float(np.sum(unfused))


def test_fused_attention_on_tensor_cores_is_faster_than_its_unfused_gemms() -> None:
    workload = capture_train_step(Attention(), torch.randn(2, 2048, 64), mode="inference")
    index = next(i for i, op in enumerate(workload.ops) if "scaled_dot_product" in op.name)
    shapes = np.asarray(workload.ops[index].implicit_gemms, dtype=np.float64)
    dims = gemm.GemmDims(shapes[:, 0], shapes[:, 1], shapes[:, 2], shapes[:, 3])
    device = kernel_device_from_chip(A100, MIXED_BF16)
    # in BF16 the traffic of 8 score matrices of 2048 x 2048 (64 MiB, more than the L2), not the
    # arithmetic, sets the unfused GEMMs' time
    unfused_s = gemm.gemm_seconds(dims, device, PARAMETERS, launch_s=0.0, bytes_per_element=2.0, batched=True)
    unfused = float(np.sum(unfused_s))
    fused = kernel_op_costs(workload, A100, MIXED_BF16).time_s[index] - A100.op_overhead_s
    assert fused < 0.75 * unfused


def test_the_d1_is_costed_without_the_gpu_lowering() -> None:
    d1 = get_preset("d1").chip
    workload = capture_train_step(LinearDropout().train(), torch.randn(64, 256), mode="forward_backward")
    costs = kernel_op_costs(workload, d1, FP32)
    # the D1's node model costs every recorded op, the CPU's dropout included
    assert costs.time_s[index_of(workload, "div_")] > 0.0
    assert costs.time_s[index_of(workload, "mul")] > 0.0


def test_a_gpu_holds_a_byte_an_element_for_a_dropout_mask() -> None:
    workload = capture_train_step(LinearDropout().train(), torch.randn(64, 256), mode="forward_backward")
    tensor = 64 * 256 * 4  # x, the linear's output, the mask and the dropout's output: 64 x 256 FP32
    # the peak is at the forward mul: x, the linear's output, the mask and the mul's output alive
    assert activation_peak_bytes(workload, FP32) == 4 * tensor
    # on CUDA the mask is native_dropout's torch.bool: a byte an element, in any precision
    assert activation_peak_bytes(workload, FP32, cuda=True) == 3 * tensor + 64 * 256
    assert activation_peak_bytes(workload, MIXED_BF16, cuda=True) == 3 * tensor // 2 + 64 * 256
    mask = workload.ops[index_of(workload, "bernoulli_")].output_ids[0]
    assert gpu_lowering(workload).dropout_masks == frozenset({mask})
    gpu = simulate(workload, make_system("a100", "1x1"), precision=FP32)
    d1 = simulate(workload, make_system("d1", "1x1"), precision=FP32)
    assert gpu.memory_bytes_per_chip.activations_peak_bytes == 3 * tensor + 64 * 256
    assert d1.memory_bytes_per_chip.activations_peak_bytes == 4 * tensor


def test_gpu_memory_is_counted_in_binary_units() -> None:
    assert get_preset("a100-pcie-80gb").chip.local_memory_bytes == 80 * 2**30
    assert get_preset("v100-pcie-32gb").chip.local_memory_bytes == 32 * 2**30
    assert get_preset("h200").chip.local_memory_bytes == 141 * 2**30
