"""What the capture records for a device kernel model: implicit GEMMs, rows of row-wise ops, and
ops that move no data, against values worked out by hand and FLOP counts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import flop_registry
from torch.utils.module_tracker import ModuleTracker

from hwmodel import OpRecord, Workload
from hwmodel.errors import WorkloadError
from pytest_dojo.capture import capture_train_step
from pytest_dojo.capture.recorder import DispatchRecorder, Recorder
from pytest_dojo.capture.shapes import NO_TRAFFIC_OPS

aten = torch.ops.aten


def gemm_flops(gemms: tuple[tuple[int, int, int, int], ...]) -> int:
    return sum(2 * count * m * n * k for count, m, n, k in gemms)


def record(make_inputs: Callable[[], tuple[Any, ...]], call: Callable[..., Any]) -> list[OpRecord]:
    """The ops recorded for ``call(*inputs)``, inputs made as fake tensors outside the recorder."""
    recorder = Recorder(tracker=ModuleTracker())
    with FakeTensorMode():
        inputs = make_inputs()
        with DispatchRecorder(recorder):
            call(*inputs)
    return recorder.ops


def test_matrix_multiplies_are_their_own_gemm() -> None:
    """Linear(64 -> 128) on 32 samples: addmm (32 x 64) @ (64 x 128) forward; backward the weight
    gradient (128 x 32) @ (32 x 64) and no input gradient (the inputs need none). bmm of 3 batches."""
    torch.manual_seed(0)
    workload = capture_train_step(nn.Linear(64, 128), torch.randn(32, 64))
    recorded = [(op.name, op.implicit_gemms) for op in workload.ops if op.implicit_gemms]
    assert recorded == [("aten.addmm.default", ((1, 32, 128, 64),)), ("aten.mm.default", ((1, 128, 64, 32),))]
    ops = record(
        lambda: (torch.empty(3, 5, 7), torch.empty(3, 7, 2), torch.empty(3, 5, 2)),
        lambda a, b, c: (aten.bmm(a, b), aten.baddbmm(c, a, b)),
    )
    assert [op.implicit_gemms for op in ops] == [((3, 5, 2, 7),), ((3, 5, 2, 7),)]


class GroupedStrided(nn.Module):
    """A 1x1 stem (so the grouped convolution's input needs a gradient), then Conv2d(8 -> 16,
    3x3, stride 2, padding 1, groups 4) on 2 x 8 x 8 x 8: output 2 x 16 x 4 x 4."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(8, 8, 1, bias=False)
        self.grouped = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=4, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output: torch.Tensor = self.grouped(self.stem(x))
        return output


def test_convolution_implicit_gemms_by_hand() -> None:
    """Per group (4 of them): 2 input channels, 4 output channels, 9 taps.
    Forward M = 2 x 4 x 4 = 32, N = 4, K = 2 x 9 = 18; input gradient M = 2 x 8 x 8 = 128, N = 2,
    K = 4 x 9 = 36; weight gradient M = 4, N = 18, K = 32. The stem needs its weight gradient
    only: M = 8, N = 8, K = 2 x 8 x 8 = 128."""
    workload = capture_train_step(GroupedStrided(), torch.randn(2, 8, 8, 8))
    by_module = {
        (op.module.rsplit(".", 1)[-1], op.phase): op.implicit_gemms for op in workload.ops if "convolution" in op.name
    }
    assert by_module == {
        ("stem", "forward"): ((1, 128, 8, 8),),
        ("grouped", "forward"): ((4, 32, 4, 18),),
        ("grouped", "backward"): ((4, 128, 2, 36), (4, 4, 18, 32)),
        ("stem", "backward"): ((1, 8, 8, 128),),
    }
    # A strided convolution's input gradient runs the zero taps too: 4x the FLOPs of a forward here.
    grouped_forward, grouped_backward = (op for op in workload.ops if op.module.endswith("grouped"))
    assert gemm_flops(grouped_backward.implicit_gemms[:1]) == 4 * grouped_forward.flops
    assert gemm_flops(grouped_backward.implicit_gemms[1:]) == grouped_forward.flops


def test_convolutions_record_their_window_and_sizes() -> None:
    """(kernel h, w, stride h, w, dilation h, w, groups, in channels, out channels, in h, w, out h, w):
    the grouped 3x3 at stride 2 takes 8 x 8 images to 4 x 4, the 1x1 stem keeps 8 x 8; forward and
    backward ops carry the same window; a transposed convolution and a matrix multiply carry none."""
    workload = capture_train_step(GroupedStrided(), torch.randn(2, 8, 8, 8))
    windows = {
        (op.module.rsplit(".", 1)[-1], op.phase): op.conv_window for op in workload.ops if "convolution" in op.name
    }
    assert windows == {
        ("stem", "forward"): (1, 1, 1, 1, 1, 1, 1, 8, 8, 8, 8, 8, 8),
        ("grouped", "forward"): (3, 3, 2, 2, 1, 1, 4, 8, 16, 8, 8, 4, 4),
        ("grouped", "backward"): (3, 3, 2, 2, 1, 1, 4, 8, 16, 8, 8, 4, 4),
        ("stem", "backward"): (1, 1, 1, 1, 1, 1, 1, 8, 8, 8, 8, 8, 8),
    }
    assert all(not op.conv_window for op in workload.ops if "convolution" not in op.name)
    transposed = capture_train_step(nn.ConvTranspose2d(4, 4, 3, stride=2), torch.randn(2, 4, 5, 5))
    assert all(not op.conv_window for op in transposed.ops)


