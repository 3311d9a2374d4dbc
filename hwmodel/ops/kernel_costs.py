"""Per-op costs from the kernel models (:mod:`hwmodel.ops.kernels`), for a chip whose
``op_cost_model`` is ``"kernels"``: every GPU preset and the D1.

The workload's columns are adapted to the kernel functions; each op is one of:

* a **view or allocation** (:func:`hwmodel.ops.kernels.views.is_zero_traffic`): 0 s, no launch;
* a **matrix op with GEMM shapes** (``OpRecord.implicit_gemms``): the sum over its GEMMs of the
  GEMM model, tensor parallelism splitting each GEMM's ``n`` (output columns) by the chip's share;
  on a GPU whose convolutions run on the CUDA cores (``fp32``), a one-group convolution's forward
  runs on cuDNN's implicit-GEMM tiles without split-K, and the forward and the input gradient of a
  3 x 3, stride-1 one (``OpRecord.conv_window``) take the faster of that and cuDNN's non-fused
  Winograd (:mod:`hwmodel.ops.kernels.convolution`; its three extra kernels each pay the launch
  cost); the weight gradient stays a GEMM (NB: no measured backward kernel backs these choices; the
  kernel data is forward convolutions);
* a **row-wise op** (LayerNorm, softmax: ``OpRecord.rows``): rows per CTA in waves over the SMs;
* **every other op** (elementwise, reductions, copies, optimizer lists, resampling): its bytes at
  the achieved bandwidth (L2 for a working set that fits it), or its FLOPs at the FP32 vector peak;
* a matrix op without GEMM shapes: the roofline at the fraction of peak the GEMM model gives its
  largest tile (counted in the report as a fallback);
* ops the CPU capture records differently from what CUDA runs (dropout, softmax backward, NLL loss,
  fused attention): costed as CUDA runs them (:mod:`hwmodel.ops.gpu_lowering`);
* a **depthwise convolution** (a convolution-class op with one channel per group: every GEMM
  grouped, with ``m`` or ``n`` of 1): PyTorch runs it as a direct convolution on the vector units
  (``conv_depthwise2d``), not as a GEMM, so it is costed like the streaming ops (NB: no measured
  depthwise kernel backs this; the kernel data has dense convolutions only).

On a GPU the tiles are CTAs over the SMs; on a chip whose local memory is SRAM spread over its
compute units (a D1, :mod:`hwmodel.ops.node_costs`) they are the node's matrix-unit blocks over the
nodes. Launch floors: the fitted floors of ``parameters.json`` time one isolated eager call (host
dispatch and events included); in a queued training step the GPU-side floor of a kernel is the
chip's ``op_overhead_s``, charged once per kernel (per GEMM of an op, per tensor of a list on a chip
without multi-tensor kernels).

``OpCosts.compute_s`` and ``memory_s`` are the arithmetic and the data-movement part of each op's
kernel time, ``time_s = max(compute_s, memory_s) + overhead_s`` as in :mod:`hwmodel.ops.cost`:
a GEMM whose chosen tile is memory-bound reports its ideal arithmetic as ``compute_s``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hwmodel.ops.arrays import WorkloadArrays, workload_arrays
from hwmodel.ops.classes.registry import op_classes
from hwmodel.ops.conv_rows import ConvRows, conv_rows
from hwmodel.ops.cost import OpCosts, scaled_work
from hwmodel.ops.gpu_lowering import GpuLowering, gpu_lowering
from hwmodel.ops.kernels import gemm, rowwise
from hwmodel.ops.kernels.convolution import WINOGRAD_KERNELS, cudnn_gemm_seconds, winograd_nonfused_parts
from hwmodel.ops.kernels.device import KernelDevice
from hwmodel.ops.kernels.from_chip import kernel_device_from_chip
from hwmodel.ops.kernels.memory_bound import achieved_bandwidth
from hwmodel.ops.kernels.parameters import KernelParameters
from hwmodel.ops.kernels.views import is_zero_traffic
from hwmodel.spec.chip import HALF_DTYPES, ChipSpec
from hwmodel.spec.precision import Precision
from hwmodel.step.derived import WORKLOAD_CACHE
from hwmodel.step.workload import PHASES, Workload

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
OPTIMIZER = PHASES.index("optimizer")


@dataclass(frozen=True, eq=False)
class KernelArrays:
    """What the kernel models read of a workload beyond :class:`WorkloadArrays`, built once.

    One row per implicit GEMM in ``gemm_*`` (``gemm_op`` is its op); per op the rest.
    """

    gemm_op: IntArray
    gemm_count: FloatArray
    gemm_m: FloatArray
    gemm_n: FloatArray
    gemm_k: FloatArray
    gemms_per_op: FloatArray
    convolutions: ConvRows
    rows: FloatArray
    row_elements: FloatArray
    zero_traffic: BoolArray
    softmax: BoolArray
    depthwise: BoolArray
    lowering: GpuLowering

    @property
    def has_gemms(self) -> BoolArray:
        return np.asarray(self.gemms_per_op > 0)


def kernel_arrays(workload: Workload) -> KernelArrays:
    """The :class:`KernelArrays` of ``workload``, kept in the workload cache."""
    classes = op_classes()
    return WORKLOAD_CACHE.get(workload, ("kernel_arrays", classes.version), lambda: _kernel_arrays(workload))


def _kernel_arrays(workload: Workload) -> KernelArrays:
    ops = workload.ops
    count = len(ops)
    shapes = np.asarray([gemm for op in ops for gemm in op.implicit_gemms], dtype=np.float64).reshape(-1, 4)
    arrays = workload_arrays(workload)
    softmax_class = op_classes().names.index("softmax") if "softmax" in op_classes().names else -1
    convolution_class = op_classes().names.index("convolution") if "convolution" in op_classes().names else -1
    return KernelArrays(
        gemm_op=np.asarray([index for index, op in enumerate(ops) for _ in op.implicit_gemms], dtype=np.int64),
        gemm_count=shapes[:, 0],
        gemm_m=shapes[:, 1],
        gemm_n=shapes[:, 2],
        gemm_k=shapes[:, 3],
        gemms_per_op=np.fromiter((len(op.implicit_gemms) for op in ops), dtype=np.float64, count=count),
        convolutions=conv_rows(ops),
        rows=np.fromiter((op.rows for op in ops), dtype=np.float64, count=count),
        row_elements=np.fromiter((op.row_elements for op in ops), dtype=np.float64, count=count),
        zero_traffic=np.fromiter((is_zero_traffic(op.name) for op in ops), dtype=np.bool_, count=count),
        softmax=np.asarray(arrays.class_index == softmax_class, dtype=np.bool_).reshape(count),
        depthwise=np.asarray(arrays.class_index == convolution_class, dtype=np.bool_).reshape(count)
        & np.fromiter((is_depthwise(op.implicit_gemms) for op in ops), dtype=np.bool_, count=count),
        lowering=gpu_lowering(workload),
    )


def is_depthwise(gemms: tuple[tuple[int, int, int, int], ...]) -> bool:
    """True for the GEMMs of a convolution with one channel per group (asked of convolution-class
    ops only; a batched matrix-vector product has the same shape): every GEMM grouped
    (``count > 1``) with one output row or column (``min(m, n) == 1``).

    >>> is_depthwise(((32, 25088, 1, 9),)), is_depthwise(((2, 25088, 16, 144),)), is_depthwise(((1, 64, 1, 9),))
    (True, False, False)
    """
    return bool(gemms) and all(count > 1 and min(m, n) == 1 for count, m, n, _ in gemms)


@dataclass(frozen=True, eq=False)
class OpKinds:
    """Which kernel model costs each op (masks over the ops, disjoint)."""

    views: BoolArray
    gemm: BoolArray
    fallback: BoolArray
    rowwise: BoolArray
    streaming: BoolArray


def op_kinds(arrays: WorkloadArrays, kernels: KernelArrays) -> OpKinds:
    """Split the ops by the kernel model that costs them (see the module docstring)."""
    views = kernels.zero_traffic
    matrix = arrays.is_matrix & (arrays.phase_index != OPTIMIZER) & ~views & ~kernels.depthwise
    gemm_ops = matrix & kernels.has_gemms
    fallback = matrix & ~kernels.has_gemms
    rows = ~views & ~matrix & (kernels.rows > 0) & (kernels.row_elements > 0)
    return OpKinds(views=views, gemm=gemm_ops, fallback=fallback, rowwise=rows, streaming=~(views | matrix | rows))


def fallback_op_count(workload: Workload) -> int:
    """Matrix ops of ``workload`` without GEMM shapes: costed by the roofline at the model's fraction."""
    kinds = op_kinds(workload_arrays(workload), kernel_arrays(workload))
    return int(np.count_nonzero(kinds.fallback))


