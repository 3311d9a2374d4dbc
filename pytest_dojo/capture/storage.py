"""Storages seen during a capture: what the hardware model needs for dependencies, liveness and memory.

Tensors that share a storage (a view and its base) are one storage here, so an op that writes
through a view is a dependency of every later reader of the base. Sizes are in bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from hwmodel import TensorRecord


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``."""
    return str(dtype).removeprefix("torch.")


@dataclass
class Storage:
    """One storage: its size, the op that first produced it and the last ops that touched it.

    ``kind`` is ``parameter``, ``buffer``, ``input``, ``optimizer_state``, ``gradient`` or
    ``activation``; op indices are -1 for "none" (a parameter exists before the first op).
    """

    tensor_id: int
    nbytes: int
    dtype: str
    kind: str
    first_op: int
    last_op: int = -1
    last_write_op: int = -1

    def record(self) -> TensorRecord:
        return TensorRecord(
            tensor_id=self.tensor_id,
            nbytes=self.nbytes,
            dtype=self.dtype,
            kind=self.kind,
            first_op=self.first_op,
            last_op=self.last_op,
        )


@dataclass
class StorageTable:
    """Every storage of a capture, keyed by torch's storage identity, numbered in order of first sight."""

    storages: dict[int, Storage] = field(default_factory=dict)
    keep_alive: list[Any] = field(default_factory=list)
    """The storages themselves: a freed storage's identity could be reused by a new one."""

    def of(self, tensor: torch.Tensor, kind: str, op_index: int) -> Storage:
        """The storage of ``tensor``, registered as ``kind`` on first sight at op ``op_index``."""
        storage = tensor.untyped_storage()
        key = storage._cdata
        entry = self.storages.get(key)
        if entry is None:
            entry = Storage(
                tensor_id=len(self.storages),
                nbytes=int(storage.nbytes()),
                dtype=dtype_name(tensor.dtype),
                kind=kind,
                first_op=op_index if kind == "activation" else -1,
            )
            self.storages[key] = entry
            self.keep_alive.append(storage)
        return entry

    def has(self, tensor: torch.Tensor) -> bool:
        """Whether the storage of ``tensor`` has been seen."""
        return tensor.untyped_storage()._cdata in self.storages

    def records(self) -> tuple[TensorRecord, ...]:
        return tuple(storage.record() for storage in self.storages.values())
