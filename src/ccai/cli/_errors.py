"""The one place where ccai errors become exit codes and human messages.

=====  ====================================================================
code   meaning
=====  ====================================================================
0      success: evidence genuine and policy satisfied / command succeeded
1      evidence or policy failed (``EvidenceError``, ``VerificationError``,
       ``UnsealError``)
2      usage: bad arguments, unreadable input file (``UsageError``)
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

__all__ = ["ExitCode", "exit_code_for"]


class ExitCode(enum.IntEnum):
    """Process exit codes of the ``ccai`` command."""

    OK = 0
    FAILED = 1
    USAGE = 2
    COLLATERAL_UNAVAILABLE = 3
    DEVICE_UNAVAILABLE = 4
    INTERNAL = 70


def exit_code_for(error: BaseException) -> ExitCode:
    """Map an exception to the exit code the CLI returns for it."""
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
