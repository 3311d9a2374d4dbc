"""What CUDA runs for the ops a CPU capture records differently, op by op.

The capture runs on fake CPU tensors, so it records ATen's CPU lowering. Where PyTorch's CUDA
backend runs other kernels for the same Python call, a GPU is costed by what CUDA runs:

* **Dropout.** On the CPU ``F.dropout`` is ``empty_like(x)``, ``bernoulli_``, ``div_`` by ``1 - p``
  and ``mul(x, mask)``, and its backward ``mul(grad, mask)``: four kernels forward that move 28
  bytes an FP32 element. CUDA runs one fused ``native_dropout`` kernel (read ``x``, write the
  output and a one-byte boolean mask) and, backward, ``native_dropout_backward`` (read the gradient
  and the mask, write): 9 bytes an element each way. The ``bernoulli_`` op carries the fused
  kernel; ``div_`` and the forward ``mul`` launch nothing. The mask the backward keeps is that
  byte an element too (:func:`hwmodel.step.memory.activation_peak_bytes` on a GPU).
* **Softmax backward.** CUDA's ``softmax_backward`` first computes ``tmp = grad * output`` (an
  elementwise kernel) and then the row kernel over ``tmp`` and ``output``: two kernels, 12 more
  bytes an element than the row kernel alone. (Log-softmax backward is the row kernel alone.)
* **Cross-entropy's NLL.** The CPU records the whole log-probability matrix as read. CUDA's
  ``nll_loss_forward`` reads one log-probability and one target a row; ``nll_loss_backward`` fills
  the gradient with zeros and scatters one value a row: it writes the matrix and never reads it.
* **Fused attention** (``scaled_dot_product_attention``): the kernel a GPU picks (flash, or the
  memory-efficient kernel in FP32) keeps the score matrix on chip: its GEMMs' arithmetic at the
  matrix rate, and only the captured inputs and outputs (Q, K, V, O, statistics) through memory.
  One kernel forward, three backward (flash attention 2: ``dO . O`` per row, the main loop, the
  conversion of the FP32 ``dQ`` accumulator). NB: not validated against a measured GPU kernel (the
  measured transformers use eager attention), and a causal mask is not seen by the capture, so the
  whole product is costed where a causal kernel skips about half of the blocks.

Every other op is costed from its captured bytes, one kernel.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hwmodel.ops.classes import attention
from hwmodel.ops.classes.base import packet_name
from hwmodel.spec.chip import ChipSpec
from hwmodel.spec.units import DTYPE_BYTES
from hwmodel.step.derived import WORKLOAD_CACHE
from hwmodel.step.workload import OpRecord, TensorRecord, Workload

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

MASK_BYTES_PER_ELEMENT = 1.0
"""CUDA's dropout mask is a ``torch.bool`` tensor: one byte an element, whatever the precision."""

FUSED_ATTENTION = attention.OP_CLASS.packets
"""Fused attention ops, as the CPU records them or as a GPU capture would: the attention class's."""

FUSED_ATTENTION_KERNELS = {"forward": 1.0, "backward": 3.0}
"""Kernels of a fused attention op per direction (flash attention 2's backward: three)."""


@dataclass(frozen=True, eq=False)
class GpuLowering:
    """Per op, what its CUDA kernels move and launch.

    ``scaled_bytes`` are in the op's captured dtypes (a precision policy rescales them like the
    captured bytes), ``fixed_bytes`` are in fixed-width dtypes (boolean masks, int64 targets);
    ``kernels`` is how many kernels the op launches; ``lowered`` marks the ops whose bytes a rule
    replaced; ``fused_away`` marks an op whose work another op's kernel does (it costs nothing);
    ``fused_attention`` marks a fused attention op; ``dropout_masks`` are the storages of the
    masks fused dropouts keep for their backward (a byte an element on CUDA, where the capture
    records them in the input's dtype).
    """

    scaled_bytes: FloatArray
    fixed_bytes: FloatArray
    kernels: FloatArray
    lowered: BoolArray
    fused_away: BoolArray
    fused_attention: BoolArray
    dropout_masks: frozenset[int]


def gpu_lowering(workload: Workload) -> GpuLowering:
    """The :class:`GpuLowering` of ``workload``, kept in the workload cache."""
    return WORKLOAD_CACHE.get(workload, "gpu_lowering", lambda: _lowering(workload))


