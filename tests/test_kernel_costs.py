"""Per-op costs from the kernel models: GPU GEMMs by hand, views, the D1 against its roofline, the
report's account of the cost model, and the cache."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwmodel import OpRecord, Report, Workload, get_preset, make_system, simulate
from hwmodel.ops.calibration import peak_table
from hwmodel.ops.cost import op_costs
from hwmodel.ops.cost_model import cost_model_section, kernel_op_costs
from hwmodel.ops.kernels import convolution, gemm
from hwmodel.ops.kernels.from_chip import kernel_device_from_chip
from hwmodel.ops.kernels.memory_bound import achieved_bandwidth
from hwmodel.ops.kernels.parameters import load_parameters
from hwmodel.spec.precision import FP32, MIXED_BF16
from hwmodel.step.sections import OpCostModel
from pytest_dojo.plugin.summary import cost_model_lines

A100 = get_preset("a100").chip
PARAMETERS = load_parameters()
D1 = get_preset("d1").chip


def _mm(m: int, n: int, k: int, count: int = 1, name: str = "aten.mm.default") -> OpRecord:
    return OpRecord(
        name=name,
        phase="forward",
        module="m",
        flops=2.0 * count * m * n * k,
        flop_source="torch",
        bytes_read=4 * count * (m * k + k * n),
        bytes_written=4 * count * m * n,
        output_elements=count * m * n,
        dtype="float32",
        implicit_gemms=((count, m, n, k),),
    )


def _op(name: str, elements: int, flops: float = 0.0, rows: int = 0, row_elements: int = 0) -> OpRecord:
    return OpRecord(
        name=name,
        phase="forward",
        module="m",
        flops=flops,
        flop_source="formula",
        bytes_read=4 * elements,
        bytes_written=4 * elements,
        output_elements=elements,
        dtype="float32",
        rows=rows,
        row_elements=row_elements,
    )


def _workload(*ops: OpRecord) -> Workload:
    return Workload(name="hand", batch_size=1, ops=ops)


def test_a_gpu_matmul_costs_what_the_gemm_model_predicts_for_its_shape() -> None:
    """A100 in IEEE FP32 (19.5 TFLOP/s over 108 SMs): a 1536 x 1152 output is 12 x 9 = 108 CTAs of
    128 x 128, one wave; each CTA does 2 x 128 x 128 x 4096 FLOPs at the SM's rate times the tile's
    efficiency (intensity 2 x 128 x 128 / (256 x 4 B) = 32 FLOP/B). Its 51 MB overflow the 40 MB L2
    but stream in 28 us, far below the arithmetic; the launch floor is the chip's op overhead."""
    parameters = load_parameters()
    m, n, k = 1536, 1152, 4096
    efficiency = parameters.gemm_peak_fraction * 32 / (32 + parameters.gemm_half_intensity)
    by_hand = 1 * 2.0 * 128 * 128 * k / (19.5e12 / 108 * efficiency)
    device = kernel_device_from_chip(A100, FP32)
    model = gemm.gemm_seconds(
        gemm.GemmDims(*(np.array([v], dtype=np.float64) for v in (1.0, m, n, k))), device, parameters, 0.0
    )
    costs = kernel_op_costs(_workload(_mm(m, n, k)), A100, FP32)
    assert costs.time_s.tolist() == pytest.approx([by_hand + A100.op_overhead_s], rel=1e-12)
    assert costs.time_s[0] - A100.op_overhead_s == pytest.approx(float(model[0]), rel=1e-12)
    assert costs.compute_bound.tolist() == [True]


def test_tensor_parallelism_splits_each_gemm_output_columns() -> None:
    """A tensor-parallel share of 1/4 costs the GEMM with a quarter of its output columns
    (1536 x 288), as the model costs that shape."""
    parameters = load_parameters()
    device = kernel_device_from_chip(A100, FP32)
    quarter = gemm.gemm_seconds(
        gemm.GemmDims(*(np.array([v], dtype=np.float64) for v in (1.0, 1536, 288, 4096))), device, parameters, 0.0
    )
    costs = kernel_op_costs(_workload(_mm(1536, 1152, 4096)), A100, FP32, matrix_share=0.25)
    assert costs.time_s[0] == pytest.approx(float(quarter[0]) + A100.op_overhead_s, rel=1e-12)


