"""Views, reshapes and allocations: no kernel moves data for them.

``aten.view``, ``_unsafe_view``, ``reshape`` of a contiguous tensor, ``expand``, ``permute``,
``transpose``, ``t``, ``squeeze``/``unsqueeze``, ``as_strided``, ``alias``, ``detach`` and
``empty``/``empty_like``/``empty_strided`` change metadata or reserve memory; they cost no bytes and
no FLOPs. (A ``reshape`` that must copy is dispatched as ``clone``/``_unsafe_view`` and the copy is
costed as the elementwise kernel it is.)
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

ZERO_TRAFFIC_OPS = frozenset(
    {
        "view",
        "_unsafe_view",
        "reshape",
        "expand",
        "permute",
        "transpose",
        "t",
        "squeeze",
        "unsqueeze",
        "as_strided",
        "alias",
        "detach",
        "empty",
        "empty_like",
        "empty_strided",
        "new_empty",
    }
)
"""Operator names (without the ``aten.`` prefix or overload) that move no data."""


def is_zero_traffic(op_name: str) -> bool:
    """Whether ``op_name`` (``aten.view.default``, ``_unsafe_view`` ...) moves no data."""
    name = op_name.removeprefix("aten.").split(".")[0]
    return name in ZERO_TRAFFIC_OPS


def view_bytes(element_count: NDArray[np.float64]) -> NDArray[np.float64]:
    """Bytes a view or allocation moves: none, whatever its size."""
    return np.zeros_like(np.asarray(element_count, dtype=np.float64))


def view_seconds(element_count: NDArray[np.float64]) -> NDArray[np.float64]:
    """Time of a view or allocation on the accelerator: zero (it launches no kernel)."""
    return np.zeros_like(np.asarray(element_count, dtype=np.float64))
