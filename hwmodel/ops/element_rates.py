"""Element functions timed by their measured rate (a CPU's transcendental functions).

A FLOP count prices ``sqrt`` as one FLOP and ``gelu`` as five (the MLPerf accounting), right for
FLOPs and wrong for time on a CPU: there a ``sqrt`` of 1 MiB of FP32 takes 4.4x a multiply and
a ``gelu`` 4.5x on one machine, ``tanh`` 25x on another, since each is a polynomial or an
iteration per element whose cost no FLOP formula knows. A chip whose calibration measured these
functions (``ChipSpec.element_rates``: elements per second of the aten op on cache-resident FP32,
``pytest_dojo.hostbench``) times each such op by its output elements at that rate.

An op's function is its aten name without namespace, overload, ``_foreach_`` prefix or in-place
suffix: ``aten._foreach_sqrt_.default`` is ``sqrt``, ``aten.gelu_backward.default`` is
``gelu_backward``. An op never runs faster than its FLOPs at the chip's vector peak (the plan
search's lower bound, :mod:`hwmodel.search.bound`, assumes so).

Not modelled: the functions' rates at other dtypes (BF16 ops are timed at the FP32 rate),
data-dependent speed (denormals, arguments outside the fast path's range).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from hwmodel.ops.arrays import workload_arrays
from hwmodel.spec.chip import ChipSpec
from hwmodel.step.workload import Workload

FloatArray = npt.NDArray[np.float64]

ELEMENT_FUNCTIONS = (
    "sqrt",
    "rsqrt",
    "exp",
    "log",
    "tanh",
    "sigmoid",
    "erf",
    "gelu",
    "gelu_backward",
    "silu",
    "silu_backward",
)
"""The element functions a host calibration measures (aten base names)."""


def element_function(op_name: str) -> str:
    """The element function of an aten op's name.

    >>> [element_function(name) for name in ("aten._foreach_sqrt_.default", "aten.gelu_backward.default", "aten.exp")]
    ['sqrt', 'gelu_backward', 'exp']
    """
    base = op_name.removeprefix("aten.")
    if "." in base:
        base = base.rsplit(".", 1)[0]
    base = base.removeprefix("_foreach_")
    return base.removesuffix("_") if base.endswith("_") and not base.endswith("__") else base


def _measured_rates(workload: Workload, chip: ChipSpec) -> FloatArray:
    """Per op, ``chip``'s measured rate of its element function (elements/s), 0 where none applies."""
    arrays = workload_arrays(workload)
    if not chip.element_rates:
        return np.zeros(len(arrays.flops))
    rates = dict(chip.element_rates)
    by_name = np.array([rates.get(element_function(name), 0.0) for name in arrays.op_names], dtype=np.float64)
    rate: FloatArray = np.where(arrays.is_float, by_name[arrays.op_name_index], 0.0)
    return rate


def element_timed(workload: Workload, chip: ChipSpec) -> npt.NDArray[np.bool_]:
    """Per op, True where ``chip``'s measured element rates time it (a floating-point op of a measured
    function): its compute takes no fitted efficiency."""
    return np.asarray(_measured_rates(workload, chip) > 0, dtype=np.bool_)


def element_timed_seconds(
    workload: Workload, chip: ChipSpec, output_elements: FloatArray, flops: FloatArray
) -> tuple[npt.NDArray[np.bool_], FloatArray]:
    """Per op, whether ``chip``'s measured element rates time it, and its seconds at that rate for
    ``output_elements`` (never under ``flops`` at the vector peak); 0 for the other ops."""
    rate = _measured_rates(workload, chip)
    timed = np.asarray(rate > 0, dtype=np.bool_)
    at_rate = output_elements / np.where(timed, rate, 1.0)
    seconds = np.where(timed, np.maximum(at_rate, flops / chip.vector_flops_per_s), 0.0)
    return timed, np.asarray(seconds, dtype=np.float64)
