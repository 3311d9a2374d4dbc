"""Device-neutral shapes of one aten op, for a kernel cost model: implicit GEMMs, rows, no-traffic ops.

* Implicit GEMMs: the matrix multiplies an accelerator runs for the op, as ``(count, m, n, k)``
  (``count`` products of an ``m x k`` by a ``k x n`` matrix). ``mm``/``addmm``/``bmm``/``baddbmm``
  are the product they compute; a convolution is an implicit GEMM per group (the formulation
  cuDNN and CUTLASS use); attention is its batched ``Q K^T`` and ``P V`` (and their backward).
  Unlike ``OpRecord.gemms`` (the host CPU's lowering), this says nothing about one kernel library.
* Rows: a row-wise op (LayerNorm, softmax, log-softmax, forward and backward) reduces over rows of
  ``row_elements`` elements; ``rows`` of them make up its input.
* No traffic: ops that allocate without writing (``empty``...) or that return a view of their
  input's storage under another name (``_unsafe_view``) move no bytes. Ops torch marks as views
  (``view``, ``transpose``, ``expand``, ``select``...) are not recorded at all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

Gemm = tuple[int, int, int, int]

NO_TRAFFIC_OPS = frozenset(
    {
        "aten._unsafe_view.default",
        "aten.empty.memory_format",
        "aten.empty_like.default",
        "aten.empty_strided.default",
        "aten.new_empty.default",
        "aten.new_empty_strided.default",
    }
)
"""Ops that move no data: allocations left uninitialised, and ``_unsafe_view``, which returns its
input's storage with a new shape (a view that autograd does not track as one). Their ``.out``
overloads write into a given tensor and are not among them."""


def _numel(dims: Sequence[int]) -> int:
    return math.prod(int(d) for d in dims)


def _shape(tensor: torch.Tensor) -> tuple[int, ...]:
    return tuple(tensor.shape)


def _arguments(func: torch._ops.OpOverload, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The op's arguments by schema name, defaults included."""
    bound: dict[str, Any] = {}
    for position, argument in enumerate(func._schema.arguments):
        if position < len(args):
            bound[argument.name] = args[position]
        elif argument.name in kwargs:
            bound[argument.name] = kwargs[argument.name]
        elif argument.has_default_value():
            bound[argument.name] = argument.default_value
    return bound


def convolution_implicit_gemms(
    *,
    batch: int,
    input_pixels: int,
    output_pixels: int,
    weight: Sequence[int],
    groups: int,
    forward: bool,
    input_grad: bool = False,
    weight_grad: bool = False,
) -> tuple[Gemm, ...]:
    """Implicit GEMMs of a (non-transposed) convolution: one per group (``count = groups``).

    ``weight`` is ``(C_out, C_in / groups, *kernel)``; ``input_pixels`` and ``output_pixels`` are
    the spatial elements of one sample's input and output (``H x W`` and ``Ho x Wo`` in 2-D).
    Forward ``M = N Ho Wo``, ``N = C_out / g``, ``K = C_in / g x kh kw``; input gradient ``M = N H W``,
    ``N = C_in / g``, ``K = C_out / g x kh kw``; weight gradient ``M = C_out / g``,
    ``N = C_in / g x kh kw``, ``K = N Ho Wo``. Forward and weight gradient run ``2 M N K`` = the
    convolution's FLOPs; the input gradient does too when the output has as many pixels as the
    input (stride 1, same padding), and more otherwise (the zero taps of a strided convolution).

    >>> convolution_implicit_gemms(batch=2, input_pixels=64, output_pixels=16, weight=(8, 3, 3, 3),
    ...                            groups=1, forward=True, input_grad=True, weight_grad=True)
    ((1, 32, 8, 27), (1, 128, 3, 72), (1, 8, 27, 32))
    """
    out_per_group = int(weight[0]) // groups
    in_per_group = int(weight[1])
    taps = _numel(weight[2:])
    gemms: list[Gemm] = []
    if forward:
        gemms.append((groups, batch * output_pixels, out_per_group, in_per_group * taps))
    if input_grad:
        gemms.append((groups, batch * input_pixels, in_per_group, out_per_group * taps))
    if weight_grad:
        gemms.append((groups, out_per_group, in_per_group * taps, batch * output_pixels))
    return tuple(gemm for gemm in gemms if all(gemm))