def _lowering(workload: Workload) -> GpuLowering:
    ops = workload.ops
    count = len(ops)
    scaled = np.fromiter((op.bytes_read + op.bytes_written for op in ops), dtype=np.float64, count=count)
    lowering = GpuLowering(
        scaled_bytes=scaled,
        fixed_bytes=np.zeros(count),
        kernels=np.ones(count),
        lowered=np.zeros(count, dtype=np.bool_),
        fused_away=np.zeros(count, dtype=np.bool_),
        fused_attention=np.fromiter(
            (packet_name(op.name) in FUSED_ATTENTION for op in ops), dtype=np.bool_, count=count
        ),
        dropout_masks=frozenset(),
    )
    tensors = {record.tensor_id: record for record in workload.tensors}
    masks = _lower_dropout(ops, lowering)
    for index, op in enumerate(ops):
        packet = packet_name(op.name)
        if packet == "_softmax_backward_data":
            # tmp = grad * output: reads two tensors of the output's size and writes a third
            lowering.scaled_bytes[index] += 1.5 * op.bytes_read
            lowering.kernels[index] = 2.0
            lowering.lowered[index] = True
        elif packet in ("nll_loss_forward", "nll_loss_backward"):
            _lower_nll_loss(index, op, tensors, lowering)
        elif lowering.fused_attention[index]:
            lowering.kernels[index] = FUSED_ATTENTION_KERNELS.get(op.phase, 1.0)
    return dataclasses.replace(lowering, dropout_masks=frozenset(masks))


def is_cuda_chip(chip: ChipSpec) -> bool:
    """True for a chip whose ops run as PyTorch's CUDA kernels (every GPU preset): costed by the
    kernel models on SMs, its memory holding what those kernels keep (a D1's SRAM nodes do not)."""
    return chip.op_cost_model == "kernels" and chip.local_memory_kind != "sram"


def _lower_dropout(ops: tuple[OpRecord, ...], lowering: GpuLowering) -> set[int]:
    """Find ``empty_like(x) -> bernoulli_ -> div_ -> mul(x, mask)`` (ATen's CPU ``F.dropout``) and
    cost it as CUDA's fused ``native_dropout``; a later op that multiplies by the mask is its
    ``native_dropout_backward``. A ``bernoulli_`` that is not part of the whole pattern (stochastic
    depth's per-sample noise, say) keeps its own kernels. Returns the fused dropouts' masks."""
    source_of: dict[int, int] = {}  # mask storage -> the storage empty_like copied the shape of
    pattern: dict[int, list[int]] = {}  # mask storage -> its bernoulli_ op, then its div_ ops
    fused: set[int] = set()  # masks whose forward mul was found
    for index, op in enumerate(ops):
        packet = packet_name(op.name)
        written = op.output_ids[0] if op.output_ids else None
        if packet == "empty_like" and len(op.input_ids) == 1 and written is not None:
            source_of[written] = op.input_ids[0]
        elif packet == "bernoulli_" and written in source_of:
            pattern[written] = [index]
        elif packet == "div_" and written in pattern and written not in fused:
            pattern[written].append(index)
        elif packet == "mul" and len(op.input_ids) == 2:
            mask = next((tensor for tensor in op.input_ids if tensor in pattern), None)
            if mask is None:
                continue
            other = op.input_ids[1] if op.input_ids[0] == mask else op.input_ids[0]
            elements = float(op.output_elements)
            moved = 2.0 * (op.bytes_written / elements if elements else 0.0) * elements
            if op.phase == "forward" and other == source_of[mask] and mask not in fused:
                kernel, *divisions = pattern[mask]  # the fused kernel: read x, write y and the mask
                _set_bytes(kernel, moved, MASK_BYTES_PER_ELEMENT * elements, lowering)
                for fused_op in (*divisions, index):
                    _fuse_away(fused_op, lowering)
                fused.add(mask)
            elif op.phase == "backward" and mask in fused:
                _set_bytes(index, moved, MASK_BYTES_PER_ELEMENT * elements, lowering)
    return fused


def _set_bytes(index: int, scaled: float, fixed: float, lowering: GpuLowering) -> None:
    lowering.scaled_bytes[index] = scaled
    lowering.fixed_bytes[index] = fixed
    lowering.lowered[index] = True


def _fuse_away(index: int, lowering: GpuLowering) -> None:
    lowering.scaled_bytes[index] = 0.0
    lowering.kernels[index] = 0.0
    lowering.lowered[index] = True
    lowering.fused_away[index] = True


def _lower_nll_loss(index: int, op: OpRecord, tensors: dict[int, TensorRecord], lowering: GpuLowering) -> None:
    """NLL loss as CUDA runs it: the log-probability matrix (the largest input) is not streamed;
    forward gathers one value and one target a row, backward writes the zero-filled gradient and
    scatters one value a row."""
    inputs = [tensors[tensor] for tensor in op.input_ids if tensor in tensors]
    if not inputs:
        return
    matrix = max(inputs, key=lambda record: record.nbytes)
    target_bytes = float(sum(record.nbytes for record in inputs if record.dtype == "int64" and record is not matrix))
    others = float(op.bytes_read) - matrix.nbytes - target_bytes
    lowering.fixed_bytes[index] = target_bytes
    lowering.lowered[index] = True
    if packet_name(op.name) == "nll_loss_forward":
        rows = target_bytes / DTYPE_BYTES["int64"]
        lowering.scaled_bytes[index] = others + rows * DTYPE_BYTES.get(matrix.dtype, 4) + op.bytes_written
    else:
        lowering.scaled_bytes[index] = others + op.bytes_written
        lowering.kernels[index] = 2.0
