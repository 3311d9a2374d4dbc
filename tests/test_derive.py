"""The step at one batch derived from captures at two others, against a fresh capture at that batch.

Every derived workload is compared whole (every op, tensor and parameter record) with what
``capture_train_step`` records at that batch; steps that are not affine in the batch must be refused
with :class:`DerivationError`, never derived wrong.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from dojo_networks import get_network
from hwmodel import OpRecord, TensorRecord, Workload
from hwmodel.step.memory_arrays import tensor_structure
from hwmodel.step.structure import STRUCTURE_CACHE, StructureKey
from pytest_dojo.capture.derive import (
    KERNEL_CHOICE_BATCHES,
    SLOW_CONVOLUTION_BATCH,
    BatchAffineStep,
    DerivationError,
    derive_workload,
    fit_batch_affine,
)
from pytest_dojo.capture.train_step import capture_train_step, capture_train_steps
from pytest_dojo.errors import CaptureError


def captures(model: nn.Module, inputs: Any, batches: tuple[int, ...], **step: Any) -> dict[int, Workload]:
    """Fresh captures of ``model``'s step at each of ``batches`` (one replica's share of ``inputs``)."""
    return dict(zip(batches, capture_train_steps(model, inputs, batch_sizes=batches, **step), strict=True))


def assert_same_workload(derived: Workload, fresh: Workload) -> None:
    """Field by field, naming the first op that differs."""
    assert derived.batch_size == fresh.batch_size
    assert len(derived.ops) == len(fresh.ops)
    for index, (ours, theirs) in enumerate(zip(derived.ops, fresh.ops, strict=True)):
        assert ours == theirs, f"op {index} differs"
    assert derived.tensors == fresh.tensors
    assert derived.parameters == fresh.parameters
    assert derived.to_dict() == fresh.to_dict()
    assert derived == fresh


# --- real networks ---------------------------------------------------------------------------------

NETWORK_BATCHES = {
    # network, size: capture at the first two, derive the others
    ("hydranet", "small"): (2, 3, 5, 13),
    ("regnety_1_6gf", "small"): (2, 3, 9),
    ("lanes", "small"): (2, 3, 7),
    ("occupancy", "small"): (2, 3, 7),
}
SLOW_NETWORK_BATCHES = {
    ("hydranet", "full"): (2, 3, 5, 13),
    ("regnety_1_6gf", "full"): (2, 3, 7, 12),
    ("lanes", "full"): (2, 3, 6, 11),
    ("occupancy", "full"): (2, 3, 4, 9),
}


def network_captures(network: str, size: str, batches: tuple[int, ...]) -> dict[int, Workload]:
    spec = get_network(network)
    with torch.device("meta"):
        model = spec.build(size)
    inputs, targets = spec.make_batch(size, 4, "meta")
    # One thread: ATen's CPU convolutions then record per-sample GEMMs below batch 16, the hardest case.
    return captures(model, inputs, batches, targets=targets, loss_fn=spec.loss, name=network, intra_op_threads=1)


def check_network(network: str, size: str, batches: tuple[int, ...]) -> None:
    workloads = network_captures(network, size, batches)
    fit = fit_batch_affine(workloads[batches[0]], workloads[batches[1]])
    assert any(not isinstance(op, OpRecord) for op in fit.ops), "some op must grow with the batch"
    for batch in batches:
        assert_same_workload(fit.at(batch), workloads[batch])


@pytest.mark.parametrize(("network", "size"), sorted(NETWORK_BATCHES))
def test_network_step_derives_exactly(network: str, size: str) -> None:
    check_network(network, size, NETWORK_BATCHES[network, size])


@pytest.mark.slow
@pytest.mark.parametrize(("network", "size"), sorted(SLOW_NETWORK_BATCHES))
def test_full_network_step_derives_exactly(network: str, size: str) -> None:
    check_network(network, size, SLOW_NETWORK_BATCHES[network, size])


@pytest.mark.slow
def test_regnet_derives_from_batch_16_on() -> None:
    """From batch 16 on (oneDNN convolutions), a fit of 16 and 17 derives 40 exactly."""
    workloads = network_captures("regnety_1_6gf", "small", (16, 17, 40))
    assert_same_workload(derive_workload(workloads[16], workloads[17], 40), workloads[40])


# --- synthetic networks ----------------------------------------------------------------------------


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(12, 32), nn.GELU(), nn.LayerNorm(32), nn.Linear(32, 5))


class SmallBatchNormCnn(nn.Module):
    """Convolutions with batch norm (statistics over N x H x W), pooling and a softmax head."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 8, 1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Linear(8 * 4 * 4, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.head(self.features(images).flatten(1)), dim=-1)


def test_mlp_derives_exactly_in_both_directions() -> None:
    workloads = captures(mlp(), torch.randn(64, 12), (2, 3, 7, 40))
    assert_same_workload(derive_workload(workloads[2], workloads[3], 40), workloads[40])
    assert_same_workload(derive_workload(workloads[40], workloads[7], 2), workloads[2])


