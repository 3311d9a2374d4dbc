"""FLOP formulas for the ops that ``torch.utils.flop_counter`` counts as zero.

Torch's registry covers matrix multiplies, convolutions and the CUDA attention kernels. The rest of
a training step (the CPU attention kernels, norms, softmax, activations, reductions, losses and the
optimizer's ``_foreach_*`` ops) is counted here, from shapes alone, so this module stays torch-free.

A formula receives the shapes of the op's arguments, in order (a tensor gives a tuple of ints, a
list of tensors gives a tuple of such tuples, any other argument gives ``None``), and the shapes of
its outputs, and returns FLOPs. One FLOP is one add or one multiply; transcendental functions (exp,
tanh, erf, sqrt, division) count as one FLOP each, as in the MLPerf and PaLM accounting, since
every unit we model issues them at one result per lane per cycle or close to it.

Copies and data movement (``cat``, ``clone``, pads, index ops...) do no arithmetic: they are costed
by their bytes, and count 0 FLOPs so that they are not reported as unmodeled. Which packets they
are is said by the op classes (``OpClass.data_movement``, :mod:`hwmodel.ops.classes`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from hwmodel.errors import SpecError
from hwmodel.ops.classes.base import packet_name
from hwmodel.ops.classes.registry import op_classes

Shape = tuple[int, ...]
ShapeArg = Shape | tuple[Shape, ...] | None
FlopFormula = Callable[[Sequence[ShapeArg], Sequence[Shape]], float]

POINTWISE_FALLBACK = "<pointwise>"
"""Registry key used for an op that torch tags pointwise but that has no formula of its own."""

_FORMULAS: dict[str, FlopFormula] = {}


def register_flop_formula(*packet_names: str) -> Callable[[FlopFormula], FlopFormula]:
    """Register ``formula`` for the given overload packets (``"mm"``, ``"_foreach_add_"``...).

    Refuses a name registered twice and a name with a namespace or overload in it, so that there is
    exactly one way in and one formula per op.
    """

    def decorator(formula: FlopFormula) -> FlopFormula:
        for name in packet_names:
            if not name or "." in name:
                raise SpecError(f"flop formula key must be an overload packet like 'mm', got {name!r}")
            if name in _FORMULAS:
                raise SpecError(f"flop formula for {name!r} is already registered")
            _FORMULAS[name] = formula
        return formula

    return decorator


def flop_count(
    op_name: str, inputs: Sequence[ShapeArg], outputs: Sequence[Shape], *, pointwise: bool = False
) -> float | None:
    """FLOPs of one op, or ``None`` if no formula applies (the op is then 'unmodeled').

    ``pointwise`` says the op is tagged pointwise by torch: such an op without a formula of its own
    is counted at one FLOP per output element.
    """
    packet = packet_name(op_name)
    formula = _FORMULAS.get(packet)
    if formula is None and packet in op_classes().data_movement:
        return 0.0
    if formula is None and pointwise:
        formula = _FORMULAS[POINTWISE_FALLBACK]
    if formula is None:
        return None
    return float(formula(inputs, outputs))


def numel(shape: Shape) -> int:
    """Elements of one tensor shape."""
    return math.prod(shape)


def _tensor_shapes(arg: ShapeArg) -> tuple[Shape, ...]:
    """The tensor shapes in one argument: a tensor gives one, a list gives each, a scalar none."""
    if arg is None:
        return ()
    if len(arg) > 0 and isinstance(arg[0], tuple):
        return arg  # type: ignore[return-value]
    return (arg,)  # type: ignore[return-value]


def _output_elements(outputs: Sequence[Shape]) -> int:
    return sum(numel(shape) for shape in outputs)


def _per_output_element(flops_per_element: float) -> FlopFormula:
    def formula(inputs: Sequence[ShapeArg], outputs: Sequence[Shape]) -> float:
        return flops_per_element * _output_elements(outputs)

    return formula


def _per_input_element(flops_per_element: float) -> FlopFormula:
    """For reductions and norms: the work is over the (first) input, not the smaller output."""

    def formula(inputs: Sequence[ShapeArg], outputs: Sequence[Shape]) -> float:
        first = next((shape for arg in inputs for shape in _tensor_shapes(arg)), ())
        return flops_per_element * numel(first)

    return formula


def _per_list_element(flops_per_element: float) -> FlopFormula:
    """For ``_foreach_*`` ops: work per element of the first tensor list, summed over the list."""

    def formula(inputs: Sequence[ShapeArg], outputs: Sequence[Shape]) -> float:
        first = inputs[0] if inputs else None
        return flops_per_element * sum(numel(shape) for shape in _tensor_shapes(first))

    return formula


# Pointwise arithmetic and comparisons: one FLOP per output element.
_FORMULAS[POINTWISE_FALLBACK] = _per_output_element(1.0)

register_flop_formula(
    "add",
    "add_",
    "sub",
    "sub_",
    "mul",
    "mul_",
    "div",
    "div_",
    "neg",
    "abs",
    "relu",
    "relu_",
    "threshold_backward",
    "clamp",
    "clamp_",
    "clamp_min",
    "clamp_max",
    "maximum",
    "minimum",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "pow",
    "rsub",
    "reciprocal",
    "sign",
    "hardtanh",
    "hardtanh_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "addcmul",
    "addcdiv",
    "lerp",
    "lerp_",
    "square",
    "logical_not",
    "logical_and",
    "bitwise_not",
)(_per_output_element(1.0))

# Transcendental activations: exp/log/tanh/sqrt count one each (see module docstring).
# sigmoid(x) = 1/(1+exp(-x)): neg, exp, add, div = 4. silu = x*sigmoid(x) = 5. tanh: 1.
# gelu (erf form) 0.5*x*(1+erf(x/sqrt2)): div, erf, add, mul, mul = 5.
register_flop_formula("exp", "log", "sqrt", "rsqrt", "tanh", "sin", "cos", "erf", "log1p", "expm1")(
    _per_output_element(1.0)
)
register_flop_formula("sigmoid", "sigmoid_")(_per_output_element(4.0))
register_flop_formula("silu", "silu_")(_per_output_element(5.0))
register_flop_formula("gelu")(_per_output_element(5.0))
# Backward of the activations: derivative formula times the incoming gradient.
# sigmoid' = s(1-s): sub, mul, mul = 3; tanh' = (1-t^2): mul, sub, mul = 3;
# silu' = s(1 + x(1-s)): sigmoid 4 + sub, mul, add, mul, mul = 9; gelu' ~ cdf + x*pdf: 12.
# log_sigmoid(x) = -log1p(exp(-x)) with a max for stability: neg, exp, log1p, max, sub = 5;
# its backward: sigmoid(-x) (4) times the incoming gradient (1) = 5.
register_flop_formula("log_sigmoid_forward", "log_sigmoid_backward")(_per_output_element(5.0))
register_flop_formula("sigmoid_backward", "tanh_backward")(_per_output_element(3.0))
register_flop_formula("silu_backward")(_per_output_element(9.0))
register_flop_formula("gelu_backward")(_per_output_element(12.0))

# Reductions read every input element once with one add/compare each.
register_flop_formula("sum", "mean", "amax", "amin", "max", "min", "argmax", "argmin", "prod", "cumsum")(
    _per_input_element(1.0)
)
# var/std: mean (1), subtract (1), square (1), accumulate (1) per element.
register_flop_formula("var", "std", "var_mean", "norm", "linalg_vector_norm")(_per_input_element(4.0))
register_flop_formula("logsumexp")(_per_input_element(4.0))
# Losses: mse (sub, square, add) = 3; BCE-with-logits (~ log1p(exp(-|x|)) + max terms) = 8.
register_flop_formula("mse_loss", "mse_loss_backward")(_per_input_element(3.0))
register_flop_formula("binary_cross_entropy_with_logits")(_per_input_element(8.0))
register_flop_formula("nll_loss_forward", "nll_loss_backward", "nll_loss2d_forward", "nll_loss2d_backward")(
    _per_output_element(1.0)
)

# Normalization, per input element. Forward (batch/layer/group norm, training mode):
# mean 1, variance (sub, square, add) 3, normalize (sub, mul) 2, affine (mul, add) 2 = 8.
# Backward: d_xhat = dy*gamma 1, sum(d_xhat*(x-mu)) 2, sum(d_xhat) 1,
# dx = d_xhat*inv + dvar*2(x-mu)/N + dmu/N 5, dgamma = sum(dy*xhat) 2, dbeta = sum(dy) 1 = 12.
register_flop_formula(
    "native_batch_norm",
    "_native_batch_norm_legit",
    "_native_batch_norm_legit_functional",
    "_batch_norm_with_update",
    "_batch_norm_with_update_functional",
    "native_layer_norm",
    "native_group_norm",
)(_per_input_element(8.0))
register_flop_formula("_native_batch_norm_legit_no_training", "_batch_norm_no_update")(_per_input_element(4.0))
register_flop_formula(
    "native_batch_norm_backward",
    "batch_norm_backward",
    "native_layer_norm_backward",
    "native_group_norm_backward",
)(_per_input_element(12.0))

# Softmax forward: max 1, subtract 1, exp 1, sum 1, divide 1 = 5 per element.
# Backward: dy*y 1, row sum 1, subtract 1, multiply by y 1 = 4.
register_flop_formula("_softmax", "_log_softmax")(_per_output_element(5.0))
register_flop_formula("_softmax_backward_data", "_log_softmax_backward_data")(_per_output_element(4.0))

# Optimizer foreach ops: FLOPs per element of the parameter list.
register_flop_formula(
    "_foreach_add",
    "_foreach_add_",
    "_foreach_sub",
    "_foreach_sub_",
    "_foreach_mul",
    "_foreach_mul_",
    "_foreach_div",
    "_foreach_div_",
    "_foreach_sqrt",
    "_foreach_sqrt_",
    "_foreach_neg",
    "_foreach_neg_",
    "_foreach_reciprocal_",
    "_foreach_maximum_",
    "_foreach_pow",
    "_foreach_sign",
)(_per_list_element(1.0))
register_flop_formula(
    "_foreach_addcmul", "_foreach_addcmul_", "_foreach_addcdiv", "_foreach_addcdiv_", "_foreach_lerp_", "_foreach_lerp"
)(_per_list_element(2.0))
register_flop_formula("_foreach_norm")(_per_list_element(2.0))
# Fused AdamW per element: 2 moment updates (3 each), bias corrections (2), sqrt+add+div (3),
# weight decay (2), update (2) = 15.
register_flop_formula("_fused_adamw_", "_fused_adam_", "_fused_adamw", "_fused_adam")(_per_list_element(15.0))
register_flop_formula("_fused_sgd_", "_fused_sgd")(_per_list_element(4.0))

# Pooling: one compare/add per window element of the output; a 3x3 window is 9 per output element.
# We do not see kernel sizes as shapes, so count per input element (each input enters ~1 window
# for stride = kernel); NB: overlapping windows (stride < kernel) are undercounted.
register_flop_formula(
    "max_pool2d_with_indices",
    "avg_pool2d",
    "_adaptive_avg_pool2d",
    "adaptive_avg_pool2d",
    "max_pool2d_with_indices_backward",
    "avg_pool2d_backward",
    "_adaptive_avg_pool2d_backward",
)(_per_input_element(1.0))

# Interpolation: bilinear 2D blends 4 taps (4 mul + 3 add) = 7 per output element; its backward
# scatters 4 weighted taps (4 mul + 4 add) = 8 per input-gradient element. Trilinear: 8 taps.
register_flop_formula("upsample_bilinear2d")(_per_output_element(7.0))
register_flop_formula("upsample_bilinear2d_backward")(_per_output_element(8.0))
register_flop_formula("grid_sampler_2d")(_per_output_element(7.0 + 4.0))  # 4 taps + coordinate unnormalize
register_flop_formula("grid_sampler_3d")(_per_output_element(15.0 + 6.0))  # 8 taps + coordinates


def _grid_sampler_backward(taps: float) -> FlopFormula:
    """Backward of grid_sample: per *grid* point (the second input), scatter into ``taps`` corners."""

    def formula(inputs: Sequence[ShapeArg], outputs: Sequence[Shape]) -> float:
        shapes = [shape for arg in inputs for shape in _tensor_shapes(arg)]
        grid = shapes[2] if len(shapes) >= 3 else ()
        channels = shapes[0][1] if shapes and len(shapes[0]) > 1 else 1
        points = numel(grid[:-1]) if grid else 0
        return points * channels * 2.0 * taps

    return formula


register_flop_formula("grid_sampler_2d_backward")(_grid_sampler_backward(4.0))
register_flop_formula("grid_sampler_3d_backward")(_grid_sampler_backward(8.0))


def _affine_grid_flops(grid: Shape) -> float:
    """Each grid coordinate is a dot product of an affine row with (x, y[, z], 1): ``k``
    multiplies and ``k - 1`` adds, ``k`` = spatial dims + 1 (3 in 2D, 4 in 3D)."""
    if not grid:
        return 0.0
    taps = grid[-1] + 1
    return float(numel(grid) * (2 * taps - 1))


@register_flop_formula("affine_grid_generator")
def affine_grid_forward_flops(inputs: Sequence[ShapeArg], outputs: Sequence[Shape]) -> float:
    """The output is the grid."""
    return _affine_grid_flops(outputs[0] if outputs else ())


@register_flop_formula("affine_grid_generator_backward")
def affine_grid_backward_flops(inputs: Sequence[ShapeArg], outputs: Sequence[Shape]) -> float:
    """The first argument is the gradient of the grid; the same products, transposed."""
    shapes = _tensor_shapes(inputs[0]) if inputs else ()
    return _affine_grid_flops(shapes[0] if shapes else ())


def convolution_backward_flops(
    grad_output: Shape, input_shape: Shape, weight: Shape, *, transposed: bool, input_grad: bool, weight_grad: bool
) -> float:
    """``aten.convolution_backward``: each requested gradient (input, weight) costs one forward.

    Forward = 2 x (output elements of the non-transposed direction) x (weight elements per output
    channel), right for any ``groups`` since the weight holds ``in_channels / groups`` per output
    channel. NB: torch 2.13's ``conv_backward_flop`` counts a grouped convolution's input gradient
    as dense (x groups): a depthwise 3x3 over 64 channels would cost 65x its forward.

    >>> convolution_backward_flops((1, 64, 32, 32), (1, 64, 32, 32), (64, 1, 3, 3),
    ...     transposed=False, input_grad=True, weight_grad=True)
    2359296.0
    """
    per_output_channel = numel(weight[1:])
    output_elements = numel(input_shape) if transposed else numel(grad_output)
    forward = 2.0 * output_elements * per_output_channel
    return forward * (int(input_grad) + int(weight_grad))


def _attention_dims(inputs: Sequence[ShapeArg]) -> tuple[int, int, int, int, int]:
    """(batch x heads, query length, key length, qk dim, value dim) of an SDPA call's q, k, v."""
    query, key, value = (_tensor_shapes(arg)[0] for arg in inputs[:3])
    batch_heads = numel(query[:-2])
    return batch_heads, query[-2], key[-2], query[-1], value[-1]