def attention_implicit_gemms(
    *, batch_heads: int, length_q: int, length_k: int, dim_qk: int, dim_v: int, backward: bool
) -> tuple[Gemm, ...]:
    """Batched GEMMs of scaled dot-product attention, ``count`` = batch x heads.

    Forward ``S = Q K^T`` (``Lq x Lk x D``) and ``O = P V`` (``Lq x Dv x Lk``). Backward recomputes
    ``S`` and runs ``dV = P^T dO`` (``Lk x Dv x Lq``), ``dP = dO V^T`` (``Lq x Lk x Dv``),
    ``dQ = dS K`` (``Lq x D x Lk``), ``dK = dS^T Q`` (``Lk x D x Lq``): the FLOPs torch counts.

    >>> attention_implicit_gemms(batch_heads=8, length_q=256, length_k=40, dim_qk=16, dim_v=8, backward=False)
    ((8, 256, 40, 16), (8, 256, 8, 40))
    """
    count = batch_heads
    if backward:
        gemms = [
            (count, length_q, length_k, dim_qk),
            (count, length_k, dim_v, length_q),
            (count, length_q, length_k, dim_v),
            (count, length_q, dim_qk, length_k),
            (count, length_k, dim_qk, length_q),
        ]
    else:
        gemms = [(count, length_q, length_k, dim_qk), (count, length_q, dim_v, length_k)]
    return tuple(gemm for gemm in gemms if all(gemm))


def _matmul(bound: dict[str, Any], out: Any) -> tuple[Gemm, ...]:
    first = bound["mat1"] if "mat1" in bound else bound["batch1"] if "batch1" in bound else bound["self"]
    second = bound["mat2"] if "mat2" in bound else bound["batch2"]
    a, b = _shape(first), _shape(second)
    gemm = (a[0] if len(a) == 3 else 1, a[-2], b[-1], a[-1])
    return (gemm,) if all(gemm) else ()


def _convolution(bound: dict[str, Any], out: Any) -> tuple[Gemm, ...]:
    backward = "grad_output" in bound
    inputs = _shape(bound["input"])
    outputs = _shape(bound["grad_output"] if backward else out)
    weight = _shape(bound["weight"])
    groups = int(bound["groups"])
    mask = bound["output_mask"] if backward else (False, False, False)
    if not bound["transposed"]:
        return convolution_implicit_gemms(
            batch=inputs[0],
            input_pixels=_numel(inputs[2:]),
            output_pixels=_numel(outputs[2:]),
            weight=weight,
            groups=groups,
            forward=not backward,
            input_grad=bool(mask[0]),
            weight_grad=bool(mask[1]),
        )
    # A transposed convolution is the input gradient of the convolution that maps its output to its
    # input, with the same weight: its forward is that one's input gradient, its input gradient
    # that one's forward, and its weight gradient that one's weight gradient.
    return convolution_implicit_gemms(
        batch=inputs[0],
        input_pixels=_numel(outputs[2:]),
        output_pixels=_numel(inputs[2:]),
        weight=weight,
        groups=groups,
        forward=bool(mask[0]),
        input_grad=not backward,
        weight_grad=bool(mask[1]),
    )


def _attention(bound: dict[str, Any], out: Any) -> tuple[Gemm, ...]:
    backward = "grad_out" in bound
    query, key, value = (_shape(bound[name]) for name in ("query", "key", "value"))
    return attention_implicit_gemms(
        batch_heads=_numel(query[:-2]),
        length_q=query[-2],
        length_k=key[-2],
        dim_qk=query[-1],
        dim_v=value[-1],
        backward=backward,
    )


