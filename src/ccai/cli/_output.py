"""Output helpers shared by the command modules: ``--json`` for scripts, rich for people.

The ``--json`` contract (README, "Exit codes"): when ``--json`` is on the command line, stdout
carries exactly one JSON document, whatever happens. Commands print theirs with :func:`print_json`,
which counts it; the entry point (``ccai.cli.__main__``) prints the error document only when the
command printed none, so a failed verification's steps document is never followed by a second one.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from ccai._files import atomic_write
from ccai.errors import UsageError

__all__ = [
    "console",
    "documents_printed",
    "err_console",
    "json_requested",
    "print_attestation",
    "print_json",
    "read_input",
    "reset_documents",
    "write_output",
]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

# How many JSON documents this run of the command printed on stdout (one process runs one
# command; the entry point resets it first, for callers that run several in one process).
_documents = 0


def json_requested(args: Sequence[str]) -> bool:
    """Whether the command line ``args`` asks for JSON output (``--json`` before any ``--``)."""
    for arg in args:
        if arg == "--":
            return False
        if arg == "--json":
            return True
    return False


def reset_documents() -> None:
    """Forget the documents printed so far (the start of a command)."""
    global _documents  # noqa: PLW0603 - the one piece of per-run state of the CLI
    _documents = 0


def documents_printed() -> int:
    """How many JSON documents :func:`print_json` printed since :func:`reset_documents`."""
    return _documents


def print_json(obj: Any) -> None:
    """Print ``obj`` as indented JSON on stdout (no colour, no wrapping: scripts parse it)."""
    global _documents  # noqa: PLW0603 - see reset_documents
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()
    _documents += 1


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


def print_attestation(rows: Sequence[tuple[str, str]]) -> None:
    """A verified gateway attestation's summary rows (``GatewayAttestation.summary()``) on stderr."""
    for label, value in rows:
        style = "bold yellow" if label == "SIMULATED" else "bold"
        err_console.print(f"[{style}]{label:<13}[/] {value}", highlight=False, soft_wrap=True)
