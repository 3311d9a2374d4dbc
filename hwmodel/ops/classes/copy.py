"""``copy``: data movement (copies, fills, allocations, indexing, padding) and resampling.

Data movement (``cat``, ``clone``, pads, index ops, fills...) does no arithmetic: those packets are
this class's ``data_movement``, get 0 FLOPs and are costed by their bytes. Resampling (pooling,
bilinear upsampling, grid sampling) does a little arithmetic per element but is bound by the same
gathers and strided reads, so it shares the class and its efficiency entry. A class of its own
because strided and gathered access reaches a much lower fraction of the memory bandwidth than the
streaming of pointwise ops.
"""

from __future__ import annotations

from hwmodel.ops.classes.base import OpClass

DATA_MOVEMENT = frozenset(
    {
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
"""Packets that move, fill or allocate data and do no arithmetic: 0 FLOPs, costed by their bytes."""

RESAMPLING = frozenset(
    {
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
)
"""Pooling, bilinear upsampling and grid sampling: little arithmetic, bound by gathers."""

OP_CLASS = OpClass(
    name="copy",
    order=7,
    unit="vector",
    packets=DATA_MOVEMENT | RESAMPLING,
    data_movement=DATA_MOVEMENT,
    description="Data movement (0 FLOPs, costed by bytes) and resampling, on the vector unit.",
)