@pytest.mark.parametrize("chip", [A100, D1], ids=["a100", "d1"])
def test_views_and_allocations_cost_nothing(chip: Any) -> None:
    ops = (_op("aten._unsafe_view.default", 10**6), _op("aten.view.default", 10**6), _op("aten.empty_like.default", 10))
    costs = kernel_op_costs(_workload(*ops), chip, MIXED_BF16)
    assert costs.time_s.tolist() == [0.0, 0.0, 0.0] and costs.overhead_s.tolist() == [0.0, 0.0, 0.0]


@settings(max_examples=60, deadline=None)
@given(
    m=st.integers(1, 5000),
    n=st.integers(1, 5000),
    k=st.integers(1, 5000),
    count=st.integers(1, 64),
    elements=st.integers(1, 10**8),
    width=st.integers(1, 4096),
    rows=st.integers(1, 4096),
)
def test_d1_is_never_faster_than_its_roofline_at_peak(
    m: int, n: int, k: int, count: int, elements: int, width: int, rows: int
) -> None:
    """The D1 model (node tiles at the fitted fraction of peak, SRAM at the sustained fraction) is
    never faster than peak with the same occupancy; its GEMMs are strictly slower."""
    workload = _workload(
        _mm(m, n, k, count),
        _op("aten.add.Tensor", elements, float(elements)),
        _op("aten.native_layer_norm.default", rows * width, 5.0 * rows * width, rows=rows, row_elements=width),
    )
    for precision in (MIXED_BF16, FP32):
        model = kernel_op_costs(workload, D1, precision).time_s
        roofline = op_costs(workload, D1, peak_table(), precision).time_s
        assert all(model >= roofline * (1 - 1e-12))
        assert model[0] > roofline[0]


def test_the_d1_gemm_is_node_blocks_in_waves_at_the_fitted_fraction() -> None:
    """BF16 on D1: a 64 x 354*8 output is 8 x 354 blocks of 8 x 8, 8 waves over 354 nodes; each block
    2 x 64 x k FLOPs at a node's 1.0226 TFLOP/s times the 8 x 8 block's fraction of peak."""
    parameters = load_parameters()
    k = 1024
    efficiency = gemm.tile_efficiency(8, 8, parameters, 2.0)
    by_hand = 8 * 2.0 * 64 * k / (362e12 / 354 * efficiency)
    costs = kernel_op_costs(_workload(_mm(64, 354 * 8, k)), D1, MIXED_BF16)
    assert costs.compute_s[0] == pytest.approx(by_hand, rel=1e-12)
    assert costs.overhead_s[0] == D1.op_overhead_s


def test_kernel_costs_are_cached_and_read_only() -> None:
    workload = _workload(_mm(64, 64, 64), _op("aten.add.Tensor", 1000, 1000.0))
    first = kernel_op_costs(workload, A100, MIXED_BF16)
    assert kernel_op_costs(workload, A100, MIXED_BF16) is first
    assert kernel_op_costs(workload, A100, MIXED_BF16, matrix_share=0.5) is not first
    with pytest.raises(ValueError, match="read-only"):
        first.time_s[0] = 0.0


def test_the_report_names_the_cost_model_and_round_trips() -> None:
    workload = _workload(_mm(256, 256, 256), _op("aten.relu.default", 65536, 65536.0))
    report = simulate(workload, make_system("d1", "1x1"))
    section = report.op_cost_model
    assert section is not None and section.model == "kernels"
    assert section.uncertainty == "GPU leave-one-device-out proxy"
    assert {name for name, _ in section.class_errors} >= {"bmm", "linear", "elementwise", "layernorm", "softmax"}
    assert Report.from_dict(report.to_dict()) == report
    older = report.to_dict()
    del older["op_cost_model"]
    assert Report.from_dict(older).op_cost_model is None
    gpu = simulate(workload, make_system("a100", "1x1")).op_cost_model
    assert gpu is not None and gpu.description.startswith("gpu kernel models, fitted on NeuSight kernels of P100")
    given_table = cost_model_section(D1, peak_table(), workload)
    assert given_table.model == "efficiency" and "(given)" in given_table.description


