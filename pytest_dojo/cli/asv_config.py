"""A temporary copy of ``asv.conf.json`` with some keys replaced, for the ``asv-*`` subcommands.

``asv run`` and ``asv publish`` have no option for the results directory: they read it from the
configuration, so these commands point a copy at it. Relative paths of the copy (``repo``,
``benchmark_dir``, ``env_dir``) are made absolute against the original's folder, since the copy
lives elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path


@contextlib.contextmanager
def config_copy(source: Path, overrides: Mapping[str, str]) -> Iterator[Path]:
    """The path of a copy of ``source`` with ``overrides`` applied; deleted on exit."""
    from asv.util import load_json

    data = load_json(str(source), js_comments=True)
    root = source.resolve().parent
    data["repo"] = str((root / data.get("repo", ".")).resolve())
    for key in ("benchmark_dir", "env_dir"):
        if key in data:
            data[key] = str((root / data[key]).resolve())
    data.update(overrides)
    with tempfile.NamedTemporaryFile("w", suffix=".asv.conf.json", delete=False, encoding="utf-8") as handle:
        json.dump(data, handle)
    path = Path(handle.name)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