def matrix_bytes_per_element(precision: Precision) -> float:
    """Bytes of a GEMM operand under ``precision``: 2 in BF16/FP16, 4 in FP32 (TF32 keeps FP32 storage)."""
    return 2.0 if precision.compute_dtype in HALF_DTYPES else 4.0


def work_scale(arrays: WorkloadArrays, matrix_share: float, optimizer_share: float) -> FloatArray | None:
    """Per-op share one chip runs: ``matrix_share`` of each matrix op (tensor parallelism),
    ``optimizer_share`` of each optimizer op (the parameters it holds); None when both are 1."""
    if matrix_share == 1.0 and optimizer_share == 1.0:
        return None
    optimizer = arrays.phase_index == OPTIMIZER
    split = arrays.is_matrix & ~optimizer
    return np.where(split, matrix_share, np.where(optimizer, optimizer_share, 1.0))


def per_op_sum(op_index: IntArray, values: FloatArray, count: int) -> FloatArray:
    """Sum of ``values`` per op (``op_index`` of each value), in row order: deterministic."""
    return np.bincount(op_index, weights=values, minlength=count).astype(np.float64)


@dataclass(frozen=True, eq=False)
class GemmParts:
    """Per op, summed over its GEMMs: kernel seconds (without launch floors), seconds of the ideal
    arithmetic, seconds of streaming A, B and C, and the kernels launched."""

    kernel_s: FloatArray
    ideal_s: FloatArray
    streaming_s: FloatArray
    kernels: FloatArray


