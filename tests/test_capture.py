"""The capture against FLOP counts worked out by hand, and its handling of views, copies and errors."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hwmodel import Workload
from pytest_dojo.capture import capture_train_step, optimizer_state, recorder
from pytest_dojo.capture.train_step import CAPTURE_PHASES, capture_train_steps
from pytest_dojo.errors import CaptureError

BATCH, IN, HIDDEN, OUT = 32, 64, 128, 10


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(IN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, OUT))


def test_mlp_flops_by_phase_match_hand_count() -> None:
    """Linear(64,128) -> ReLU -> Linear(128,10) on 32 samples, loss = mean of the 320 outputs.

    Forward: addmm 2*32*64*128 + relu 32*128 + addmm 2*32*128*10 + mean 320 = 610,624.
    Backward: d(mean) 320; layer 2: dW 2*128*32*10 and dX 2*32*10*128 and db (sum of 320);
    relu: 32*128; layer 1: dW 2*64*32*128 and db (sum of 4,096); no dX (inputs need no grad)
    = 696,960.
    Optimizer (foreach AdamW over P = 64*128+128+128*10+10 = 9,610 parameters): step += 1 on 4
    step counters, then per element: decay mul 1, lerp 2, mul 1, addcmul 2, sqrt 1, div 1, add 1,
    addcdiv 2 = 11 per parameter: 4 + 11*9,610 = 105,714.
    """
    workload = capture_train_step(mlp(), torch.randn(BATCH, IN))
    parameters = IN * HIDDEN + HIDDEN + HIDDEN * OUT + OUT
    forward = 2 * BATCH * IN * HIDDEN + BATCH * HIDDEN + 2 * BATCH * HIDDEN * OUT + BATCH * OUT
    backward = (
        BATCH * OUT
        + 2 * HIDDEN * BATCH * OUT
        + 2 * BATCH * OUT * HIDDEN
        + BATCH * OUT
        + BATCH * HIDDEN
        + 2 * IN * BATCH * HIDDEN
        + BATCH * HIDDEN
    )
    optimizer = 4 + 11 * parameters
    assert workload.flops_by_phase == {"forward": forward, "backward": backward, "optimizer": optimizer}
    assert workload.parameter_count == parameters
    assert workload.unmodeled_ops == {}


def test_mlp_bytes_of_first_matmul() -> None:
    """addmm(bias[128], x[32,64], W^T[64,128]) reads (128 + 2048 + 8192) floats, writes 4096."""
    workload = capture_train_step(mlp(), torch.randn(BATCH, IN))
    first = workload.ops[0]
    assert first.name == "aten.addmm.default"
    assert (first.bytes_read, first.bytes_written) == (4 * (HIDDEN + BATCH * IN + IN * HIDDEN), 4 * BATCH * HIDDEN)
    assert first.module.endswith(".0") and first.phase == "forward"


class SmallCnn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, kernel_size=3, padding=1)
        self.head = nn.Linear(8 * 16 * 16, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(images)).flatten(1))


def test_cnn_forward_and_total_flops_match_hand_count() -> None:
    """Conv2d(3->8, 3x3, pad 1) on 4 x 3 x 16 x 16, ReLU, flatten, Linear(2048 -> 10).

    Forward: conv 2 * 4*8*16*16 outputs * 3*3*3 = 442,368; relu 8,192; linear 2*4*2048*10 =
    163,840; mean of 40 = 40: 614,440.
    Backward: d(mean) 40; linear dW 163,840, dX 163,840, db 40; relu 8,192; conv dW 442,368
    (no d(input): images need no grad): 778,320.
    """
    workload = capture_train_step(SmallCnn(), torch.randn(4, 3, 16, 16))
    conv_forward = 2 * (4 * 8 * 16 * 16) * (3 * 3 * 3)
    assert workload.flops_by_phase["forward"] == conv_forward + 8192 + 163_840 + 40
    assert workload.flops_by_phase["backward"] == 40 + 163_840 + 163_840 + 40 + 8192 + conv_forward
    conv_ops = [op for op in workload.ops if "convolution" in op.name]
    assert [op.phase for op in conv_ops] == ["forward", "backward"]
    assert [op.flop_source for op in conv_ops] == ["torch", "formula"]


class AttentionBlock(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, length, dim = tokens.shape
        q, k, v = self.qkv(tokens).view(batch, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        return F.scaled_dot_product_attention(q, k, v)


def test_attention_flops_are_counted_on_the_cpu() -> None:
    """torch's registry counts the CPU flash-attention kernels as 0; ours does not.

    B=2, H=4, L=128, D=16: forward QK^T and PV = 2*B*H*L*L*(D + D) = 4,194,304; backward
    recompute QK^T, dP, dV, dQ, dK = 2*B*H*L*L*(3D + 2D) = 10,485,760.
    """
    batch, heads, length, dim = 2, 4, 128, 64
    workload = capture_train_step(AttentionBlock(dim, heads), torch.randn(batch, length, dim))
    attention = [op for op in workload.ops if "scaled_dot_product" in op.name]
    assert [op.name for op in attention] == [
        "aten._scaled_dot_product_flash_attention_for_cpu.default",
        "aten._scaled_dot_product_flash_attention_for_cpu_backward.default",
    ]
    head_dim = dim // heads
    assert attention[0].flops == 2 * batch * heads * length * length * 2 * head_dim
    assert attention[1].flops == 2 * batch * heads * length * length * 5 * head_dim
    assert all(op.flop_source == "formula" for op in attention)


def test_views_are_free_and_copies_are_recorded() -> None:
    """transpose is a view (no op recorded); contiguous() after it is a copy of every byte."""

    class Transposer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(8))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x.transpose(0, 1).contiguous() * self.scale[:, None]).view(-1)

    workload = capture_train_step(Transposer(), torch.randn(16, 8))
    names = [op.name for op in workload.ops]
    assert not any("transpose" in name or name.startswith("aten.view") for name in names)
    clones = [op for op in workload.ops if op.name == "aten.clone.default"]
    assert clones and clones[0].bytes_read == clones[0].bytes_written == 16 * 8 * 4
    assert clones[0].flops == 0 and clones[0].flop_source == "formula"


def test_op_without_formula_is_listed_as_unmodeled_and_costed_by_bytes() -> None:
    class Cumulative(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cummax(self.linear(x), dim=1).values

    workload = capture_train_step(Cumulative(), torch.randn(3, 4))
    assert "aten.cummax.default" in workload.unmodeled_ops
    op = next(op for op in workload.ops if op.name == "aten.cummax.default")
    assert op.flops == 0 and op.bytes_read > 0 and op.bytes_written > 0


def test_meta_model_and_inputs_capture_at_any_size() -> None:
    """A model built on the meta device, with meta inputs, captures without any memory."""
    with torch.device("meta"):
        model = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2), nn.BatchNorm2d(16), nn.ReLU())
        images = torch.empty(8, 3, 960, 1280)
    workload = capture_train_step(model, images)
    conv = next(op for op in workload.ops if op.name == "aten.convolution.default")
    out_h, out_w = (960 - 3) // 2 + 1, (1280 - 3) // 2 + 1
    assert conv.flops == 2 * 8 * 16 * out_h * out_w * 3 * 3 * 3
    assert any(t.kind == "buffer" for t in workload.tensors)


def test_batch_size_resizes_the_leading_dimension() -> None:
    whole = capture_train_step(mlp(), torch.randn(BATCH, IN))
    quarter = capture_train_step(mlp(), torch.randn(BATCH, IN), batch_size=BATCH // 4)
    assert quarter.batch_size == BATCH // 4
    assert quarter.ops[0].flops * 4 == whole.ops[0].flops


def test_gradients_are_ready_after_their_backward_op() -> None:
    workload = capture_train_step(mlp(), torch.randn(BATCH, IN))
    for parameter in workload.parameters:
        op = workload.ops[parameter.grad_ready_op]
        assert op.phase == "backward"
    ready = {p.name: p.grad_ready_op for p in workload.parameters}
    assert ready["2.weight"] < ready["0.weight"], "the last layer's gradient is ready first"


def test_gradients_are_gradient_storages_not_activations() -> None:
    """Each of the four parameters' gradients is one FP32 storage of kind ``gradient``: 9,610
    parameters x 4 bytes = 38,440 bytes, none of it counted among the activations."""
    workload = capture_train_step(mlp(), torch.randn(BATCH, IN))
    gradient_bytes = sum(t.nbytes for t in workload.tensors if t.kind == "gradient")
    assert gradient_bytes == 4 * (IN * HIDDEN + HIDDEN + HIDDEN * OUT + OUT)


def test_optimizer_state_exists_before_the_step() -> None:
    """The recorded step is a steady-state step: AdamW's moments are not created inside it."""
    workload = capture_train_step(mlp(), torch.randn(BATCH, IN))
    optimizer_ops = {op.name for op in workload.ops if op.phase == "optimizer"}
    assert "aten.zeros_like.default" not in optimizer_ops
    state_bytes = sum(t.nbytes for t in workload.tensors if t.kind == "optimizer_state")
    assert state_bytes >= 2 * 4 * workload.parameter_count


