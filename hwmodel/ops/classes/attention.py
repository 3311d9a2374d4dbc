"""``attention``: fused scaled-dot-product attention kernels (flash, memory-efficient, cuDNN, CPU).

A class of its own, apart from plain matrix products: one fused kernel does two GEMMs and a softmax
per block of queries and keys without writing the score matrix, so it reaches its own fraction of
the matrix peak. (On a chip with measured GEMM rates, the CPU kernels the capture lowered to GEMM
blocks are ``matmul``-class ops instead: :func:`hwmodel.ops.matrix.class_indices`.)
"""

from __future__ import annotations

from hwmodel.ops.classes.base import OpClass

OP_CLASS = OpClass(
    name="attention",
    order=2,
    unit="matrix",
    packets=frozenset(
        {
            "_scaled_dot_product_flash_attention_for_cpu",
            "_scaled_dot_product_flash_attention_for_cpu_backward",
            "_scaled_dot_product_efficient_attention",
            "_scaled_dot_product_efficient_attention_backward",
            "_scaled_dot_product_flash_attention",
            "_scaled_dot_product_flash_attention_backward",
            "_scaled_dot_product_cudnn_attention",
            "_scaled_dot_product_cudnn_attention_backward",
            "_flash_attention_forward",
            "_flash_attention_backward",
            "_efficient_attention_forward",
            "_efficient_attention_backward",
            "scaled_dot_product_attention",
        }
    ),
    description="Fused scaled-dot-product attention kernels, on the matrix unit.",
)
