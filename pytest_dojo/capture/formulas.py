"""FLOPs, bytes and GEMMs of one dispatched aten op, from its arguments' shapes.

* FLOPs: ``torch.utils.flop_counter``'s registry first, then :mod:`hwmodel.ops.flops` (CPU attention,
  norms, softmax, pointwise, reductions, foreach optimizer ops). An op with neither counts 0 FLOPs
  and is marked ``unmodeled``: the hardware model costs it by its bytes and lists it in the report.
* Bytes: every element of every distinct input read once, every output written once.
* GEMMs: for matrix multiplies, and for the kernels ATen's CPU backend lowers to GEMM calls
  (convolutions it runs one sample at a time, flash attention), the products the kernel runs
  (:mod:`hwmodel.ops.gemm`), so that a chip with measured GEMM rates can time them by shape. Which
  convolution kernel ATen picks is asked of ATen itself (``torch._C._select_conv_backend``): it
  depends on the shapes and on the intra-op thread count at capture time.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.flop_counter import flop_registry

from hwmodel.ops import flops as hw_flops
from hwmodel.ops import gemm as hw_gemm

MATRIX_OPS = ("mm", "addmm", "bmm", "baddbmm", "mv", "dot", "convolution")
"""Ops whose eager CPU kernels refuse operands of different dtypes (no type promotion)."""


def nbytes(tensor: torch.Tensor) -> int:
    """Bytes of ``tensor``'s elements (a view counts its own elements, not its base's)."""
    return int(tensor.numel() * tensor.element_size())


def shape(tensor: torch.Tensor) -> tuple[int, ...]:
    return tuple(tensor.shape)


def _shape_arg(arg: Any) -> hw_flops.ShapeArg:
    if isinstance(arg, torch.Tensor):
        return shape(arg)
    if isinstance(arg, (list, tuple)) and arg and all(isinstance(item, torch.Tensor) for item in arg):
        return tuple(shape(item) for item in arg)
    return None


def _bind(func: torch._ops.OpOverload, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The op's arguments by schema name."""
    bound = dict(zip((a.name for a in func._schema.arguments), args, strict=False))
    bound.update(kwargs)
    return bound


def check_same_dtype(func: torch._ops.OpOverload, args: tuple[Any, ...]) -> None:
    """Refuse what eager PyTorch refuses: a matrix op whose tensor operands differ in dtype
    (``torch.long`` inputs into a float ``nn.Linear``), which fake tensors' meta kernels let pass."""
    if func._overloadpacket.__name__ not in MATRIX_OPS:
        return
    dtypes = {arg.dtype for arg in args if isinstance(arg, torch.Tensor)}
    if len(dtypes) > 1:
        names = " and ".join(sorted(str(dtype).removeprefix("torch.") for dtype in dtypes))
        raise RuntimeError(f"{func}: operands must have the same dtype, but got {names}")


def count_flops(
    func: torch._ops.OpOverload, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any, outputs: list[torch.Tensor]
) -> tuple[float, str]:
    """FLOPs of the op and where the figure comes from (``torch``, ``formula`` or ``unmodeled``)."""
    packet = func._overloadpacket
    if packet is torch.ops.aten.convolution_backward:
        return _convolution_backward_flops(func, args, kwargs), "formula"
    if packet in flop_registry:
        return float(flop_registry[packet](*args, **kwargs, out_val=out)), "torch"
    counted = hw_flops.flop_count(
        str(func),
        [_shape_arg(arg) for arg in args],
        [shape(t) for t in outputs],
        pointwise=torch.Tag.pointwise in func.tags,
    )
    if counted is None:
        return 0.0, "unmodeled"
    return counted, "formula"


def gemms(
    func: torch._ops.OpOverload, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any
) -> tuple[hw_gemm.Gemm, ...]:
    """The GEMMs ATen's CPU kernel of this op runs, where it runs any (empty otherwise)."""
    packet = func._overloadpacket
    aten = torch.ops.aten
    if packet in (aten.mm, aten.addmm, aten.bmm, aten.baddbmm):
        first, second = (args[1], args[2]) if packet in (aten.addmm, aten.baddbmm) else (args[0], args[1])
        a, b = shape(first), shape(second)
        batch = a[0] if len(a) == 3 else 1
        return hw_gemm.matmul_gemms(batch, a[-2], b[-1], a[-1])
    if packet in (aten.convolution, aten.convolution_backward):
        return _convolution_gemms(func, args, kwargs, out)
    if packet in (
        aten._scaled_dot_product_flash_attention_for_cpu,
        aten._scaled_dot_product_flash_attention_for_cpu_backward,
    ):
        backward = packet is aten._scaled_dot_product_flash_attention_for_cpu_backward
        query, key, value = (shape(t) for t in (args[1:4] if backward else args[0:3]))
        return hw_gemm.flash_attention_gemms(
            batch_heads=int(torch.Size(query[:-2]).numel()),
            length_q=query[-2],
            length_k=key[-2],
            dim_qk=query[-1],
            dim_v=value[-1],
            backward=backward,
        )
    return ()


def _convolution_backend(bound: dict[str, Any]) -> str | None:
    """The name of the kernel ATen picks for this convolution (``Slow2d``...), None if it cannot say."""
    select = getattr(torch._C, "_select_conv_backend", None)
    if select is None:
        return None
    try:
        backend = select(
            bound["input"],
            bound["weight"],
            None,
            bound["stride"],
            bound["padding"],
            bound["dilation"],
            bound["transposed"],
            bound["output_padding"],
            bound["groups"],
            None,
        )
    except (RuntimeError, TypeError):
        return None
    return str(backend).rsplit(".", 1)[-1]


def _convolution_gemms(
    func: torch._ops.OpOverload, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any
) -> tuple[hw_gemm.Gemm, ...]:
    """Per-sample GEMMs of a convolution that ATen runs with ``slow_conv2d``; none for the others
    (oneDNN's direct and depthwise kernels are not GEMM calls)."""
    bound = _bind(func, args, kwargs)
    if _convolution_backend(bound) != "Slow2d":
        return ()
    backward = "grad_output" in bound
    output = bound["grad_output"] if backward else out
    weight = shape(bound["weight"])
    mask = bound["output_mask"] if backward else (False, False, False)
    return hw_gemm.per_sample_convolution_gemms(
        batch=shape(bound["input"])[0],
        in_channels=weight[1],
        out_channels=weight[0],
        kernel_elements=int(torch.Size(weight[2:]).numel()),
        output_pixels=int(torch.Size(shape(output)[2:]).numel()),
        forward=not backward,
        input_grad=bool(mask[0]),
        weight_grad=bool(mask[1]),
    )


def _convolution_backward_flops(func: torch._ops.OpOverload, args: tuple[Any, ...], kwargs: dict[str, Any]) -> float:
    """Our formula, not torch's: torch 2.13 counts grouped convolutions' input gradient as dense."""
    bound = _bind(func, args, kwargs)
    mask = bound["output_mask"]
    return hw_flops.convolution_backward_flops(
        shape(bound["grad_output"]),
        shape(bound["input"]),
        shape(bound["weight"]),
        transposed=bool(bound["transposed"]),
        input_grad=bool(mask[0]),
        weight_grad=bool(mask[1]),
    )