def test_the_host_keeps_its_efficiency_row() -> None:
    host = get_preset("host").chip
    assert host.op_cost_model == "efficiency"
    section = cost_model_section(host, get_preset("host").efficiency, _workload(_mm(8, 8, 8)))
    assert section == OpCostModel(
        model="efficiency", description="host efficiency row", calibration=section.calibration
    )


def test_the_summary_says_which_model_costed_the_ops_in_one_line() -> None:
    section = OpCostModel(
        model="kernels",
        description="d1 hardware-term model",
        uncertainty="GPU leave-one-device-out proxy",
        class_errors=(("bmm", 0.127), ("softmax", 0.191)),
    )
    results = [SimpleNamespace(report=SimpleNamespace(op_cost_model=section))] * 2
    assert cost_model_lines(results) == [  # type: ignore[arg-type]
        "op costs: d1 hardware-term model (uncertainty: GPU leave-one-device-out proxy, 13-19% per op class)"
    ]
    assert math.isclose(section.error_range()[1], 0.191)  # type: ignore[index]


def test_a_depthwise_convolution_is_a_streaming_kernel_and_a_batched_matvec_is_a_gemm() -> None:
    """A depthwise 3x3 convolution of 32 channels on 1 x 32 x 112 x 112 (32 GEMMs of 12,544 x 1 x 9)
    costs its bytes at the achieved bandwidth, like an elementwise op of the same traffic, plus one
    launch; a batched matrix-vector product of the same GEMM shapes stays a GEMM (a 128 x 128 tile
    for a one-column product: much slower)."""
    pixels, channels = 112 * 112, 32
    depthwise = OpRecord(
        name="aten.convolution.default",
        phase="forward",
        module="m",
        flops=2.0 * channels * pixels * 9,
        flop_source="torch",
        bytes_read=4 * (channels * pixels + channels * 9),
        bytes_written=4 * channels * pixels,
        output_elements=channels * pixels,
        dtype="float32",
        implicit_gemms=((channels, pixels, 1, 9),),
    )
    matvec = _mm(pixels, 1, 9, count=channels, name="aten.bmm.default")
    costs = kernel_op_costs(_workload(depthwise, matvec), A100, FP32)
    moved = float(depthwise.bytes_read + depthwise.bytes_written)
    bandwidth = achieved_bandwidth(np.array([moved]), kernel_device_from_chip(A100, FP32), load_parameters())
    assert costs.memory_s[0] == pytest.approx(moved / bandwidth[0], rel=1e-12)
    assert costs.time_s[0] == pytest.approx(max(costs.compute_s[0], costs.memory_s[0]) + A100.op_overhead_s)
    assert costs.time_s[1] > 10 * costs.time_s[0]


def _conv(name: str, gemms: tuple[tuple[int, int, int, int], ...], window: tuple[int, ...]) -> OpRecord:
    flops = sum(2.0 * count * m * n * k for count, m, n, k in gemms)
    return OpRecord(
        name=name,
        phase="backward" if "backward" in name else "forward",
        module="m",
        flops=flops,
        flop_source="torch",
        bytes_read=4 * 32 * 256 * 3136,
        bytes_written=4 * 32 * 256 * 3136,
        output_elements=32 * 256 * 3136,
        dtype="float32",
        implicit_gemms=gemms,
        conv_window=window,
    )


# 32 images of 256 x 56 x 56 to 256 channels, 3x3 at stride 1, padding 1.
CONV_WINDOW = (3, 3, 1, 1, 1, 1, 1, 256, 256, 56, 56, 56, 56)
FORWARD = (1, 32 * 3136, 256, 256 * 9)
INPUT_GRAD = (1, 32 * 3136, 256, 256 * 9)
WEIGHT_GRAD = (1, 256, 256 * 9, 32 * 3136)


def _winograd_s(shape: convolution.ConvShape) -> float:
    products, transforms = convolution.winograd_nonfused_parts(shape, kernel_device_from_chip(A100, FP32), PARAMETERS)
    return float(products[0] + transforms[0])


