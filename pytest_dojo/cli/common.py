"""What the subcommands share: exit codes, argument types, progress lines and the project root."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_USAGE = 2


def percent(text: str) -> float:
    """An argparse type: a percentage such as ``2``, ``0.5`` or ``2%``."""
    from pytest_dojo.plugin.options import parse_percent

    try:
        return parse_percent(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def whole_number(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return int(text)


def progress(message: str) -> None:
    """Progress goes to stderr, so tables on stdout stay clean."""
    print(message, file=sys.stderr, flush=True)


def error_line(command: str, message: object) -> None:
    """One ``command: message`` line on stderr, the way every subcommand reports bad input."""
    print(f"{command}: {message}", file=sys.stderr)


def project_root() -> Path:
    """The git checkout the command runs in (its top level), or the working directory outside one."""
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=False, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return Path.cwd()
    top = completed.stdout.strip()
    return Path(top) if completed.returncode == 0 and top else Path.cwd()


def text_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """A plain text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(columns[i]), *(len(row[i]) for row in rows)) for i in range(len(columns))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(cells)).rstrip()

    return [line(columns), line(["-" * w for w in widths]), *(line(row) for row in rows)]


def add_command(
    commands: Any, name: str, run: Callable[[argparse.Namespace], int], *, summary: str, doc: str | None
) -> argparse.ArgumentParser:
    """A subcommand's parser: ``summary`` in ``pytest-dojo --help``, the module's docstring ``doc``
    (kept as written) in its own ``--help``, and ``run`` as what it does."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=summary, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.set_defaults(run=run)
    return parser
