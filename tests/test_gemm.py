"""GEMMs by shape: the lowering of kernels to GEMMs, the measured rate table and its use in op costs."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwmodel import OpRecord, SpecError, Workload
from hwmodel.errors import WorkloadError
from hwmodel.ops.calibration import peak_table
from hwmodel.ops.classes import OP_CLASSES
from hwmodel.ops.cost import op_costs
from hwmodel.ops.flops import attention_backward_flops, attention_forward_flops, convolution_backward_flops
from hwmodel.ops.gemm import (
    GemmRateTable,
    flash_attention_gemms,
    gemm_flops,
    per_sample_convolution_gemms,
)
from hwmodel.ops.matrix import class_indices
from hwmodel.spec.precision import FP32, MIXED_BF16
from hwmodel.spec.presets import get_preset

D1 = get_preset("d1").chip

dims_strategy = st.integers(min_value=1, max_value=3000)


def _table(rate: float = 1e10, dims: tuple[int, ...] = (1, 16, 256)) -> GemmRateTable:
    return GemmRateTable(dims=dims, flops_per_s=(rate,) * len(dims) ** 3)


def test_per_sample_convolution_gemms_match_the_convolution_flops() -> None:
    """A 1x1 convolution, 336 -> 336 channels, 2x2 output, batch 8: forward 8 GEMMs of 336 x 336
    by 336 x 4, 2 * 8 * 336 * 4 * 336 = 7,225,344 FLOPs, as a convolution forward counts them; the
    backward's two gradients are one forward each."""
    forward = per_sample_convolution_gemms(
        batch=8, in_channels=336, out_channels=336, kernel_elements=1, output_pixels=4, forward=True
    )
    assert forward == ((8, 336, 4, 336),)
    assert gemm_flops(forward) == 7_225_344
    backward = per_sample_convolution_gemms(
        batch=8,
        in_channels=336,
        out_channels=336,
        kernel_elements=1,
        output_pixels=4,
        forward=False,
        input_grad=True,
        weight_grad=True,
    )
    assert gemm_flops(backward) == convolution_backward_flops(
        (8, 336, 2, 2), (8, 336, 2, 2), (336, 336, 1, 1), transposed=False, input_grad=True, weight_grad=True
    )


def test_flash_attention_blocks_of_a_bev_query() -> None:
    """256 queries in blocks of 64 against 40 keys (one block), 8 batch x heads, head dim 8:
    32 block pairs, each S = 64 x 40 x 8 and O += 64 x 8 x 40."""
    gemms = flash_attention_gemms(batch_heads=8, length_q=256, length_k=40, dim_qk=8, dim_v=8, backward=False)
    assert gemms == ((32, 64, 40, 8), (32, 64, 8, 40))


def test_flash_attention_partial_blocks_are_their_own_shapes() -> None:
    """200 queries: three blocks of 64 and one of 8; 600 keys: one block of 512 and one of 88."""
    gemms = flash_attention_gemms(batch_heads=1, length_q=200, length_k=600, dim_qk=16, dim_v=16, backward=False)
    assert [(count, m, n) for count, m, n, _ in gemms] == [
        (3, 64, 512),
        (3, 64, 16),
        (3, 64, 88),
        (3, 64, 16),
        (1, 8, 512),
        (1, 8, 16),
        (1, 8, 88),
        (1, 8, 16),
    ]


@settings(max_examples=60, deadline=None)
@given(
    batch_heads=st.integers(1, 64),
    length_q=st.integers(1, 2000),
    length_k=st.integers(1, 2000),
    dim_qk=st.integers(1, 256),
    dim_v=st.integers(1, 256),
)
def test_flash_attention_gemms_carry_exactly_the_attention_flops(
    batch_heads: int, length_q: int, length_k: int, dim_qk: int, dim_v: int
) -> None:
    query, key, value = (batch_heads, length_q, dim_qk), (batch_heads, length_k, dim_qk), (batch_heads, length_k, dim_v)
    forward = flash_attention_gemms(
        batch_heads=batch_heads, length_q=length_q, length_k=length_k, dim_qk=dim_qk, dim_v=dim_v, backward=False
    )
    backward = flash_attention_gemms(
        batch_heads=batch_heads, length_q=length_q, length_k=length_k, dim_qk=dim_qk, dim_v=dim_v, backward=True
    )
    assert gemm_flops(forward) == attention_forward_flops([query, key, value], [])
    assert gemm_flops(backward) == attention_backward_flops([query, query, key, value], [])


def test_rate_table_is_exact_on_the_grid_and_geometric_between() -> None:
    """Rates 1 GFLOP/s everywhere but 16 GFLOP/s at (4, 4, 4): at (2, 2, 2), halfway in log size on
    every axis, the log rate is 1/8 of the way to log 16: 16^(1/8) = 1.414 GFLOP/s."""
    table = GemmRateTable(dims=(1, 4), flops_per_s=(1e9,) * 7 + (16e9,))
    rates = table.rates(np.array([1.0, 4.0, 2.0, 4.0]), np.array([1.0, 4.0, 2.0, 4.0]), np.array([1.0, 4.0, 2.0, 1.0]))
    assert rates.tolist() == pytest.approx([1e9, 16e9, 16 ** (1 / 8) * 1e9, 1e9])