def test_an_fp32_3x3_convolution_runs_as_winograd_with_its_four_kernels() -> None:
    """On A100 in FP32 the forward runs as non-fused Winograd (faster than its implicit GEMM here),
    paying the chip's launch cost for each of its four kernels; the same op without its window (a
    capture that predates it) stays the implicit GEMM, and so does BF16, whose tensor-core implicit
    GEMM the Winograd model does not cover."""
    shape = convolution.conv_shape(*(np.array([v], dtype=np.float64) for v in (32, 256, 256, 3, 56, 1, 1)))
    winograd = kernel_op_costs(_workload(_conv("aten.convolution.default", (FORWARD,), CONV_WINDOW)), A100, FP32)
    assert winograd.time_s[0] == pytest.approx(_winograd_s(shape) + 4 * A100.op_overhead_s, rel=1e-12)
    implicit = kernel_op_costs(_workload(_conv("aten.convolution.default", (FORWARD,), ())), A100, FP32)
    assert winograd.time_s[0] < implicit.time_s[0]
    for window in ((), CONV_WINDOW):
        bf16 = kernel_op_costs(_workload(_conv("aten.convolution.default", (FORWARD,), window)), A100, MIXED_BF16)
        assert bf16.time_s[0] == kernel_op_costs(_workload(_mm(*FORWARD[1:])), A100, MIXED_BF16).time_s[0]


def test_the_input_gradient_may_run_as_winograd_and_the_weight_gradient_stays_an_implicit_gemm() -> None:
    """The backward's input gradient is a 3x3 stride-1 convolution from the output gradient's 256
    channels to the input's: Winograd; its weight gradient (a deep GEMM over the batch) is not.
    A grouped window runs neither as Winograd."""
    shape = convolution.conv_shape(*(np.array([v], dtype=np.float64) for v in (32, 256, 256, 3, 56, 1, 1)))
    backward = _conv("aten.convolution_backward.default", (INPUT_GRAD, WEIGHT_GRAD), CONV_WINDOW)
    costs = kernel_op_costs(_workload(backward), A100, FP32)
    weight_grad = gemm.gemm_seconds(
        gemm.GemmDims(*(np.array([v], dtype=np.float64) for v in WEIGHT_GRAD)), kernel_device_from_chip(A100, FP32),
        PARAMETERS, 0.0,
    )  # fmt: skip
    assert costs.time_s[0] == pytest.approx(_winograd_s(shape) + float(weight_grad[0]) + 5 * A100.op_overhead_s)
    grouped = (*CONV_WINDOW[:6], 2, *CONV_WINDOW[7:])
    plain = kernel_op_costs(_workload(_conv("aten.convolution_backward.default", (INPUT_GRAD,), ())), A100, FP32)
    as_grouped = kernel_op_costs(
        _workload(_conv("aten.convolution_backward.default", (INPUT_GRAD,), grouped)), A100, FP32
    )
    assert as_grouped.time_s[0] == plain.time_s[0]


def test_an_fp32_convolution_forward_runs_on_cudnn_tiles_without_split_k() -> None:
    """A 1x1 convolution (no Winograd) of 8 images of 512 x 7 x 7 to 2048 channels: its forward GEMM
    (392 x 2048 over 512) on cuDNN's 128-pixel tiles without split-K in FP32; the same GEMM as a
    plain matrix multiply may split K; in BF16 both are the same GEMM."""
    window = (1, 1, 1, 1, 1, 1, 1, 512, 2048, 7, 7, 7, 7)
    forward = (1, 8 * 49, 2048, 512)
    device = kernel_device_from_chip(A100, FP32)
    cudnn = gemm.best_choice(
        gemm.GemmDims(*(np.array([v], dtype=np.float64) for v in forward)), device, PARAMETERS, 4.0,
        convolution.CUDNN_TILES, (1,),
    )[0]  # fmt: skip
    costs = kernel_op_costs(_workload(_conv("aten.convolution.default", (forward,), window)), A100, FP32)
    assert costs.time_s[0] == pytest.approx(max(float(cudnn[0]), costs.memory_s[0]) + A100.op_overhead_s, rel=1e-12)
    as_matmul = kernel_op_costs(_workload(_mm(*forward[1:])), A100, FP32)
    assert as_matmul.time_s[0] <= costs.time_s[0]
    bf16 = kernel_op_costs(_workload(_conv("aten.convolution.default", (forward,), window)), A100, MIXED_BF16)
    assert bf16.time_s[0] == kernel_op_costs(_workload(_mm(*forward[1:])), A100, MIXED_BF16).time_s[0]