def test_capture_is_deterministic_and_round_trips_through_json() -> None:
    first = capture_train_step(mlp(), torch.randn(BATCH, IN))
    second = capture_train_step(mlp(), torch.randn(BATCH, IN))
    assert first.to_dict() == second.to_dict()
    assert Workload.from_json(first.to_json()) == first


def test_data_dependent_op_is_a_one_line_capture_error() -> None:
    class Selective(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.linear(x)
            return y[y > 0].sum()

    with pytest.raises(CaptureError) as caught:
        capture_train_step(Selective(), torch.randn(3, 4))
    message = str(caught.value)
    assert "\n" not in message and "Selective" in message and "data-dependent" in message


def test_targets_and_loss_function_are_used() -> None:
    targets = torch.randint(0, OUT, (BATCH,))
    workload = capture_train_step(mlp(), torch.randn(BATCH, IN), targets=targets, loss_fn=F.cross_entropy)
    names = {op.name for op in workload.ops if op.phase == "forward"}
    assert "aten.nll_loss_forward.default" in names and "aten._log_softmax.default" in names


def test_grouped_convolution_backward_costs_one_forward_per_gradient() -> None:
    """Depthwise 3x3 over 64 channels, 32x32, batch 1: forward 2 x 64*32*32 x (1*3*3) = 1,179,648.
    Backward computes the input and the weight gradient, one forward each: 2,359,296 (torch 2.13's
    own formula counts the input gradient as dense: 76,677,120)."""

    class Depthwise(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(64, 64, 1, bias=False)
            self.depthwise = nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.depthwise(self.stem(x))

    workload = capture_train_step(Depthwise(), torch.randn(1, 64, 32, 32))
    backward = [op for op in workload.ops if op.name == "aten.convolution_backward.default"]
    depthwise = next(op for op in backward if op.module.endswith("depthwise"))
    assert depthwise.flops == 2 * 1_179_648
    stem = next(op for op in backward if op.module.endswith("stem"))
    assert stem.flops == 2 * 64 * 32 * 32 * 64, "the first conv needs only its weight gradient"


def test_gemms_of_matrix_multiplies_and_of_convolutions_aten_runs_per_sample() -> None:
    """On one thread ATen runs a 1x1 convolution at batch 2 as one GEMM per sample (``slow_conv2d``)
    and a 3x3 one with oneDNN (no GEMM calls); a Linear is ``addmm`` forward and two ``mm`` backward."""
    model = nn.Sequential(
        nn.Conv2d(16, 32, 1), nn.ReLU(), nn.Conv2d(32, 8, 3, padding=1), nn.Flatten(), nn.Linear(128, 10)
    )
    previous = torch.get_num_threads()
    workload = capture_train_step(model, torch.randn(2, 16, 4, 4), intra_op_threads=1)
    assert torch.get_num_threads() == previous
    recorded = [(op.name.split(".")[1], op.phase, op.gemms) for op in workload.ops if op.gemms]
    assert recorded == [
        ("convolution", "forward", ((2, 32, 16, 16),)),  # per sample: (32 x 16) @ (16 x 16 pixels)
        ("addmm", "forward", ((1, 2, 10, 128),)),
        ("mm", "backward", ((1, 2, 128, 10),)),  # input gradient
        ("mm", "backward", ((1, 10, 128, 2),)),  # weight gradient
        ("convolution_backward", "backward", ((2, 32, 16, 16),)),  # weight gradient only: input needs none
    ]
    assert all(op.flops == sum(2 * c * m * n * k for c, m, n, k in op.gemms) for op in workload.ops if op.gemms)
    # With two threads ATen runs the 1x1 convolution with oneDNN too: no per-sample GEMMs.
    threaded = capture_train_step(model, torch.randn(2, 16, 4, 4), intra_op_threads=2)
    assert [op.name.split(".")[1] for op in threaded.ops if op.gemms] == ["addmm", "mm", "mm"]


def test_cpu_flash_attention_records_its_blocks() -> None:
    """B=2, H=4, L=128, head dim 16: query blocks of 32 (L < 192), one key block of 128:
    2 * 4 * 4 = 32 block pairs, two GEMMs each forward, five backward."""
    workload = capture_train_step(AttentionBlock(64, 4), torch.randn(2, 128, 64))
    forward, backward = (op for op in workload.ops if "scaled_dot_product" in op.name)
    assert forward.gemms == ((32, 32, 128, 16), (32, 32, 16, 128))
    assert len(backward.gemms) == 5
    assert sum(2 * c * m * n * k for c, m, n, k in backward.gemms) == backward.flops


# --- several batches in one call, and the shortcuts that make a capture cheaper ---------------------


class PerSampleLoop(nn.Module):
    """Ops that depend on the batch (one call per sample): the optimizer's records cannot be reused."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.linear(sample) for sample in x])


@pytest.mark.parametrize(
    ("make_model", "inputs"),
    [(mlp, torch.randn(BATCH, IN)), (SmallCnn, torch.randn(4, 3, 16, 16)), (PerSampleLoop, torch.randn(5, 4))],
)
def test_several_batches_equal_separate_captures(make_model: Any, inputs: torch.Tensor) -> None:
    """Each workload of ``capture_train_steps`` is the one ``capture_train_step`` records alone, also
    where the second batch runs other ops (then its optimizer step is run, not reused)."""
    batches = (3, 2, 3)
    together = capture_train_steps(make_model(), inputs, batch_sizes=batches)
    for batch, workload in zip(batches, together, strict=True):
        assert workload == capture_train_step(make_model(), inputs, batch_size=batch)
    assert together[0] == together[2]


def test_the_second_batch_reuses_the_optimizer_step() -> None:
    """The optimizer runs once for two batches of the same ops, in one process: its phase time is
    spent once."""
    once: dict[str, float] = {}
    capture_train_steps(mlp(), torch.randn(BATCH, IN), batch_sizes=(4,), phase_times=once)
    twice: dict[str, float] = {}
    calls = []
    original = torch.optim.AdamW.step

    def counted(self: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.optim.AdamW, "step", counted)
        capture_train_steps(mlp(), torch.randn(BATCH, IN), batch_sizes=(4, 8), phase_times=twice, processes=1)
    assert len(calls) == 1
    assert set(once) == set(twice) == set(CAPTURE_PHASES)


@pytest.mark.parametrize(
    ("make_optimizer", "lazy"),
    [
        (lambda params: torch.optim.AdamW(params, lr=1e-3, foreach=True), True),
        (lambda params: torch.optim.AdamW(params, lr=1e-3, foreach=False, amsgrad=True), True),
        (lambda params: torch.optim.Adam(params, lr=1e-3, foreach=True, weight_decay=0.1), True),
        (lambda params: torch.optim.Adam(params, lr=1e-3, foreach=False, maximize=True), True),
        (lambda params: torch.optim.SGD(params, lr=1e-2, momentum=0.9, foreach=True), False),
    ],
)
def test_optimizer_state_shortcuts_record_what_a_whole_step_records(
    make_optimizer: Any, lazy: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The state made by ``_init_group`` alone (Adam, AdamW), in-place foreach updates left unrun on
    fake tensors and step counts read from their constants give the workload of the generic path: a
    whole step on zero gradients, every op run by FakeTensorMode. SGD's momentum is made inside its
    step: it always takes the generic path."""
    model = SmallCnn()
    whole_steps = []
    original = optimizer_state._step_on_zero_gradients

    def counted(*arguments: Any) -> None:
        whole_steps.append(1)
        original(*arguments)

    monkeypatch.setattr(optimizer_state, "_step_on_zero_gradients", counted)
    fast = capture_train_step(model, torch.randn(4, 3, 16, 16), optimizer=make_optimizer)
    assert len(whole_steps) == (0 if lazy else 1)
    monkeypatch.setattr(optimizer_state, "LAZY_STATE_OPTIMIZERS", ())
    monkeypatch.setattr(recorder, "_runs_for_nothing", lambda *arguments: False)
    monkeypatch.setattr(recorder, "_constant_of", lambda tensor: None)
    generic = capture_train_step(model, torch.randn(4, 3, 16, 16), optimizer=make_optimizer)
    assert len(whole_steps) == (1 if lazy else 2)
    assert fast == generic
    assert sum(op.phase == "optimizer" for op in fast.ops) >= 2


def test_batch_sizes_must_be_positive_ints() -> None:
    for bad in ((), (0,), (2, -1), (1.5,)):
        with pytest.raises(CaptureError, match="batch_sizes must be one or more ints >= 1"):
            capture_train_steps(mlp(), torch.randn(BATCH, IN), batch_sizes=bad)  # type: ignore[arg-type]