def gpu_gemm_parts(
    kernels: KernelArrays,
    device: KernelDevice,
    parameters: KernelParameters,
    bytes_per_element: float,
    matrix_share: float,
    count: int,
    launch_s: float = 0.0,
) -> GemmParts:
    """The :class:`GemmParts` of every op with GEMMs. A GEMM of ``count > 1`` is a strided-batched
    call. On CUDA cores (FP32), a one-group convolution's forward runs on cuDNN's implicit-GEMM tiles
    without split-K, and a GEMM Winograd could run (:class:`ConvRows`) runs as Winograd where that is
    faster, its three extra kernels at ``launch_s`` each counted in the comparison, as
    ``cudnn.benchmark`` would time them."""
    batched = kernels.gemm_count > 1
    count_share = kernels.gemm_count * matrix_share
    by_count = batched & (count_share == np.floor(count_share))  # heads split over the group
    dims = gemm.GemmDims(
        np.where(by_count, count_share, kernels.gemm_count),
        kernels.gemm_m,
        np.where(by_count, kernels.gemm_n, kernels.gemm_n * matrix_share),
        kernels.gemm_k,
    )
    seconds = np.zeros(len(dims.m))
    cuda_cores = not device.matrix_on_tensor_cores
    forward = kernels.convolutions.forward & cuda_cores
    for is_batched in (False, True):
        rows = (batched == is_batched) & ~forward
        if np.any(rows):
            seconds[rows] = gemm.gemm_seconds(
                dims.select(rows),
                device,
                parameters,
                launch_s=0.0,
                bytes_per_element=bytes_per_element,
                batched=is_batched,
            )
    if np.any(forward):
        seconds[forward] = cudnn_gemm_seconds(dims.select(forward), device, parameters, bytes_per_element)
    launched = np.ones(len(dims.m))
    winograd = kernels.convolutions.winograd & cuda_cores
    if np.any(winograd):
        shape = kernels.convolutions.shape(winograd, matrix_share)
        products, transforms = winograd_nonfused_parts(shape, device, parameters, bytes_per_element)
        extra = WINOGRAD_KERNELS - 1
        faster = products + transforms + extra * launch_s < seconds[winograd]
        seconds[winograd] = np.where(faster, products + transforms, seconds[winograd])
        launched[winograd] = np.where(faster, WINOGRAD_KERNELS, 1.0)
    moved = dims.bytes_moved(bytes_per_element)
    streaming = moved / achieved_bandwidth(moved, device, parameters)
    ideal = dims.flops / gemm.sustained_matrix_flops_per_s(device, parameters)
    op = kernels.gemm_op
    return GemmParts(
        kernel_s=per_op_sum(op, seconds, count),
        ideal_s=per_op_sum(op, ideal, count),
        streaming_s=per_op_sum(op, streaming, count),
        kernels=per_op_sum(op, launched, count),
    )


