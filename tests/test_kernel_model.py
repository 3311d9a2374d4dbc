"""The per-kernel cost models of hwmodel.ops.kernels: hand-counted shapes and physical properties."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dojo_validation.kernels import data, lodo
from hwmodel.errors import HwModelError, SpecError
from hwmodel.ops.kernels import convolution, gemm, memory_bound, rowwise, views
from hwmodel.ops.kernels.device import KernelDevice
from hwmodel.ops.kernels.dispatch import KNOWN_OPS, predict_seconds
from hwmodel.ops.kernels.from_chip import kernel_device_from_chip
from hwmodel.ops.kernels.parameters import PARAMETER_NAMES, KernelParameters, display_value, load_parameters
from hwmodel.spec.precision import FP32, MIXED_BF16, TF32
from hwmodel.spec.presets import get_preset

PARAMETERS = load_parameters()
A100 = KernelDevice(
    name="a100-like",
    num_sms=108,
    fp32_flops_per_s=19.5e12,
    matrix_flops_per_s=19.5e12,
    memory_bytes_per_s=1.555e12,
    l2_bytes=40 * 2**20,
    power_limit_w=250.0,
    process_nm=7.0,
)


def one(value: float) -> np.ndarray:
    return np.array([float(value)])


def test_waves_quantize_over_the_sms() -> None:
    """216 CTAs fill 108 SMs twice; one more needs a third wave; two per SM halve the waves."""
    assert gemm.waves(one(216), 108)[0] == 2
    assert gemm.waves(one(217), 108)[0] == 3
    assert gemm.waves(one(217), 108, ctas_per_sm=2)[0] == 2


def test_tile_count_pays_for_padding() -> None:
    """2 x ceil(200/64) x ceil(130/128) = 2 x 4 x 2 = 16 CTAs of 64 x 128."""
    dims = gemm.GemmDims(one(2), one(200), one(130), one(64))
    assert gemm.tile_count(dims, 64, 128)[0] == 16


def test_split_k_for_a_small_deep_gemm_and_not_for_a_large_one() -> None:
    """A 64 x 64 output over k = 65,536 is one 64 x 64 tile: without a split one SM does all of it,
    so the heuristic splits k. An 8,192 x 8,192 output already fills 108 SMs many times over."""
    deep = gemm.GemmDims(one(1), one(64), one(64), one(65536))
    _, _, split = gemm.best_choice(deep, A100, PARAMETERS)
    assert split[0] > 1
    wide = gemm.GemmDims(one(1), one(8192), one(8192), one(1024))
    _, tile, split = gemm.best_choice(wide, A100, PARAMETERS)
    assert split[0] == 1
    assert gemm.TILES[tile[0]] == (128, 128)


def test_conv_as_implicit_gemm_and_its_gradients() -> None:
    """ResNet's stem: batch 8, 3 -> 64 channels, 7 x 7, stride 2, padding 3 on 224 x 224.
    Ho = floor((224 + 6 - 7) / 2) + 1 = 112; forward m = 8 x 112 x 112 = 100,352, n = 64, k = 3 x 49
    = 147; input gradient m = 8 x 224 x 224 = 401,408, n = 3, k = 64 x 49 = 3,136; weight gradient
    m = 64, n = 147, k = 100,352."""
    shape = (one(8), one(3), one(64), one(7), one(224), one(2), one(3))
    forward = convolution.conv_shape(*shape).implicit_gemm()
    assert (forward.m[0], forward.n[0], forward.k[0]) == (100352, 64, 147)
    grad_input, grad_weight = gemm.conv_backward_dims(*shape)
    assert (grad_input.m[0], grad_input.n[0], grad_input.k[0]) == (401408, 3, 3136)
    assert (grad_weight.m[0], grad_weight.n[0], grad_weight.k[0]) == (64, 147, 100352)
    assert forward.flops[0] == grad_weight.flops[0]


def test_linear_dims_and_gradients() -> None:
    """Linear(768, 1024) on (4, 128, 768): m = 512, n = 1024, k = 768; dX = dY W^T is 512 x 768
    over 1024, dW = X^T dY is 768 x 1024 over 512; all three have 2 x 512 x 1024 x 768 FLOPs."""
    forward = gemm.linear_dims(one(4), one(128), one(768), one(1024))
    assert (forward.batch[0], forward.m[0], forward.n[0], forward.k[0]) == (1, 512, 1024, 768)
    grad_input, grad_weight = gemm.linear_backward_dims(forward)
    assert (grad_input.m[0], grad_input.n[0], grad_input.k[0]) == (512, 768, 1024)
    assert (grad_weight.m[0], grad_weight.n[0], grad_weight.k[0]) == (768, 1024, 512)
    assert forward.flops[0] == grad_input.flops[0] == grad_weight.flops[0] == 2 * 512 * 1024 * 768


def test_bmm_columns_name_the_reduction_dimension_n() -> None:
    """bmm(B x M x N, B x N x K): the output is M x K and N is summed over."""
    seconds = predict_seconds("bmm", {"B": one(1), "M": one(4096), "N": one(64), "K": one(4096)}, A100, PARAMETERS)
    swapped = predict_seconds("bmm", {"B": one(1), "M": one(4096), "N": one(4096), "K": one(64)}, A100, PARAMETERS)
    assert seconds[0] != swapped[0]


def test_bandwidth_curve_limits() -> None:
    """Large kernels reach the sustained fraction of the datasheet bandwidth; a working set that fits
    L2 moves at the L2 multiple of it; a tiny kernel costs its launch floor."""
    sustained = PARAMETERS.memory_bandwidth_fraction * A100.memory_bytes_per_s
    elements = one(2**30)
    seconds = memory_bound.elementwise_seconds("add", elements, A100, PARAMETERS)
    moved = 3 * 4 * 2**30
    assert moved / (seconds[0] - PARAMETERS.elementwise_launch_s) == pytest.approx(sustained)
    small = memory_bound.achieved_bandwidth(one(1e6), A100, PARAMETERS)
    assert small[0] == pytest.approx(sustained * PARAMETERS.l2_bandwidth_multiple)
    tiny = memory_bound.elementwise_seconds("relu", one(1), A100, PARAMETERS)
    assert tiny[0] == pytest.approx(PARAMETERS.elementwise_launch_s, rel=1e-3)


def test_rows_per_cta_of_softmax() -> None:
    """A warp per row (two up to 128 elements) in CTAs of 4 warps; longer rows one per CTA."""
    rows_per_cta, threads = rowwise.softmax_launch_shape(np.array([100.0, 768.0, 2048.0, 10240.0]))
    assert rows_per_cta.tolist() == [8, 4, 1, 1]
    assert threads.tolist() == [128, 128, 256, 512]


def test_turing_holds_half_the_softmax_ctas_of_an_sm() -> None:
    """2,048 threads per SM hold four CTAs of 512 threads; Turing's 1,024 hold two, and a CTA wider
    than the SM's limit still runs one at a time."""
    assert rowwise.resident_ctas(one(512), A100)[0] == 4
    turing = replace(A100, max_threads_per_sm=1024)
    assert rowwise.resident_ctas(one(512), turing)[0] == 2
    assert rowwise.resident_ctas(one(4096), turing)[0] == 1