def test_attention_is_its_batched_gemms() -> None:
    """B=2, H=4, L=128, head dim 16: count 8; forward Q K^T (128 x 128 x 16) and P V (128 x 16 x 128);
    backward adds P^T dO, dO V^T, dS K, dS^T Q. Their FLOPs are the recorded ones."""

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv = nn.Linear(64, 192, bias=False)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            q, k, v = self.qkv(tokens).view(2, 128, 3, 4, 16).permute(2, 0, 3, 1, 4)
            return F.scaled_dot_product_attention(q, k, v)

    workload = capture_train_step(Attention(), torch.randn(2, 128, 64))
    forward, backward = (op for op in workload.ops if "scaled_dot_product" in op.name)
    assert forward.implicit_gemms == ((8, 128, 128, 16), (8, 128, 16, 128))
    assert backward.implicit_gemms == (
        (8, 128, 128, 16),
        (8, 128, 16, 128),
        (8, 128, 128, 16),
        (8, 128, 16, 128),
        (8, 128, 16, 128),
    )
    assert gemm_flops(forward.implicit_gemms) == forward.flops
    assert gemm_flops(backward.implicit_gemms) == backward.flops


dims = st.integers(min_value=1, max_value=9)


@settings(max_examples=40, deadline=None)
@given(batch=dims, m=dims, n=dims, k=dims)
def test_matrix_multiply_gemms_carry_torch_flops(batch: int, m: int, n: int, k: int) -> None:
    ops = record(
        lambda: (torch.empty(m, k), torch.empty(k, n), torch.empty(batch, m, k), torch.empty(batch, k, n)),
        lambda a, b, c, d: (aten.mm(a, b), aten.bmm(c, d)),
    )
    assert [op.flop_source for op in ops] == ["torch", "torch"]
    assert all(gemm_flops(op.implicit_gemms) == op.flops for op in ops)


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 3),
    groups=st.integers(1, 3),
    in_per_group=st.integers(1, 4),
    out_per_group=st.integers(1, 4),
    kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    stride=st.integers(1, 3),
    dilation=st.integers(1, 2),
    padding=st.integers(0, 2),
    size=st.tuples(st.integers(5, 9), st.integers(5, 9)),
    transposed=st.booleans(),
)
def test_convolution_gemms_carry_the_recorded_flops(
    batch: int,
    groups: int,
    in_per_group: int,
    out_per_group: int,
    kernel: tuple[int, int],
    stride: int,
    dilation: int,
    padding: int,
    size: tuple[int, int],
    transposed: bool,
) -> None:
    """Forward and weight gradient: 2 x sum(count m n k) is the op's FLOPs. Input gradient (a
    transposed convolution's forward): the same times input pixels over output pixels of the
    convolution it is, equal where those agree (stride 1, same padding)."""
    in_channels, out_channels = groups * in_per_group, groups * out_per_group
    weight = (in_channels, out_per_group, *kernel) if transposed else (out_channels, in_per_group, *kernel)
    arguments = ([stride] * 2, [padding] * 2, [dilation] * 2, transposed, [0, 0], groups)
    with FakeTensorMode():
        probe = aten.convolution(torch.empty(batch, in_channels, *size), torch.empty(weight), None, *arguments)
    output_shape = tuple(probe.shape)
    if min(output_shape) < 1:
        return
    masks = ((True, False, False), (False, True, False), (True, True, False))

    def run(x: torch.Tensor, w: torch.Tensor, grad: torch.Tensor) -> None:
        aten.convolution(x, w, None, *arguments)
        for mask in masks:
            aten.convolution_backward(grad, x, w, None, *arguments, list(mask))

    forward, input_grad, weight_grad, both = record(
        lambda: (torch.empty(batch, in_channels, *size), torch.empty(weight), torch.empty(output_shape)), run
    )
    pixels_in, pixels_out = size[0] * size[1], output_shape[2] * output_shape[3]
    direct_in, direct_out = (pixels_out, pixels_in) if transposed else (pixels_in, pixels_out)
    assert forward.flop_source == "torch" and forward.flops == both.flops / 2
    assert gemm_flops(weight_grad.implicit_gemms) == weight_grad.flops
    assert len(both.implicit_gemms) == 2 and gemm_flops(both.implicit_gemms) == gemm_flops(
        input_grad.implicit_gemms + weight_grad.implicit_gemms
    )
    # Of forward and input gradient, one is the direct convolution's forward, the other its input gradient.
    direct_forward, direct_input_grad = (input_grad, forward) if transposed else (forward, input_grad)
    assert gemm_flops(direct_forward.implicit_gemms) == direct_forward.flops
    assert gemm_flops(direct_input_grad.implicit_gemms) * direct_out == direct_input_grad.flops * direct_in
    if not transposed and groups == 1:
        torch_backward = flop_registry[aten.convolution_backward]
        with FakeTensorMode():
            x, w, grad = torch.empty(batch, in_channels, *size), torch.empty(weight), torch.empty(output_shape)
            out = aten.convolution_backward(grad, x, w, None, *arguments, [True, True, False])
            assert torch_backward(grad, x, w, None, *arguments, [True, True, False], out_val=out) == both.flops