def split_kernel_time(time_s: FloatArray, ideal_s: FloatArray, memory_s: FloatArray) -> FloatArray:
    """``compute_s`` of a kernel of ``time_s`` whose data movement takes ``memory_s``: the whole
    time where arithmetic sets it (it outlasts the movement), else the ideal arithmetic."""
    return np.where(time_s > memory_s, time_s, np.minimum(ideal_s, memory_s))


def gpu_op_costs(
    arrays: WorkloadArrays,
    kernels: KernelArrays,
    chip: ChipSpec,
    precision: Precision,
    parameters: KernelParameters,
    matrix_share: float,
    optimizer_share: float,
) -> OpCosts:
    """Per-op costs on a GPU (CTAs over SMs, HBM or GDDR behind an L2)."""
    device = kernel_device_from_chip(chip, precision)
    count = len(arrays.flops)
    kinds = op_kinds(arrays, kernels)
    bytes_read, bytes_written, flops, _ = scaled_work(
        arrays, precision, work_scale(arrays, matrix_share, optimizer_share)
    )
    moved = lowered_bytes(arrays, kernels.lowering, bytes_read + bytes_written)
    element_bytes = matrix_bytes_per_element(precision)
    compute_s = np.where(kernels.lowering.fused_away, 0.0, flops / device.fp32_flops_per_s)
    memory_s = moved / achieved_bandwidth(moved, device, parameters)

    parts = gpu_gemm_parts(kernels, device, parameters, element_bytes, matrix_share, count, chip.op_overhead_s)
    fused = kinds.gemm & kernels.lowering.fused_attention
    memory_s = np.where(kinds.gemm & ~fused, parts.streaming_s, memory_s)
    compute_s = np.where(kinds.gemm, split_kernel_time(parts.kernel_s, parts.ideal_s, parts.streaming_s), compute_s)
    if np.any(fused):
        compute_s = np.where(fused, _fused_gemm_s(kernels, device, parameters, element_bytes, matrix_share), compute_s)

    largest_tile = gemm.tile_efficiency(*gemm.TILES[0], parameters, element_bytes)
    fallback_rate = gemm.sustained_matrix_flops_per_s(device, parameters) * largest_tile
    compute_s = np.where(kinds.fallback, flops / fallback_rate, compute_s)

    if np.any(kinds.rowwise):
        memory_s = np.where(kinds.rowwise, _gpu_rowwise_s(kernels, moved, device, parameters, element_bytes), memory_s)

    kernel_count = np.where(kinds.gemm & ~fused, parts.kernels, kernels.lowering.kernels)
    return launched_costs(arrays, kinds, chip, kernel_count, compute_s, memory_s, flops)