def test_rate_table_is_clamped_beyond_its_grid() -> None:
    table = GemmRateTable(dims=(1, 4), flops_per_s=(1e9,) * 7 + (16e9,))
    assert table.rates(np.array([1e6]), np.array([4096.0]), np.array([64.0])).tolist() == pytest.approx([16e9])


@settings(max_examples=60, deadline=None)
@given(
    rates=st.lists(st.floats(min_value=1e6, max_value=1e12), min_size=27, max_size=27),
    m=dims_strategy,
    n=dims_strategy,
    k=dims_strategy,
)
def test_interpolated_rate_stays_within_the_measured_rates(rates: list[float], m: int, n: int, k: int) -> None:
    table = GemmRateTable(dims=(1, 32, 1024), flops_per_s=tuple(rates))
    rate = table.rates(np.array([float(m)]), np.array([float(n)]), np.array([float(k)]))[0]
    assert min(rates) * (1 - 1e-12) <= rate <= max(rates) * (1 + 1e-12)


@pytest.mark.parametrize(
    ("dims", "rates", "message"),
    [
        ((4, 1), (1.0,) * 8, "GEMM rate table: dims must be at least two rising sizes, got (4, 1)"),
        ((1, 4), (1.0,) * 7, "GEMM rate table: needs 8 rates for 2 dims, got 7"),
        ((1, 4), (1.0,) * 7 + (0.0,), "GEMM rate table: every rate must be a finite FLOP/s > 0"),
    ],
)
def test_bad_rate_table_is_a_one_line_error(dims: tuple[int, ...], rates: tuple[float, ...], message: str) -> None:
    with pytest.raises(SpecError, match="^" + message.replace("(", r"\(").replace(")", r"\)") + "$"):
        GemmRateTable(dims=dims, flops_per_s=rates)


def _op(name: str, gemms: tuple[tuple[int, int, int, int], ...]) -> OpRecord:
    return OpRecord(
        name=name,
        phase="forward",
        module="m",
        flops=gemm_flops(gemms),
        flop_source="torch",
        bytes_read=1000,
        bytes_written=1000,
        output_elements=64,
        dtype="float32",
        gemms=gemms,
    )


def test_a_chip_with_gemm_rates_times_recorded_gemms_by_shape() -> None:
    """A 1x1-conv lowered to 8 GEMMs of (336, 4, 336) at 1e10 FLOP/s everywhere:
    7,225,344 / 1e10 = 722.5 us, where the D1 peak alone would give a tiny fraction of that."""
    workload = Workload(name="w", batch_size=8, ops=(_op("aten.convolution.default", ((8, 336, 4, 336),)),))
    chip = replace(D1, gemm_rates=_table(1e10), compute_units=1)
    costs = op_costs(workload, chip, peak_table(), FP32)
    assert costs.compute_s[0] == pytest.approx(7_225_344 / 1e10)
    # BF16 scales the measured FP32 rates by the ratio of the chip's matrix peaks.
    bf16 = op_costs(workload, chip, peak_table(), MIXED_BF16)
    ratio = chip.matrix_bf16_flops_per_s / chip.matrix_fp32_flops_per_s
    assert bf16.compute_s[0] == pytest.approx(7_225_344 / 1e10 / ratio)
    # Lowered to GEMMs, the convolution is a matmul-class op there, a convolution elsewhere.
    assert class_indices(workload, chip).tolist() == [OP_CLASSES.index("matmul")]
    assert class_indices(workload, D1).tolist() == [OP_CLASSES.index("convolution")]
    # A chip without measured rates ignores the shapes: FLOPs over the peak, as before.
    plain = op_costs(workload, replace(D1, compute_units=1), peak_table(), FP32)
    assert plain.compute_s[0] == pytest.approx(7_225_344 / D1.matrix_fp32_flops_per_s)


@settings(max_examples=40, deadline=None)
@given(factor=st.floats(min_value=1.0, max_value=100.0), m=dims_strategy, n=dims_strategy, k=dims_strategy)
def test_faster_gemms_never_slow_an_op(factor: float, m: int, n: int, k: int) -> None:
    workload = Workload(name="w", batch_size=1, ops=(_op("aten.mm.default", ((1, m, n, k),)),))
    slow = op_costs(workload, replace(D1, gemm_rates=_table(1e10)), peak_table(), FP32)
    fast = op_costs(workload, replace(D1, gemm_rates=_table(1e10 * factor)), peak_table(), FP32)
    assert fast.time_s[0] <= slow.time_s[0]


def test_gemms_round_trip_through_json_and_bad_ones_are_rejected() -> None:
    workload = Workload(name="w", batch_size=1, ops=(_op("aten.bmm.default", ((4, 8, 16, 32),)),))
    assert Workload.from_json(workload.to_json()) == workload
    with pytest.raises(WorkloadError, match="every GEMM must be"):
        _op("aten.mm.default", ((1, 0, 2, 3),))