def test_row_wise_ops_record_their_rows() -> None:
    """LayerNorm over the last 12 of 2 x 5 x 12: 10 rows of 12; over the last two dims: 2 rows of 60.
    Softmax over dim 1 of 3 x 7 x 4: 12 rows of 7. Cross-entropy over 10 classes for 6 samples:
    log-softmax, 6 rows of 10. Backward ops have the same rows."""

    class Rows(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(1))
            self.row = nn.LayerNorm(12)
            self.plane = nn.LayerNorm((5, 12))

        def forward(self, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
            x = x * self.scale
            softmax = torch.softmax(y * self.scale, dim=1)
            classes = F.cross_entropy(logits * self.scale, torch.zeros(6, dtype=torch.long))
            total: torch.Tensor = self.row(x).sum() + self.plane(x).sum() + softmax.sum() + classes
            return total

    workload = capture_train_step(Rows(), (torch.randn(2, 5, 12), torch.randn(3, 7, 4), torch.randn(6, 10)))
    rows = [(op.name.split(".")[1], op.phase, op.rows, op.row_elements) for op in workload.ops if op.row_elements]
    assert sorted(rows) == sorted(
        [
            ("native_layer_norm", "forward", 10, 12),
            ("native_layer_norm", "forward", 2, 60),
            ("_softmax", "forward", 12, 7),
            ("_log_softmax", "forward", 6, 10),
            ("native_layer_norm_backward", "backward", 10, 12),
            ("native_layer_norm_backward", "backward", 2, 60),
            ("_softmax_backward_data", "backward", 12, 7),
            ("_log_softmax_backward_data", "backward", 6, 10),
        ]
    )
    assert all(
        op.rows == op.row_elements == 0 for op in workload.ops if "norm" not in op.name and "softmax" not in op.name
    )


def test_views_and_allocations_move_no_bytes() -> None:
    """Views are not recorded; allocations and ``_unsafe_view`` (a 3-D by 2-D matmul's result) are,
    with nothing read or written, and ``_unsafe_view`` returns its input's storage."""

    def call(x: torch.Tensor, w: torch.Tensor) -> None:
        x @ w
        torch.empty_like(x), x.new_empty((3,)), torch.empty_strided((2, 2), (2, 1))
        x.new_empty_strided((2, 2), (2, 1)), torch.empty(3)
        x.view(6, 4), x.reshape(6, 4), aten.alias(x), x.as_strided((2, 2), (1, 1)), x[:, :1].expand(2, 3, 4)
        w.t(), x.transpose(0, 1), x.permute(2, 0, 1), x.unsqueeze(0).squeeze(0), x[1:], x[0], x.detach()

    ops = record(lambda: (torch.empty(2, 3, 4), torch.empty(4, 5)), call)
    assert [op.name for op in ops] == [
        "aten.mm.default",
        "aten._unsafe_view.default",
        "aten.empty_like.default",
        "aten.new_empty.default",
        "aten.empty_strided.default",
        "aten.new_empty_strided.default",
        "aten.empty.memory_format",
    ]
    assert all(op.bytes_read == op.bytes_written == 0 for op in ops[1:])
    assert {op.name for op in ops[1:]} == NO_TRAFFIC_OPS
    assert ops[1].input_ids == ops[1].output_ids == ops[0].output_ids
    assert ops[0].bytes_written == 4 * 6 * 5


def test_new_fields_round_trip_and_older_json_loads() -> None:
    workload = capture_train_step(GroupedStrided(), torch.randn(2, 8, 8, 8))
    assert any(op.implicit_gemms for op in workload.ops)
    assert Workload.from_json(workload.to_json()) == workload
    assert any(op.conv_window for op in Workload.from_json(workload.to_json()).ops)
    broken = workload.to_dict()
    next(op for op in broken["ops"] if op["conv_window"])["conv_window"] = [3, 3, 1]
    with pytest.raises(WorkloadError, match="conv_window must be 13 positive ints"):
        Workload.from_dict(broken)
    older = workload.to_dict()
    for op in older["ops"]:
        for key in ("implicit_gemms", "rows", "row_elements", "conv_window"):
            del op[key]
    loaded = Workload.from_dict(older)
    assert all(op.implicit_gemms == () and op.rows == op.row_elements == 0 and not op.conv_window for op in loaded.ops)
    assert [op.flops for op in loaded.ops] == [op.flops for op in workload.ops]