def test_block_softmax_round_trips_count_vector_and_single_loads() -> None:
    """A warp softmax loads its row once. 2,048 elements in 256 threads: two 4-element loads a
    pass, three passes = 6. 1,280 in 256 threads: one vector load (1,024) and one single (256) a
    pass = 6. 1,600: one vector, ceil(576 / 256) = 3 singles = 12. 1,279 (not a multiple of 4): one
    vector, ceil(255 / 256) = 1 single and the unaligned head = 9."""
    trips = rowwise.softmax_round_trips(np.array([768.0, 2048.0, 1280.0, 1600.0, 1279.0]))
    assert trips.tolist() == [1, 6, 6, 12, 9]


def test_block_softmax_rereads_follow_the_l1() -> None:
    """H = 8,192 in CTAs of 512 threads, four per SM: 4 x 8,192 x 4 B = 128 KiB of rows per SM.
    With 192 KiB of L1 at a share of 1/3 (64 KiB) they overflow twice over: both passes re-read
    from memory (2); at a share of 1 they fit (0); at 1/1.5 (128 KiB) just fit; and half way
    between (96 KiB: 128 / 96 - 1 = 1/3) a third of the re-reads miss. A warp softmax row (1,024)
    is read once whatever the L1."""
    width = one(8192)
    for share, expected in ((1 / 3, 2.0), (1.0, 0.0), (1 / 1.5, 0.0), (0.5, 2.0 / 3.0)):
        parameters = replace(PARAMETERS, l1_row_fraction=share)
        device = replace(A100, l1_bytes_per_sm=192 * 2**10)
        assert rowwise.softmax_rereads(width, device, 4.0, parameters)[0] == pytest.approx(expected)
    assert rowwise.softmax_rereads(one(1024), replace(A100, l1_bytes_per_sm=1024.0), 4.0, PARAMETERS)[0] == 0


