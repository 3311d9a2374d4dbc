"""Op classes: which hardware unit an aten op runs on and how well it can use it.

The class decides the FLOP rate (matrix unit or vector unit), the efficiency row that applies
(:mod:`hwmodel.ops.efficiency`) and the work granule used for occupancy. Op names are the strings the
capture records (``"aten.convolution.default"``); the class is looked up by the overload packet
(``"convolution"``), so every overload of an op shares its class.

>>> op_class("aten.convolution_backward.default")
'convolution'
>>> op_class("aten.addmm.default")
'matmul'
>>> op_class("aten._foreach_mul_.Scalar")
'optimizer'
>>> op_class("aten.native_batch_norm.default")
'normalization'
"""

from __future__ import annotations

OP_CLASSES = (
    "matmul",
    "convolution",
    "attention",
    "elementwise",
    "reduction",
    "normalization",
    "softmax",
    "copy",
    "optimizer",
    "other",
)
"""Every class the cost model knows. ``matmul``, ``convolution`` and ``attention`` run on the matrix
unit. Convolutions are a class of their own, apart from plain matrix products: their kernels reach a
different fraction of peak (im2col or direct algorithms, grouped and depthwise variants) and pay a
different fixed cost per call."""

MATRIX_CLASSES = frozenset({"matmul", "convolution", "attention"})

_MATMUL = {
    "mm",
    "addmm",
    "bmm",
    "baddbmm",
    "linear",
    "matmul",
    "_scaled_mm",
    "addbmm",
}
_CONVOLUTION = {
    "convolution",
    "convolution_backward",
    "_convolution",
    "conv2d",
    "conv3d",
    "conv_transpose2d",
    "conv_transpose3d",
}
_ATTENTION = {
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
_NORMALIZATION = {
    "native_batch_norm",
    "native_batch_norm_backward",
    "_native_batch_norm_legit",
    "_native_batch_norm_legit_no_training",
    "_native_batch_norm_legit_functional",
    "native_layer_norm",
    "native_layer_norm_backward",
    "native_group_norm",
    "native_group_norm_backward",
    "batch_norm_backward",
    "_batch_norm_with_update",
    "_batch_norm_with_update_functional",
    "_batch_norm_no_update",
}
_SOFTMAX = {"_softmax", "_softmax_backward_data", "_log_softmax", "_log_softmax_backward_data"}
_REDUCTION = {
    "sum",
    "mean",
    "amax",
    "amin",
    "max",
    "min",
    "var",
    "std",
    "var_mean",
    "norm",
    "linalg_vector_norm",
    "argmax",
    "argmin",
    "prod",
    "logsumexp",
    "nll_loss_forward",
    "nll_loss_backward",
    "nll_loss2d_forward",
    "nll_loss2d_backward",
    "mse_loss",
    "mse_loss_backward",
    "binary_cross_entropy_with_logits",
    "cumsum",
    "topk",
    "sort",
}
DATA_MOVEMENT_OPS = frozenset(
    {
        "_foreach_copy_",
        "_foreach_zero_",
        "_to_copy",
        "_unsafe_index",
        "_unsafe_index_put",
        "_unsafe_view",
        "alias",
        "arange",
        "bernoulli_",
        "cat",
        "clone",
        "constant_pad_nd",
        "contiguous",
        "copy_",
        "detach",
        "embedding",
        "embedding_dense_backward",
        "empty",
        "empty_like",
        "empty_strided",
        "eye",
        "fill",
        "fill_",
        "flip",
        "full",
        "full_like",
        "gather",
        "index",
        "index_put",
        "index_put_",
        "index_select",
        "lift_fresh",
        "linspace",
        "logspace",
        "masked_fill",
        "masked_fill_",
        "native_dropout",
        "native_dropout_backward",
        "new_empty",
        "new_empty_strided",
        "new_full",
        "new_ones",
        "new_zeros",
        "normal_",
        "ones",
        "ones_like",
        "rand",
        "randn",
        "repeat",
        "roll",
        "scalar_tensor",
        "scatter",
        "scatter_add",
        "select_backward",
        "slice_backward",
        "split_with_sizes_copy",
        "stack",
        "tril",
        "triu",
        "uniform_",
        "upsample_nearest2d",
        "upsample_nearest2d_backward",
        "where",
        "zero_",
        "zeros",
        "zeros_like",
    }
)
"""Ops that move, fill or allocate data and do no arithmetic: 0 FLOPs, costed by their bytes."""
_RESAMPLING = {
    "grid_sampler_2d",
    "grid_sampler_2d_backward",
    "grid_sampler_3d",
    "grid_sampler_3d_backward",
    "upsample_bilinear2d",
    "upsample_bilinear2d_backward",
    "max_pool2d_with_indices",
    "max_pool2d_with_indices_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "_adaptive_avg_pool2d",
    "_adaptive_avg_pool2d_backward",
    "adaptive_avg_pool2d",
}
_COPY = DATA_MOVEMENT_OPS | _RESAMPLING


def packet_name(op_name: str) -> str:
    """``"aten.mm.default"`` -> ``"mm"``; names without a namespace are returned unchanged."""
    parts = op_name.split(".")
    return parts[1] if len(parts) >= 2 else parts[0]


def op_class(op_name: str) -> str:
    """The class of an aten op (one of :data:`OP_CLASSES`); unknown ops are ``"elementwise"``.

    NB: defaulting unknown ops to elementwise is deliberate: most aten ops not listed above are
    pointwise (activations, arithmetic, comparisons), and the class only picks a rate and an
    efficiency row; whether an op has a FLOP formula is recorded separately (``flop_source``).
    """
    name = packet_name(op_name)
    if name.startswith("_foreach_") or name.startswith("_fused_"):
        return "optimizer"
    if name in _MATMUL:
        return "matmul"
    if name in _CONVOLUTION:
        return "convolution"
    if name in _ATTENTION:
        return "attention"
    if name in _NORMALIZATION:
        return "normalization"
    if name in _SOFTMAX:
        return "softmax"
    if name in _REDUCTION:
        return "reduction"
    if name in _COPY:
        return "copy"
    return "elementwise"