def test_a_derived_workload_has_its_templates_structure() -> None:
    """A derivation hands its template's structure number on without comparing: what a comparison
    of the two gives, and what the simulator builds from the structure is its template's."""
    workloads = captures(SmallBatchNormCnn(), torch.randn(8, 3, 8, 8), (2, 3))
    derived = fit_batch_affine(workloads[2], workloads[3]).at(6)
    assert StructureKey(derived) == StructureKey(workloads[2])
    assert STRUCTURE_CACHE.number(derived) == STRUCTURE_CACHE.number(workloads[2])
    assert tensor_structure(derived) is tensor_structure(workloads[2])


def test_batch_norm_statistics_are_affine_in_the_batch() -> None:
    """Batch norm reads N x C x H x W elements and writes per-channel statistics: its bytes and FLOPs
    grow by one sample's share per sample (slope), its statistics not at all."""
    workloads = captures(SmallBatchNormCnn(), torch.randn(16, 3, 8, 8), (2, 3, 6, 11), intra_op_threads=1)
    fit = fit_batch_affine(workloads[2], workloads[3])
    norms = [
        (index, op)
        for index, op in enumerate(fit.ops)
        if not isinstance(op, OpRecord) and "batch_norm" in op.template.name and op.template.phase == "forward"
    ]
    assert len(norms) == 2
    # The first norm: 8 channels x 8 x 8 pixels per sample, 8 FLOPs per element (hwmodel's rule).
    _, first = norms[0]
    assert first.flops == (8 * 8 * 8 * 8, 0)
    for batch in (6, 11):
        assert_same_workload(fit.at(batch), workloads[batch])
        statistics = [workloads[batch].tensors[i] for i in workloads[batch].ops[norms[0][0]].output_ids[1:]]
        assert statistics and all(t.nbytes == 8 * 4 for t in statistics), "per-channel: the same at any batch"


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(1, 24), min_size=3, max_size=3, unique=True))
def test_a_derivation_is_exact_or_refused(batches: list[int]) -> None:
    """Any two captures of the batch-norm CNN derive any third batch exactly, or refuse: the fit,
    only where the captures straddle a batch at which ATen's kernels change; the batch, only
    outside the fit's domain."""
    first, second, third = batches
    workloads = captures(SmallBatchNormCnn(), torch.randn(32, 3, 8, 8), (first, second, third), intra_op_threads=1)
    try:
        fit = fit_batch_affine(workloads[first], workloads[second])
    except DerivationError as refused:
        assert "GEMMs" in str(refused)
        assert any(min(first, second) < batch <= max(first, second) for batch in KERNEL_CHOICE_BATCHES)
        return
    if fit.covers(third):
        assert_same_workload(fit.at(third), workloads[third])
    else:
        with pytest.raises(DerivationError, match="outside what the captures"):
            fit.at(third)
    if min(first, second) >= 2 and max(first, second) < SLOW_CONVOLUTION_BATCH:
        assert (fit.lowest, fit.highest) == (2, SLOW_CONVOLUTION_BATCH - 1)


# --- what cannot be derived ------------------------------------------------------------------------


class PairwiseLoss(nn.Module):
    """A contrastive-style head: a batch x batch similarity matrix, quadratic in the batch."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(16, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embedded = self.embed(x)
        return (embedded @ embedded.T).softmax(dim=-1)


def test_batch_by_batch_matmul_is_refused() -> None:
    workloads = captures(PairwiseLoss(), torch.randn(8, 16), (2, 3))
    with pytest.raises(DerivationError, match=r"aten\.mm\.default.*(quadratic|not proportional)"):
        fit_batch_affine(workloads[2], workloads[3])


class PerSampleLoop(nn.Module):
    """A model whose ops depend on the batch: one call per sample."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.linear(sample) for sample in x])


def test_a_step_whose_ops_depend_on_the_batch_is_refused() -> None:
    workloads = captures(PerSampleLoop(), torch.randn(6, 4), (2, 3))
    with pytest.raises(DerivationError, match=r"op \d+ differs between batches 2 and 3|ops depend on the batch"):
        fit_batch_affine(workloads[2], workloads[3])


