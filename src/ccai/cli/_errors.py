"""The one place where ccai errors become exit codes and human messages.

=====  ====================================================================
code   meaning
=====  ====================================================================
0      success: evidence genuine and policy satisfied / command succeeded
1      evidence or policy failed (``EvidenceError``, ``VerificationError``,
       ``UnsealError``)
2      usage: bad arguments, unreadable input file (``UsageError``), or an
       optional extra the command needs is not installed
3      collateral unavailable: nothing is known about the evidence
       (``CollateralError``) — never reported as "evidence invalid"
4      local hardware or driver missing (``DeviceError``)
70     internal error (a bug in ccai); rerun with ``CCAI_DEBUG=1``
=====  ====================================================================
"""

from __future__ import annotations

import enum

from ccai.errors import (
    CollateralError,
    DeviceError,
    Error,
    EvidenceError,
    UnsealError,
    UsageError,
    VerificationError,
)

__all__ = ["EXTRAS", "ExitCode", "exit_code_for", "missing_extra"]

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
        return ExitCode.USAGE
    if isinstance(error, DeviceError):
        return ExitCode.DEVICE_UNAVAILABLE
    if isinstance(error, Error):
        return ExitCode.FAILED
    return ExitCode.INTERNAL