def test_row_round_trips_add_to_the_streaming() -> None:
    """1,080 rows of 2,048 in one CTA each on 108 SMs x 8 resident (256 threads) = 2 waves;
    time = launch + bytes / bandwidth + 2 waves x 6 round trips x latency."""
    rows, width = one(1080), one(2048)
    moved = rowwise.softmax_bytes(rows, width)
    bandwidth = memory_bound.achieved_bandwidth(moved, A100, PARAMETERS)[0]
    expected = PARAMETERS.softmax_launch_s + moved[0] / bandwidth + 2 * 6 * PARAMETERS.rowwise_wave_latency_s
    device = replace(A100, l1_bytes_per_sm=192 * 2**10)
    assert rowwise.softmax_seconds(rows, width, device, PARAMETERS)[0] == pytest.approx(expected)


def test_views_and_allocations_move_nothing() -> None:
    for name in ("aten._unsafe_view.default", "aten.view.default", "empty_like", "aten.empty.memory_format"):
        assert views.is_zero_traffic(name), name
    assert not views.is_zero_traffic("aten.clone.default")
    assert views.view_bytes(np.array([1e9])).tolist() == [0.0]
    assert views.view_seconds(np.array([1e9])).tolist() == [0.0]


def test_power_limit_caps_cuda_core_gemms_only() -> None:
    capped = replace(A100, power_limit_w=20.0)
    assert gemm.sustained_matrix_flops_per_s(capped, PARAMETERS) < A100.matrix_flops_per_s
    tensor = replace(capped, matrix_on_tensor_cores=True)
    assert gemm.sustained_matrix_flops_per_s(tensor, PARAMETERS) == A100.matrix_flops_per_s


def test_kernel_device_from_chip_follows_the_precision() -> None:
    a100 = get_preset("a100").chip
    fp32, tf32, bf16 = (kernel_device_from_chip(a100, p) for p in (FP32, TF32, MIXED_BF16))
    assert fp32.matrix_flops_per_s == a100.matrix_fp32_flops_per_s and not fp32.matrix_on_tensor_cores
    assert tf32.matrix_flops_per_s == a100.matrix_tf32_flops_per_s and tf32.matrix_on_tensor_cores
    assert bf16.matrix_flops_per_s == a100.matrix_bf16_flops_per_s
    assert fp32.num_sms == 108 and fp32.l2_bytes == a100.l2_cache_bytes


def test_parameters_are_few_positive_and_documented() -> None:
    assert len(PARAMETER_NAMES) <= 14
    assert all(getattr(PARAMETERS, name) > 0 for name in PARAMETER_NAMES)
    assert display_value("gemm_launch_s", 2.5e-5) == "25 us"
    with pytest.raises(SpecError, match="gemm_peak_fraction must be > 0"):
        replace(PARAMETERS, gemm_peak_fraction=0.0)
    with pytest.raises(SpecError, match="num_sms must be > 0"):
        replace(A100, num_sms=0)


def test_unknown_operator_is_an_error_not_a_guess() -> None:
    with pytest.raises(HwModelError, match="unknown operator 'scatter'"):
        predict_seconds("scatter", {"B": one(1), "H": one(1)}, A100, PARAMETERS)


SHAPE_COLUMNS = {
    "bmm": ("B", "M", "N", "K"),
    "linear": ("B", "M", "N", "K"),
    "conv": ("B", "Input_Channel", "Output_Channel", "Input_Size"),
    "vector": ("B", "H"),
}
sizes = st.integers(min_value=1, max_value=5000)


def _shapes(op: str, values: dict[str, int]) -> dict[str, np.ndarray]:
    if op == "conv":
        return {
            "B": one(values["B"] % 64 + 1),
            "Input_Channel": one(values["Input_Channel"] % 512 + 1),
            "Output_Channel": one(values["Output_Channel"] % 512 + 1),
            "Kernel_Szie": one(3),
            "Input_Size": one(values["Input_Size"] % 256 + 3),
            "Stride": one(1),
            "Padding": one(1),
        }
    return {name: one(value) for name, value in values.items()}


