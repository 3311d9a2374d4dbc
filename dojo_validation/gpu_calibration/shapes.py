"""Which kernels a calibration measures: a seeded sample of the shipped measurements' shapes.

Every op of the shipped files (``dojo_validation/data/gpu_kernels``) keeps its own shapes: per op, up
to ``train`` distinct train shapes and ``test`` distinct test shapes (the fit uses the first, the
validation table scores the second). Convolutions have train shapes only, so a seeded third of the
sampled convolution shapes is held out as test shapes. The same seed gives the same shapes on every
machine, so two users' files compare row for row.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from dojo_validation.kernels import data

TRAIN = "train-shapes"
TEST = "test-shapes"


@dataclass(frozen=True, kw_only=True)
class KernelShape:
    """One kernel to time: its ``OPName``, its shape columns (as the data names them) and its split."""

    op: str
    shape: tuple[tuple[str, int], ...]
    split: str

    def columns(self) -> dict[str, int]:
        return dict(self.shape)


def _distinct(rows: data.KernelRows, op: str, split: str) -> list[tuple[tuple[str, int], ...]]:
    index = np.flatnonzero((rows.op == op) & (rows.split == split))
    names = sorted(rows.shapes)
    seen = {tuple((name, int(rows.shapes[name][i])) for name in names) for i in index}
    return sorted(seen)


def _sample(
    items: list[tuple[tuple[str, int], ...]], count: int, rng: np.random.Generator
) -> list[tuple[tuple[str, int], ...]]:
    if len(items) <= count:
        return items
    return [items[i] for i in sorted(rng.choice(len(items), count, replace=False))]


def plan(
    *,
    train: int = 60,
    test: int = 20,
    seed: int = 0,
    ops: tuple[str, ...] | None = None,
    rows: Mapping[str, data.KernelRows] | None = None,
) -> list[KernelShape]:
    """The kernels to time, op by op in the order of the shipped files."""
    loaded = rows if rows is not None else data.load_all()
    rng = np.random.default_rng(seed)
    chosen: list[KernelShape] = []
    for op in ops or tuple(data.TRAIN_FILES):
        family_rows = loaded[data.family(op)]
        if op == "conv":
            shapes = _sample(_distinct(family_rows, op, TRAIN), train + test, rng)
            held = set(rng.choice(len(shapes), len(shapes) // 3, replace=False).tolist()) if shapes else set()
            chosen += [KernelShape(op=op, shape=s, split=TEST if i in held else TRAIN) for i, s in enumerate(shapes)]
            continue
        chosen += [
            KernelShape(op=op, shape=s, split=TRAIN) for s in _sample(_distinct(family_rows, op, TRAIN), train, rng)
        ]
        chosen += [
            KernelShape(op=op, shape=s, split=TEST) for s in _sample(_distinct(family_rows, op, TEST), test, rng)
        ]
    return chosen


def by_op(shapes: list[KernelShape]) -> Iterator[tuple[str, list[KernelShape]]]:
    """``shapes`` grouped by op, in order."""
    ops: dict[str, list[KernelShape]] = {}
    for item in shapes:
        ops.setdefault(item.op, []).append(item)
    yield from ops.items()
