"""Captured steps kept across runs, in pytest's cache directory (``.pytest_cache/d/dojo-captures``).

A capture depends only on the model's code and configuration, its parameters' and inputs' shapes,
the loss, the optimizer, the capture's thread count and the torch version
(:func:`pytest_dojo.capture.keys.capture_key`), never on the chip, mesh or precision, so a step
captured in one run serves every later run until one of those changes. One file per (key,
per-replica batch): ``<key>-b<batch>.json.gz``, the workload's JSON compressed with gzip.

* Writes are atomic (a temporary file in the same directory, then ``os.replace``), so pytest-xdist
  workers sharing the directory never read half a file; two workers writing the same entry write
  the same bytes.
* An entry that cannot be read, decompressed or parsed, or that holds an older workload schema
  version, is treated as absent: the step is captured again and the entry rewritten.
* ``pytest --cache-clear`` empties the directory with the rest of pytest's cache; under
  ``-p no:cacheprovider`` there is no ``config.cache`` and only the run's own cache is used.

Not done: entries whose key no longer occurs are not pruned (``--cache-clear`` removes them).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import tempfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

    from hwmodel import Workload

DIRECTORY_NAME = "dojo-captures"
SUFFIX = ".json.gz"
_ENTRY = re.compile(r"^(?P<key>[0-9a-f]{64})-b(?P<batch>[1-9][0-9]*)\.json\.gz$")


class CaptureCache:
    """Workloads on disk in ``directory``, by capture key and per-replica batch size."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @classmethod
    def for_config(cls, config: pytest.Config) -> CaptureCache | None:
        """The cache in pytest's cache directory; None under ``-p no:cacheprovider`` or where the
        directory cannot be made (the run then captures as if nothing were stored)."""
        cache = getattr(config, "cache", None)
        if cache is None:
            return None
        try:
            return cls(cache.mkdir(DIRECTORY_NAME))
        except OSError:
            return None

    def path(self, key: str, batch_size: int) -> Path:
        """Where the entry of ``key`` at ``batch_size`` samples lives."""
        return self.directory / f"{key}-b{batch_size}{SUFFIX}"

    def load(self, key: str, batch_size: int) -> Workload | None:
        """The stored workload, or None where there is none or it cannot be used."""
        from hwmodel import HwModelError, Workload

        try:
            text = gzip.decompress(self.path(key, batch_size).read_bytes()).decode("utf-8")
            workload = Workload.from_json(text)
        except (OSError, EOFError, zlib.error, ValueError, TypeError, KeyError, AttributeError, HwModelError):
            return None
        return workload if workload.batch_size == batch_size else None

    def batch_sizes(self, key: str) -> list[int]:
        """Batch sizes stored for ``key``, smallest first."""
        try:
            names = [path.name for path in self.directory.glob(f"{key}-b*{SUFFIX}")]
        except OSError:
            return []
        matches = (_ENTRY.match(name) for name in names)
        return sorted(int(match["batch"]) for match in matches if match is not None and match["key"] == key)

    def store(self, key: str, workload: Workload) -> bool:
        """Write ``workload`` atomically under ``key``; False where it could not be written (the run
        goes on: a cache that cannot be written only makes the next run capture again)."""
        data = gzip.compress(workload.to_json().encode("utf-8"), compresslevel=6, mtime=0)
        target = self.path(key, workload.batch_size)
        temporary = None
        try:
            with tempfile.NamedTemporaryFile(dir=self.directory, prefix=f".{target.name}.", delete=False) as file:
                temporary = Path(file.name)
                file.write(data)
            os.replace(temporary, target)
        except OSError:
            if temporary is not None:
                with contextlib.suppress(OSError):
                    temporary.unlink()
            return False
        return True