@settings(max_examples=60, deadline=None)
@given(op=st.sampled_from(KNOWN_OPS), data=st.data())
def test_time_is_non_negative_and_monotone_in_every_dimension(op: str, data: st.DataObject) -> None:
    columns = SHAPE_COLUMNS.get(op, SHAPE_COLUMNS["vector"])
    values = {name: data.draw(sizes, label=name) for name in columns}
    grown = data.draw(st.sampled_from(columns), label="grown")
    step = data.draw(st.integers(min_value=1, max_value=3000), label="step")
    before = predict_seconds(op, _shapes(op, values), A100, PARAMETERS)[0]
    after = predict_seconds(op, _shapes(op, {**values, grown: values[grown] + step}), A100, PARAMETERS)[0]
    assert before >= 0
    if op != "conv":  # the conv strategy wraps sizes into range, so "larger" is not ordered there
        assert after >= before * (1 - 1e-12)


@settings(max_examples=80, deadline=None)
@given(
    op=st.sampled_from(KNOWN_OPS),
    b=sizes,
    m=sizes,
    n=sizes,
    k=sizes,
    fewer_sms=st.integers(min_value=1, max_value=107),
    bandwidth_share=st.floats(min_value=0.05, max_value=1.0),
)
def test_never_faster_with_fewer_sms_or_less_bandwidth(
    op: str, b: int, m: int, n: int, k: int, fewer_sms: int, bandwidth_share: float
) -> None:
    """A smaller part of the same generation (fewer SMs at the same per-SM rates and L2 per SM), or
    less memory bandwidth, never makes a kernel faster."""
    columns = SHAPE_COLUMNS.get(op, SHAPE_COLUMNS["vector"])
    shapes = _shapes(op, dict(zip(columns, (b, m, n, k), strict=False)))
    smaller = replace(
        A100,
        num_sms=fewer_sms,
        fp32_flops_per_s=A100.fp32_flops_per_s * fewer_sms / A100.num_sms,
        matrix_flops_per_s=A100.matrix_flops_per_s * fewer_sms / A100.num_sms,
        l2_bytes=A100.l2_bytes * fewer_sms / A100.num_sms,
        power_limit_w=None,
    )
    slower_memory = replace(A100, memory_bytes_per_s=A100.memory_bytes_per_s * bandwidth_share)
    full = predict_seconds(op, shapes, replace(A100, power_limit_w=None), PARAMETERS)[0]
    assert predict_seconds(op, shapes, smaller, PARAMETERS)[0] >= full * (1 - 1e-12)
    assert predict_seconds(op, shapes, slower_memory, PARAMETERS)[0] >= predict_seconds(op, shapes, A100, PARAMETERS)[0]


def test_parameters_round_trip_through_a_mapping() -> None:
    from hwmodel.ops.kernels.parameters import parameters_from_mapping

    assert parameters_from_mapping(PARAMETERS.as_dict()) == PARAMETERS
    with pytest.raises(SpecError, match="missing"):
        parameters_from_mapping({})
    assert isinstance(PARAMETERS, KernelParameters)


def test_winograd_tiles_products_and_transform_bytes_by_hand() -> None:
    """2 images of 3 x 8 x 8 to 4 channels, 3x3 at stride 1 with padding 1 (8 x 8 out): 2 x 2 x 2 =
    8 tiles of F(4x4, 3x3); 36 GEMMs of (8 x 3) @ (3 x 4); the input transform reads 2 x 3 x 64 and
    writes 36 x 8 x 3 values, the filter transform reads 9 x 3 x 4 and writes 36 x 3 x 4, the output
    transform reads 36 x 8 x 4 and writes 2 x 4 x 64 (4 bytes each)."""
    shape = convolution.conv_shape(one(2), one(3), one(4), one(3), one(8), one(1), one(1))
    assert shape.out_height[0] == shape.out_width[0] == 8
    assert shape.winograd_tiles()[0] == 8
    products = shape.winograd_products()
    assert (products.batch[0], products.m[0], products.n[0], products.k[0]) == (36, 8, 4, 3)
    inputs, filters, outputs = (float(b[0]) for b in convolution.winograd_transform_bytes(shape))
    assert (inputs, filters, outputs) == (4 * (384 + 864), 4 * (108 + 432), 4 * (1152 + 512))


