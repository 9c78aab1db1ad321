"""The one place where ccai errors become exit codes and human messages.

=====  ====================================================================
code   meaning
=====  ====================================================================
0      success: evidence genuine and policy satisfied / command succeeded
1      evidence or policy failed (``EvidenceError``, ``VerificationError``,
       ``UnsealError``), or the encrypted-body protocol failed (``EhbpError``,
       except its ``InvalidInput``, a usage error)
2      usage: bad arguments, unreadable input file (``UsageError``), or an
       optional extra the command needs is not installed
3      collateral unavailable: nothing is known about the evidence
       (``CollateralError``) — never reported as "evidence invalid"
4      local hardware or driver missing (``DeviceError``)
70     internal error (a bug in ccai); rerun with ``CCAI_DEBUG=1``
=====  ====================================================================

With ``--json``, a failed command's one JSON document is :func:`error_document` (or, for the
verification commands, their steps document with the same ``result`` and ``error`` members).
"""

from __future__ import annotations

import enum
from typing import Any

from ccai.errors import (
    CollateralError,
    DeviceError,
    EhbpError,
    Error,
    EvidenceError,
    UnsealError,
    UsageError,
    VerificationError,
)

__all__ = ["EXTRAS", "ExitCode", "error_document", "error_object", "exit_code_for", "missing_extra"]

#: Top-level modules that only an optional extra of ccai installs (pyproject.toml), by extra.
EXTRAS: dict[str, str] = {
    **dict.fromkeys(
        ("fastapi", "uvicorn", "starlette", "sqlalchemy", "aiosqlite", "alembic", "prometheus_client"),
        "service",
    ),
    **dict.fromkeys(("pyhpke", "openai"), "gateway"),
    **dict.fromkeys(("torch", "transformers", "tokenizers", "safetensors", "gguf", "accelerate"), "torch"),
    "psycopg": "postgres",
    "matplotlib": "plot",
}


class ExitCode(enum.IntEnum):
    """Process exit codes of the ``ccai`` command."""

    OK = 0
    FAILED = 1
    USAGE = 2
    COLLATERAL_UNAVAILABLE = 3
    DEVICE_UNAVAILABLE = 4
    INTERNAL = 70


def missing_extra(error: BaseException) -> tuple[str, str] | None:
    """The missing module and the extra that installs it, when ``error`` is a missing optional module.

    Args:
        error: Any exception.

    Returns:
        ``(module, extra)``, or ``None`` when the error is something else.
    """
    if not isinstance(error, ModuleNotFoundError) or not error.name:
        return None
    module = error.name.partition(".")[0]
    extra = EXTRAS.get(module)
    return None if extra is None else (module, extra)


def exit_code_for(error: BaseException) -> ExitCode:
    """Map an exception to the exit code the CLI returns for it."""
    if missing_extra(error) is not None:
        return ExitCode.USAGE
    if isinstance(error, CollateralError):
        return ExitCode.COLLATERAL_UNAVAILABLE
    if isinstance(error, EvidenceError | VerificationError | UnsealError):
        return ExitCode.FAILED
    if isinstance(error, UsageError | OSError):
        return ExitCode.USAGE  # before EhbpError: its InvalidInput is a UsageError too
    if isinstance(error, EhbpError):
        return ExitCode.FAILED
    if isinstance(error, DeviceError):
        return ExitCode.DEVICE_UNAVAILABLE
    if isinstance(error, Error):
        return ExitCode.FAILED
    return ExitCode.INTERNAL


def error_object(
    error: BaseException, *, exit_code: int | None = None, message: str | None = None
) -> dict[str, Any]:
    """The ``error`` member of a ``--json`` document: what failed, as scripts read it.

    Args:
        error: The exception the command ended with.
        exit_code: The exit code, when it is not :func:`exit_code_for` ``error``.
        message: The message, when it is not the error's own.

    Returns:
        ``{"class", "message", "exit_code"}``, then those of ``step``, ``index``, ``expected``,
        ``actual`` and ``hint`` that the error carries (:meth:`ccai.errors.Error.context`).
    """
    context: dict[str, Any] = {}
    text = str(error)
    if isinstance(error, Error):
        context = error.context()
        context.pop("error")
        text = context.pop("message")
    return {
        "class": type(error).__name__,
        "message": text if message is None else message,
        "exit_code": int(exit_code_for(error) if exit_code is None else exit_code),
        **context,
    }


def error_document(
    error: BaseException, *, exit_code: int | None = None, message: str | None = None
) -> dict[str, Any]:
    """The one ``--json`` document of a command that failed before it printed its own.

    Returns:
        ``{"result": "error", "error": error_object(error)}``.
    """
    return {"result": "error", "error": error_object(error, exit_code=exit_code, message=message)}
