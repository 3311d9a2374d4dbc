"""Unit constants. Internally everything is SI: seconds, bytes, FLOPs, bytes/s, FLOP/s.

Datasheet units are converted once, where a preset is written, by multiplying with these.
GB means 10**9 bytes (as vendors state bandwidth), never 2**30; a capacity built in binary units
(a GPU's memory) is written GiB.

>>> 2 * TB_PER_S / GB_PER_S
2000.0
"""

from __future__ import annotations

MB = 1e6
GB = 1e9
TB = 1e12
GIB = float(2**30)

GB_PER_S = 1e9
TB_PER_S = 1e12
GBIT_PER_S = 1e9 / 8

GFLOP_PER_S = 1e9
TFLOP_PER_S = 1e12

NS = 1e-9
US = 1e-6

DTYPE_BYTES: dict[str, int] = {
    "float64": 8,
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "float8_e4m3fn": 1,
    "float8_e5m2": 1,
    "int64": 8,
    "int32": 4,
    "int16": 2,
    "int8": 1,
    "uint8": 1,
    "bool": 1,
    "complex64": 8,
}
"""Bytes per element of the dtypes a capture may record (torch names without the ``torch.`` prefix)."""

FLOAT_DTYPES = frozenset({"float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2"})