def lowered_bytes(arrays: WorkloadArrays, lowering: GpuLowering, moved: FloatArray) -> FloatArray:
    """Bytes each op's CUDA kernels move (:mod:`hwmodel.ops.gpu_lowering`): ``moved`` (the captured
    bytes under the precision policy) where no rule applies; else the lowered bytes, the ones in
    captured dtypes rescaled as the captured bytes were."""
    if not np.any(lowering.lowered):
        return moved
    captured = arrays.bytes_read + arrays.bytes_written
    scale = np.divide(moved, captured, out=np.ones_like(moved), where=captured > 0)
    return np.where(lowering.lowered, lowering.scaled_bytes * scale + lowering.fixed_bytes, moved)


def _fused_gemm_s(
    kernels: KernelArrays, device: KernelDevice, parameters: KernelParameters, element_bytes: float, share: float
) -> FloatArray:
    """Per op, the arithmetic of its GEMMs in a fused kernel (no split-K, operands on chip)."""
    dims = gemm.GemmDims(kernels.gemm_count, kernels.gemm_m, kernels.gemm_n * share, kernels.gemm_k)
    seconds = gemm.best_compute_seconds(dims, device, parameters, element_bytes)
    return per_op_sum(kernels.gemm_op, seconds, len(kernels.gemms_per_op))


def launched_costs(
    arrays: WorkloadArrays,
    kinds: OpKinds,
    chip: ChipSpec,
    kernel_count: FloatArray | float,
    compute_s: FloatArray,
    memory_s: FloatArray,
    flops: FloatArray,
) -> OpCosts:
    """The op costs of kernels of ``compute_s`` and ``memory_s``, each op paying the chip's
    ``op_overhead_s`` per kernel (``kernel_count``; per tensor of a list on a chip without
    multi-tensor kernels); views and allocations cost nothing."""
    if not chip.multi_tensor_kernels:
        kernel_count = kernel_count * arrays.tensor_lists
    overhead_s = np.where(kinds.views, 0.0, chip.op_overhead_s * kernel_count)
    compute_s = np.where(kinds.views, 0.0, compute_s)
    memory_s = np.where(kinds.views, 0.0, memory_s)
    time_s = np.maximum(compute_s, memory_s) + overhead_s
    return OpCosts(compute_s=compute_s, memory_s=memory_s, overhead_s=overhead_s, time_s=time_s, flops=flops)


def _gpu_rowwise_s(
    kernels: KernelArrays, moved: FloatArray, device: KernelDevice, parameters: KernelParameters, element_bytes: float
) -> FloatArray:
    """LayerNorm and softmax kernels (forward and backward): the row-wise model of a forward kernel
    over the op's rows (rows per CTA in waves over the SMs, re-reads of rows the caches cannot
    hold), without its fitted launch floor, plus the op's captured bytes beyond that kernel's at
    the achieved bandwidth (a backward kernel also reads the output gradient)."""
    rows = np.maximum(kernels.rows, 1.0)
    width = np.maximum(kernels.row_elements, 1.0)
    softmax = kernels.softmax
    kernel_s = np.where(
        softmax,
        rowwise.softmax_seconds(rows, width, device, parameters, element_bytes) - parameters.softmax_launch_s,
        rowwise.layernorm_seconds(rows, width, device, parameters, element_bytes) - parameters.layernorm_launch_s,
    )
    kernel_bytes = np.where(
        softmax,
        rowwise.softmax_bytes(rows, width, element_bytes),
        rowwise.layernorm_bytes(rows, width, element_bytes),
    )
    extra = np.maximum(moved - kernel_bytes, 0.0)
    seconds: FloatArray = np.maximum(kernel_s, 0.0) + extra / achieved_bandwidth(moved, device, parameters)
    return seconds
