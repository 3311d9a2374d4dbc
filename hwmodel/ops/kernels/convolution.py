"""A convolution as cuDNN runs it: the faster of the algorithms that apply to its window.

PyTorch convolutions on a GPU call cuDNN. With ``cudnn.benchmark = True`` (as the measured kernels
ran, and as training scripts commonly set) cuDNN times every algorithm that applies once and keeps
the fastest. The model does the same with modelled times, over the two algorithm families that
separate in the measured kernels (``docs/fidelity.md``, "GPU kernels, leave one device out"):

* **implicit GEMM**, any window: the GEMM ``m = B Ho Wo``, ``n = Cout``, ``k = Cin kh kw`` in
  cuDNN's CTA tiles (:data:`CUDNN_TILES`, no split-K; :meth:`ConvShape.implicit_gemm`), gathered
  from the image inside the kernel. cuDNN's fused
  Winograd kernels (``scudnn_winograd_128x128``) are one such tiled kernel too, and the measured
  ones run at the rate the implicit GEMM is modelled at: they are not modelled apart;
* **Winograd F(4x4, 3x3), non-fused**, a 3x3 window at stride 1 (four kernels; the measured GEMM
  is a batched ``sgemm`` with grid z = 36): the input transform (``B Cin H W`` values read,
  ``36 T Cin`` written, with ``T = B ceil(Ho/4) ceil(Wo/4)`` tiles), the filter transform
  (``9 Cin Cout`` read, ``36 Cin Cout`` written), 36 GEMMs ``(T x Cin) @ (Cin x Cout)``, one per
  element of the transformed 6 x 6 tile, and the output transform (``36 T Cout`` read,
  ``B Cout Ho Wo`` written). The transforms are memory-bound kernels. The GEMMs run on the SGEMM
  tiles at :attr:`KernelParameters.winograd_gemm_fraction` of a GEMM tile's rate.

Winograd F(4x4, 3x3) multiplies 36 times per 16 outputs where the direct window multiplies 144
times: 4x fewer, less the padding of partial tiles. A 5 x 5 output pays 4 whole tiles, 36 x 4 =
144 products against 9 x 25 = 225.

Not modelled: FFT algorithms (about 1% of the measured rows), Winograd for grouped, dilated or
strided windows (implicit GEMM only), the transforms' arithmetic (a few adds per value moved), and
cuDNN's workspace limit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from hwmodel.ops.kernels import gemm
from hwmodel.ops.kernels.device import KernelDevice
from hwmodel.ops.kernels.memory_bound import achieved_bandwidth
from hwmodel.ops.kernels.parameters import KernelParameters

Array = NDArray[np.float64]

ALGORITHMS = ("implicit_gemm", "winograd_nonfused")
"""The algorithms :func:`convolution_seconds` chooses between, in the order of :func:`algorithm_seconds`."""

WINOGRAD_OUTPUT_TILE = 4
"""Output rows and columns of one F(4x4, 3x3) tile."""
WINOGRAD_ELEMENTS = (WINOGRAD_OUTPUT_TILE + 2) ** 2
"""Elements of one transformed tile (6 x 6): the batch of the products."""


@dataclass(frozen=True)
class ConvShape:
    """Square-kernel 2-D convolutions of one group, undilated, one value per row: ``batch`` images
    of ``in_channels`` x ``height`` x ``width`` to ``out_channels`` x ``out_height`` x
    ``out_width``, a ``kernel`` x ``kernel`` window at ``stride``."""

    batch: Array
    in_channels: Array
    out_channels: Array
    kernel: Array
    stride: Array
    height: Array
    width: Array
    out_height: Array
    out_width: Array

    @property
    def winograd_applies(self) -> NDArray[np.bool_]:
        """Rows whose window Winograd F(4x4, 3x3) serves: 3 x 3 at stride 1."""
        return np.asarray((self.kernel == 3) & (self.stride == 1))

    def implicit_gemm(self) -> gemm.GemmDims:
        """``m = B Ho Wo``, ``n = Cout``, ``k = Cin kh kw``."""
        return gemm.GemmDims(
            np.ones_like(self.batch),
            self.batch * self.out_height * self.out_width,
            self.out_channels,
            self.in_channels * self.kernel**2,
        )

    def winograd_tiles(self) -> Array:
        """F(4x4, 3x3) tiles over every image; partial tiles at the edges count whole."""
        tile = WINOGRAD_OUTPUT_TILE
        tiles: Array = self.batch * np.ceil(self.out_height / tile) * np.ceil(self.out_width / tile)
        return tiles

    def winograd_products(self) -> gemm.GemmDims:
        """The 36 GEMMs ``(T x Cin) @ (Cin x Cout)`` of the transformed domain."""
        tiles = self.winograd_tiles()
        return gemm.GemmDims(np.full_like(tiles, float(WINOGRAD_ELEMENTS)), tiles, self.out_channels, self.in_channels)


def conv_shape(
    batch: Array, in_channels: Array, out_channels: Array, kernel: Array, size: Array, stride: Array, padding: Array
) -> ConvShape:
    """A :class:`ConvShape` of square images (``size`` x ``size``) padded by ``padding``, as the
    kernel files give them."""
    columns = (batch, in_channels, out_channels, kernel, size, stride, padding)
    batch_, cin, cout, kernel_, size_, stride_, padding_ = (np.asarray(v, dtype=np.float64) for v in columns)
    out = gemm.conv_output_size(size_, kernel_, stride_, padding_)
    return ConvShape(batch_, cin, cout, kernel_, stride_, size_, size_, out, out)


CUDNN_TILES = ((128, 128), (128, 64), (128, 32))
"""CTA tiles (output pixels x output channels) of cuDNN's implicit-GEMM kernels in the measured data
(``scudnn_128x128``, ``128x64``, ``128x32``, whose grids are ``ceil(B Ho Wo / 128) x ceil(Cout /
tile)``); they do not split K."""


def cudnn_gemm_seconds(
    dims: gemm.GemmDims, device: KernelDevice, parameters: KernelParameters, bytes_per_element: float = 4.0
) -> Array:
    """An implicit GEMM on :data:`CUDNN_TILES`, without split-K, without its launch floor."""
    return gemm.best_choice(dims, device, parameters, bytes_per_element, CUDNN_TILES, (1,))[0]


def implicit_gemm_seconds(shape: ConvShape, device: KernelDevice, parameters: KernelParameters) -> Array:
    """The implicit GEMM on :data:`CUDNN_TILES`, without split-K, its launch floor included."""
    return parameters.conv_launch_s + cudnn_gemm_seconds(shape.implicit_gemm(), device, parameters)


def winograd_transform_bytes(shape: ConvShape, bytes_per_element: float = 4.0) -> tuple[Array, Array, Array]:
    """Bytes the input, filter and output transforms each move (read plus written)."""
    tiles, cin, cout = shape.winograd_tiles(), shape.in_channels, shape.out_channels
    elements = WINOGRAD_ELEMENTS
    inputs = shape.batch * cin * shape.height * shape.width + elements * tiles * cin
    filters = (9 + elements) * cin * cout
    outputs = elements * tiles * cout + shape.batch * cout * shape.out_height * shape.out_width
    return inputs * bytes_per_element, filters * bytes_per_element, outputs * bytes_per_element


WINOGRAD_KERNELS = 4
"""Kernels of one non-fused Winograd convolution: three transforms and the batched GEMM."""


def winograd_nonfused_parts(
    shape: ConvShape, device: KernelDevice, parameters: KernelParameters, bytes_per_element: float = 4.0
) -> tuple[Array, Array]:
    """Seconds of the 36 GEMMs and of the three transforms of F(4x4, 3x3), without launch floors."""
    slowed = replace(parameters, gemm_peak_fraction=parameters.gemm_peak_fraction * parameters.winograd_gemm_fraction)
    products = gemm.best_choice(shape.winograd_products(), device, slowed, bytes_per_element, gemm.TILES, (1,))[0]
    transforms = np.zeros_like(products)
    for moved in winograd_transform_bytes(shape, bytes_per_element):
        transforms = transforms + moved / achieved_bandwidth(moved, device, parameters)
    return products, transforms


def winograd_nonfused_seconds(
    shape: ConvShape, device: KernelDevice, parameters: KernelParameters, bytes_per_element: float = 4.0
) -> Array:
    """F(4x4, 3x3) as four kernels: the input and filter transforms, 36 GEMMs, the output transform;
    the call's floor and the three transforms' launch floors included."""
    products, transforms = winograd_nonfused_parts(shape, device, parameters, bytes_per_element)
    floors = parameters.conv_launch_s + (WINOGRAD_KERNELS - 1) * parameters.elementwise_launch_s
    seconds: Array = floors + products + transforms
    return seconds


def algorithm_seconds(shape: ConvShape, device: KernelDevice, parameters: KernelParameters) -> Array:
    """Seconds of each of :data:`ALGORITHMS` per row (``inf`` where one does not apply): shape ``(2, rows)``."""
    winograd = np.where(shape.winograd_applies, winograd_nonfused_seconds(shape, device, parameters), np.inf)
    return np.stack([implicit_gemm_seconds(shape, device, parameters), winograd])


def convolution_seconds(shape: ConvShape, device: KernelDevice, parameters: KernelParameters) -> Array:
    """The faster algorithm's time per row, as ``cudnn.benchmark`` picks it."""
    seconds: Array = algorithm_seconds(shape, device, parameters).min(axis=0)
    return seconds


def chosen_algorithm(shape: ConvShape, device: KernelDevice, parameters: KernelParameters) -> list[str]:
    """The name of the faster algorithm per row."""
    return [ALGORITHMS[index] for index in algorithm_seconds(shape, device, parameters).argmin(axis=0)]
