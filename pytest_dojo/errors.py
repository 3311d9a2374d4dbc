"""The plugin's exceptions.

User mistakes surface as one line: options become ``pytest.UsageError``, a step that cannot be
captured fails its test with :class:`CaptureError`'s message and no traceback.
"""

from __future__ import annotations

from pathlib import Path


class DojoError(Exception):
    """Base class of the plugin's errors; never raised directly."""


class CaptureError(DojoError):
    """A training step that cannot be captured (a data-dependent op, a model that raised...)."""


def read_text_file(path: str | Path, error: type[DojoError], kind: str = "") -> str:
    """The UTF-8 text of ``path``; a missing or unreadable file raises ``error`` with one line
    naming the file (``kind`` says which file it is meant to be, e.g. ``"thresholds"``)."""
    label = f"{kind} file" if kind else "file"
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: {label} not found") from None
    except (OSError, UnicodeDecodeError) as reason:
        raise error(f"{path}: cannot read{' ' + label if kind else ''}: {reason}") from None