_aten = torch.ops.aten
_IMPLICIT_GEMMS: dict[Any, Callable[[dict[str, Any], Any], tuple[Gemm, ...]]] = {
    _aten.mm: _matmul,
    _aten.addmm: _matmul,
    _aten.bmm: _matmul,
    _aten.baddbmm: _matmul,
    _aten.convolution: _convolution,
    _aten.convolution_backward: _convolution,
    _aten._scaled_dot_product_flash_attention_for_cpu: _attention,
    _aten._scaled_dot_product_flash_attention_for_cpu_backward: _attention,
}


def implicit_gemms(
    func: torch._ops.OpOverload, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any
) -> tuple[Gemm, ...]:
    """The matrix multiplies an accelerator runs for this op (empty for an op that is not one)."""
    shapes = _IMPLICIT_GEMMS.get(func._overloadpacket)
    if shapes is None:
        return ()
    return shapes(_arguments(func, args, kwargs), out)


def conv_window(
    func: torch._ops.OpOverload, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any
) -> tuple[int, ...]:
    """A non-transposed 2-D convolution's window and image sizes, in the order of
    :data:`hwmodel.step.workload.CONV_WINDOW` (empty for any other op): what an accelerator library
    needs to choose another algorithm than the implicit GEMM.

    >>> x, w = torch.empty(2, 3, 8, 8, device="meta"), torch.empty(4, 3, 3, 3, device="meta")
    >>> y = torch.ops.aten.convolution.default(x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1)
    >>> conv_window(torch.ops.aten.convolution.default, (x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1), {}, y)
    (3, 3, 1, 1, 1, 1, 1, 3, 4, 8, 8, 8, 8)
    """
    if func._overloadpacket not in (_aten.convolution, _aten.convolution_backward):
        return ()
    bound = _arguments(func, args, kwargs)
    backward = "grad_output" in bound
    inputs, weight = _shape(bound["input"]), _shape(bound["weight"])
    outputs = _shape(bound["grad_output"] if backward else out)
    if bound["transposed"] or len(inputs) != 4 or len(weight) != 4 or len(outputs) != 4:
        return ()
    stride, dilation = (tuple(int(v) for v in bound[name]) for name in ("stride", "dilation"))
    if len(stride) != 2 or len(dilation) != 2:
        return ()
    groups = int(bound["groups"])
    window = (
        weight[2], weight[3], *stride, *dilation, groups,
        inputs[1], weight[0], inputs[2], inputs[3], outputs[2], outputs[3],
    )  # fmt: skip
    return tuple(int(value) for value in window) if min(window) >= 1 else ()


def _normalized_row(bound: dict[str, Any]) -> int:
    return _numel(bound["normalized_shape"])


def _dim_row(tensor_name: str) -> Callable[[dict[str, Any]], int]:
    def row(bound: dict[str, Any]) -> int:
        dims = _shape(bound[tensor_name])
        return dims[int(bound["dim"]) % len(dims)] if dims else 1

    return row


_ROW_TENSOR_AND_LENGTH: dict[Any, tuple[str, Callable[[dict[str, Any]], int]]] = {
    _aten.native_layer_norm: ("input", _normalized_row),
    _aten.native_layer_norm_backward: ("input", _normalized_row),
    _aten._softmax: ("self", _dim_row("self")),
    _aten._log_softmax: ("self", _dim_row("self")),
    _aten._softmax_backward_data: ("grad_output", _dim_row("grad_output")),
    _aten._log_softmax_backward_data: ("grad_output", _dim_row("grad_output")),
}


def rows(func: torch._ops.OpOverload, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[int, int]:
    """``(rows, row_elements)`` of a row-wise op: how many rows it reduces and each one's length
    (``(0, 0)`` for any other op)."""
    entry = _ROW_TENSOR_AND_LENGTH.get(func._overloadpacket)
    if entry is None:
        return 0, 0
    tensor_name, length = entry
    bound = _arguments(func, args, kwargs)
    row_elements = length(bound)
    if row_elements < 1:
        return 0, 0
    return bound[tensor_name].numel() // row_elements, row_elements