def test_winograd_pays_whole_tiles_and_applies_only_to_3x3_at_stride_1() -> None:
    """A 5 x 5 output is 2 x 2 tiles of 4 x 4: 36 x 4 = 144 products per channel pair against 9 x 25 =
    225 for the direct window; a 5x5 window or stride 2 leave only the implicit GEMM."""
    five = convolution.conv_shape(one(1), one(64), one(64), one(3), one(5), one(1), one(1))
    assert five.winograd_tiles()[0] == 4
    assert float(five.winograd_products().flops[0]) == 2 * 144 * 64 * 64
    assert float(five.implicit_gemm().flops[0]) == 2 * 225 * 64 * 64
    for kernel, stride in ((5, 1), (3, 2)):
        shape = convolution.conv_shape(one(8), one(64), one(64), one(kernel), one(32), one(stride), one(1))
        assert not shape.winograd_applies[0]
        assert convolution.chosen_algorithm(shape, A100, PARAMETERS) == ["implicit_gemm"]
        assert convolution.convolution_seconds(shape, A100, PARAMETERS)[0] == pytest.approx(
            convolution.implicit_gemm_seconds(shape, A100, PARAMETERS)[0], rel=1e-12
        )


def test_a_large_3x3_convolution_runs_as_winograd_and_is_never_slower_than_the_implicit_gemm() -> None:
    """32 images of 256 x 56 x 56, 3x3 at stride 1: Winograd F(4x4, 3x3) has 2.25x fewer products
    than the direct window here (36 x 14 x 14 against 9 x 56 x 56 per channel pair), enough to win
    even at a fraction of the GEMM rate; the chosen time is the faster one."""
    shape = convolution.conv_shape(one(32), one(256), one(256), one(3), one(56), one(1), one(1))
    assert float(shape.implicit_gemm().flops[0] / shape.winograd_products().flops[0]) == pytest.approx(4.0)
    implicit, winograd = convolution.algorithm_seconds(shape, A100, PARAMETERS)[:, 0]
    assert convolution.chosen_algorithm(shape, A100, PARAMETERS) == ["winograd_nonfused"]
    assert convolution.convolution_seconds(shape, A100, PARAMETERS)[0] == min(implicit, winograd) == winograd


def test_the_model_picks_winograd_where_cudnn_ran_its_four_kernels() -> None:
    """On the measured convolutions (all 3x3 at stride 1), cuDNN's non-fused Winograd is the rows of
    four kernels; the model picks Winograd on at least 80% of those on every device, and on fewer
    of the rows that ran one or two kernels (implicit GEMM or fused Winograd)."""
    rows = data.load(["conv"])["conv"]
    devices = lodo.devices_by_name()
    for name in lodo.CONV_DEVICES:
        mine = rows.device == name
        s = {column: values[mine] for column, values in rows.shapes.items()}
        columns = ("B", "Input_Channel", "Output_Channel", "Kernel_Szie", "Input_Size", "Stride", "Padding")
        shape = convolution.conv_shape(*(s[column] for column in columns))
        winograd = np.array(convolution.chosen_algorithm(shape, devices[name], PARAMETERS)) == "winograd_nonfused"
        four, fewer = rows.kernel_count[mine] == 4, rows.kernel_count[mine] <= 2
        assert winograd[four].mean() >= 0.8, name
        assert winograd[fewer].mean() < winograd[four].mean(), name


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 64),
    channels=st.integers(1, 512),
    out_channels=st.integers(1, 512),
    size=st.integers(3, 128),
)
def test_a_convolution_is_never_slower_than_its_implicit_gemm(
    batch: int, channels: int, out_channels: int, size: int
) -> None:
    """cudnn.benchmark keeps the fastest algorithm: the modelled convolution never exceeds its
    implicit GEMM, whatever the shape."""
    shape = convolution.conv_shape(one(batch), one(channels), one(out_channels), one(3), one(size), one(1), one(1))
    chosen = convolution.convolution_seconds(shape, A100, PARAMETERS)[0]
    assert 0 < chosen <= convolution.implicit_gemm_seconds(shape, A100, PARAMETERS)[0]