class BroadcastReduction(nn.Module):
    """Sums a batch x batch x features broadcast view down to batch x features: quadratic work
    (bytes read) with no tensor of quadratic size, which two captures cannot see."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x)
        return y[None].expand(y.shape[0], *y.shape).sum(0)


def test_a_third_capture_catches_curvature_two_cannot_see() -> None:
    workloads = captures(BroadcastReduction(), torch.randn(8, 4), (2, 3, 5))
    fit = fit_batch_affine(workloads[2], workloads[3])  # the documented limit: the fit passes
    assert fit.at(5) != workloads[5]
    with pytest.raises(DerivationError, match=r"op \d+ \(aten\.sum\.dim_IntList.*not affine"):
        fit.check(workloads[5])
    fit.check(fit.at(7))


def test_one_by_one_convolutions_on_one_thread_are_not_derived_past_batch_16() -> None:
    """Below batch 16 ATen runs a 1x1 convolution with per-sample GEMMs on one thread, from 16 on with
    oneDNN: a fit below 16 refuses 16, where plain extrapolation would keep GEMMs that are gone."""
    model = nn.Sequential(nn.Conv2d(4, 8, 1), nn.ReLU())
    workloads = captures(model, torch.randn(32, 4, 6, 6), (2, 3, 15, 16), intra_op_threads=1)
    fit = fit_batch_affine(workloads[2], workloads[3])
    assert (fit.lowest, fit.highest) == (2, 15)
    assert_same_workload(fit.at(15), workloads[15])
    assert fit.at(15).ops[0].gemms and not workloads[16].ops[0].gemms
    with pytest.raises(DerivationError, match="batch 16 is outside"):
        fit.at(16)
    # On two threads oneDNN runs it at every batch: nothing changes at 16, and no bound is set.
    threaded = captures(model, torch.randn(32, 4, 6, 6), (2, 3, 16), intra_op_threads=2)
    fit = fit_batch_affine(threaded[2], threaded[3])
    assert fit.highest is None or fit.highest > 16
    assert_same_workload(fit.at(16), threaded[16])


def test_batch_one_is_derived_only_from_a_capture_at_one() -> None:
    workloads = captures(mlp(), torch.randn(8, 12), (1, 2, 3))
    with pytest.raises(DerivationError, match="batch 1 is outside"):
        derive_workload(workloads[2], workloads[3], 1)
    assert_same_workload(derive_workload(workloads[1], workloads[3], 2), workloads[2])


# --- the rules, on hand-made workloads -------------------------------------------------------------


def workload(
    batch: int, *, bytes_read: int, gemm: tuple[int, int, int, int] = (1, 4, 4, 4), nbytes: int = 64
) -> Workload:
    op = OpRecord(
        name="aten.mm.default",
        phase="forward",
        module="Global",
        flops=float(2 * gemm[0] * gemm[1] * gemm[2] * gemm[3]),
        flop_source="torch",
        bytes_read=bytes_read,
        bytes_written=nbytes,
        output_elements=nbytes // 4,
        dtype="float32",
        input_ids=(0,),
        output_ids=(1,),
        implicit_gemms=(gemm,),
    )
    tensors = (
        TensorRecord(tensor_id=0, nbytes=64, dtype="float32", kind="input", first_op=-1, last_op=0),
        TensorRecord(tensor_id=1, nbytes=nbytes, dtype="float32", kind="activation", first_op=0, last_op=-1),
    )
    return Workload(name="toy", batch_size=batch, ops=(op,), tensors=tensors)


def test_a_hand_made_fit_gives_its_slopes() -> None:
    fit = fit_batch_affine(
        workload(2, bytes_read=100, gemm=(1, 8, 4, 4), nbytes=128),
        workload(4, bytes_read=164, gemm=(1, 16, 4, 4), nbytes=256),
    )
    assert isinstance(fit, BatchAffineStep) and fit.tensor_bytes == ((0, 64), (64, 0))
    derived = fit.at(3)
    assert derived.ops[0].bytes_read == 132 and derived.ops[0].implicit_gemms == ((1, 12, 4, 4),)
    assert derived.ops[0].flops == 2 * 12 * 4 * 4 and derived.tensors[1].nbytes == 192


@pytest.mark.parametrize(
    ("second", "message"),
    [
        (workload(4, bytes_read=101, nbytes=64), "a number changes by a fraction per sample"),
        (
            workload(4, bytes_read=100, gemm=(1, 8, 8, 4)),
            "2 dimensions that grow with the batch: its work is quadratic",
        ),
        (workload(4, bytes_read=100, nbytes=96), "neither constant nor proportional"),
        (workload(2, bytes_read=100), "the same batch"),
    ],
)
def test_what_a_fit_refuses(second: Workload, message: str) -> None:
    with pytest.raises(DerivationError, match=message):
        fit_batch_affine(workload(2, bytes_read=100, gemm=(1, 4, 4, 4)), second)


def test_a_shrinking_number_bounds_the_domain() -> None:
    """Bytes that fall by 10 a sample from 100 at batch 2 reach 0 at batch 12: no batch beyond."""
    fit = fit_batch_affine(workload(2, bytes_read=100), workload(4, bytes_read=80))
    assert fit.highest == 12 and fit.at(12).ops[0].bytes_read == 0
    with pytest.raises(DerivationError, match="batch 13 is outside what the captures at 2 and 4 determine"):
        fit.at(13)


def test_a_derivation_error_is_a_capture_error() -> None:
    """Callers that fall back to a fresh capture on any capture problem catch it as one."""
    assert issubclass(DerivationError, CaptureError)
    reference = capture_train_step(mlp(), torch.randn(4, 12))
    with pytest.raises(CaptureError):
        fit_batch_affine(reference, reference)
