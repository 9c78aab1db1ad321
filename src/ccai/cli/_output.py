"""Output helpers shared by the command modules: ``--json`` for scripts, rich for people."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from ccai._files import atomic_write
from ccai.errors import UsageError

__all__ = ["console", "err_console", "print_json", "read_input", "write_output"]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def print_json(obj: Any) -> None:
    """Print ``obj`` as indented JSON on stdout (no colour, no wrapping: scripts parse it)."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def read_input(path: Path, *, what: str) -> bytes:
    """Read a user-supplied file, turning OS errors into a one-line :class:`UsageError`."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{what} is a directory, expected a file: {path}") from None
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None


def write_output(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write an output file (``-o``) atomically with exactly ``mode`` (:func:`ccai._files.atomic_write`).

    A crash or a full disk never leaves a half-written output file behind, and a symlink at
    ``path`` is replaced, never written through.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data, mode=mode)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
