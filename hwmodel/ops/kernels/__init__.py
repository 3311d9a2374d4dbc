"""Per-kernel cost models in hardware terms, fitted on measured GPU kernels.

One module per kernel class, each a pure function of shapes (numpy arrays, one row per kernel), a
:class:`~hwmodel.ops.kernels.device.KernelDevice` (datasheet figures only) and the fitted
:class:`~hwmodel.ops.kernels.parameters.KernelParameters`, returning seconds:

* :mod:`~hwmodel.ops.kernels.gemm`: GEMM, batched GEMM, linear and convolution as implicit GEMM
  (CTA tiles, wave quantization over the SMs, split-K, tile-intensity efficiency, a launch floor),
  and the shapes of their backward GEMMs;
* :mod:`~hwmodel.ops.kernels.convolution`: a convolution as cuDNN runs it, the faster of its
  implicit GEMM and, for a 3x3 window at stride 1, non-fused Winograd F(4x4, 3x3);
* :mod:`~hwmodel.ops.kernels.memory_bound`: elementwise kernels (bytes at the achieved bandwidth,
  L2 for working sets that fit it, the FP32 pipe for transcendental ops);
* :mod:`~hwmodel.ops.kernels.rowwise`: LayerNorm and softmax (rows per CTA, waves of CTAs);
* :mod:`~hwmodel.ops.kernels.views`: views, reshapes and allocations, which move no data;
* :mod:`~hwmodel.ops.kernels.dispatch`: one entry point keyed by the measured operator's name.

The parameters are few, in hardware units (us, fractions of peak, FLOP per byte), shared by every
device: a device enters only through its datasheet figures, which is what lets them carry to a GPU
the fit never saw. ``docs/hardware-model.md`` lists them with their values and the fit's error.
"""

from __future__ import annotations

from hwmodel.ops.kernels.device import KernelDevice
from hwmodel.ops.kernels.dispatch import KNOWN_OPS, predict_seconds
from hwmodel.ops.kernels.parameters import KernelParameters, load_parameters

__all__ = ["KNOWN_OPS", "KernelDevice", "KernelParameters", "load_parameters", "predict_seconds"]
