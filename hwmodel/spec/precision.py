"""The mixed-precision policy: which dtype the step computes in and what each tensor is stored as.

A capture records the dtypes the model was built with (usually FP32 on a CPU). Training on a
Dojo-class chip computes in BF16 with FP32 master weights and FP32 optimizer state (the policy of
PyTorch AMP and of Tesla's CFP8/BF16 training), so the simulator rescales what the capture recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

from hwmodel.errors import SpecError
from hwmodel.spec.units import DTYPE_BYTES, FLOAT_DTYPES


@dataclass(frozen=True, kw_only=True)
class Precision:
    """Storage and compute dtypes of a training step.

    Attributes:
        compute_dtype: dtype of forward and backward arithmetic and of activations.
        master_weight_dtype: the optimizer's copy of the weights (also its update arithmetic).
        gradient_dtype: dtype in which gradients are kept and all-reduced.
        tf32_matmuls: FP32 matrix ops (matmuls, convolutions) run on the matrix units in TF32, as
            PyTorch does with ``torch.backends.cuda.matmul.allow_tf32`` and
            ``torch.backends.cudnn.allow_tf32``; storage and every other op stay FP32. False: IEEE
            FP32 (PyTorch's default for matmuls). No effect on a BF16 or FP16 compute dtype.

    A working copy of the weights in ``compute_dtype`` is kept beside the master copy when the two
    differ. Optimizer state is as captured (AdamW: two FP32 moments per parameter).
    """

    compute_dtype: str = "bfloat16"
    master_weight_dtype: str = "float32"
    gradient_dtype: str = "float32"
    tf32_matmuls: bool = False

    def __post_init__(self) -> None:
        for name in ("compute_dtype", "master_weight_dtype", "gradient_dtype"):
            value = getattr(self, name)
            if value not in FLOAT_DTYPES:
                raise SpecError(f"precision {name} must be one of {sorted(FLOAT_DTYPES)}, got {value!r}")

    def activation_scale(self, captured_dtype: str) -> float:
        """Factor from captured bytes to stored bytes of an activation of ``captured_dtype``.

        Integer tensors (indices, labels) keep their size.

        >>> Precision().activation_scale("float32"), Precision().activation_scale("int64")
        (0.5, 1.0)
        """
        if captured_dtype not in FLOAT_DTYPES:
            return 1.0
        return DTYPE_BYTES[self.compute_dtype] / DTYPE_BYTES[captured_dtype]

    @property
    def weight_bytes_per_parameter(self) -> int:
        """Master copy plus, when the compute dtype differs, a working copy."""
        master = DTYPE_BYTES[self.master_weight_dtype]
        if self.compute_dtype == self.master_weight_dtype:
            return master
        return master + DTYPE_BYTES[self.compute_dtype]

    @property
    def gradient_bytes_per_parameter(self) -> int:
        """Bytes of one gradient element, as stored and as all-reduced."""
        return DTYPE_BYTES[self.gradient_dtype]


FP32 = Precision(compute_dtype="float32", master_weight_dtype="float32", gradient_dtype="float32")
TF32 = Precision(compute_dtype="float32", master_weight_dtype="float32", gradient_dtype="float32", tf32_matmuls=True)
MIXED_BF16 = Precision()

PRECISIONS: dict[str, Precision] = {"bf16": MIXED_BF16, "fp32": FP32, "tf32": TF32}
"""Named policies for options and presets, as PyTorch runs them: ``bf16`` mixed precision (BF16
compute, FP32 master weights and optimizer state), ``fp32`` IEEE FP32 throughout, ``tf32`` FP32
throughout with matmuls and convolutions in TF32 on the matrix units."""


def parse_precision(name: str) -> Precision:
    """The policy called ``name``; an unknown name is a one-line error listing the known ones."""
    try:
        return PRECISIONS[name.strip().lower()]
    except KeyError:
        raise SpecError(f"unknown precision {name!r}; known: {', '.join(PRECISIONS)}") from None