@register_flop_formula(
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_attention_math",
    "_scaled_dot_product_fused_attention_overrideable",
)
def attention_forward_flops(inputs: Sequence[ShapeArg], outputs: Sequence[Shape]) -> float:
    """S = Q K^T (2*Lq*Lk*D) and O = P V (2*Lq*Lk*Dv) per batch x head, as torch counts the CUDA
    kernels (``sdpa_flop_count``). NB: the softmax on S (~5 FLOPs per score) is not counted, as in
    torch; with D = 64 it adds under 5%. Causal masks are ignored: dense upper bound.
    """
    batch_heads, length_q, length_k, dim_qk, dim_v = _attention_dims(inputs)
    return 2.0 * batch_heads * length_q * length_k * (dim_qk + dim_v)


@register_flop_formula(
    "_scaled_dot_product_flash_attention_for_cpu_backward",
    "_scaled_dot_product_fused_attention_overrideable_backward",
)
def attention_backward_flops(inputs: Sequence[ShapeArg], outputs: Sequence[Shape]) -> float:
    """Recompute S = Q K^T (D), dP = dO V^T (Dv), dV = P^T dO (Dv), dQ = dS K (D), dK = dS^T Q (D):
    ``2*Lq*Lk*(3*D + 2*Dv)`` per batch x head, as torch's ``sdpa_backward_flop_count``.
    The CPU backward's arguments start with grad_out, then q, k, v.
    """
    batch_heads, length_q, length_k, dim_qk, dim_v = _attention_dims(inputs[1:4])
    return 2.0 * batch_heads * length_q * length_k * (3 * dim_qk + 2 * dim_v)
