"""The one exception tree of ccai.

Every error ccai raises on purpose derives from :class:`Error`. The branches keep apart the
questions a caller must answer differently: *is the input bad*, *did a check fail*, *could we not
get what we needed to check*, *is the local hardware missing*, and *did the caller misuse the API*.
HTTP status codes and CLI exit codes are mapped from these classes at the edges only
(``ccai.cli._errors`` and the services' exception handlers), never inside library code.

::

    Error                               root; .diagnostics() gives a human, multi-line explanation
    ├── EvidenceError                   bad input from outside (evidence bytes, JSON, XML, files)
    │   ├── MalformedEvidence           short read, trailing bytes, wrong magic/length/encoding
    │   └── UnsupportedEvidence         well-formed but a version/type ccai does not handle
    ├── VerificationError               a check ran and failed: the evidence is not acceptable
    │   ├── ChainError                  certificate chain does not lead to the pinned root
    │   │   ├── CertificateExpired      a certificate (or RIM signer) is outside its validity window
    │   │   └── CertificateRevoked      OCSP/CRL says revoked
    │   ├── SignatureError              a signature over evidence, RIM, collateral or token is invalid
    │   ├── NonceMismatch               evidence is not bound to the verifier's nonce
    │   ├── BindingError                CPU report_data does not commit to this GPU evidence / keys
    │   ├── FwidMismatch                leaf-certificate FWID differs from the report's
    │   ├── RimMismatch                 RIM does not belong to this report (id, version, product)
    │   ├── MeasurementMismatch         a measurement differs from the reference values
    │   ├── TcbError                    platform TCB is not acceptable (status, advisories, minimum)
    │   ├── SimulatedEvidenceRejected   evidence from virtual hardware without allow_simulated=True
    │   ├── PolicyViolation             appraisal policy not satisfied
    │   └── TokenError                  an attestation token is invalid (signature, nonce, expiry)
    ├── CollateralError                 what we needed to check could not be obtained
    │   │                               (never reported as "evidence invalid")
    │   └── CollateralUnavailable       network error, missing from an offline bundle or cache
    ├── DeviceError                     local hardware / driver access
    │   ├── DriverNotFound              no NVIDIA driver / NVML library, no TEE interface
    │   └── DeviceNotSupported          the operation is impossible on this device or from a guest
    ├── UnsealError                     one opaque error for every failure to decrypt a sealed model
    ├── EhbpError                       the encrypted-body protocol (EHBP) failed; one subclass per
    │                                   EHBP error code in ccai.ehbp (KeyConfigMismatch, …), .code
    └── UsageError                      local misuse: bad arguments, bad configuration, bad state

Each error takes a one-line ``message`` and optional keyword context (``step``, ``index``,
``expected``, ``actual``, ``hint``) that :meth:`Error.diagnostics` renders for people.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BindingError",
    "CertificateExpired",
    "CertificateRevoked",
    "ChainError",
    "CollateralError",
    "CollateralUnavailable",
    "DeviceError",
    "DeviceNotSupported",
    "DriverNotFound",
    "EhbpError",
    "Error",
    "EvidenceError",
    "FwidMismatch",
    "MalformedEvidence",
    "MeasurementMismatch",
    "NonceMismatch",
    "PolicyViolation",
    "RimMismatch",
    "SignatureError",
    "SimulatedEvidenceRejected",
    "TcbError",
    "TokenError",
    "UnsealError",
    "UnsupportedEvidence",
    "UsageError",
    "VerificationError",
]


class Error(Exception):
    """Root of every error ccai raises on purpose.

    Args:
        message: One human sentence saying what went wrong.
        step: The verification step or operation that failed (for example ``"(3) report signature"``).
        index: A certificate position, measurement index or GPU index, where one applies.
        expected: The value that was required.
        actual: The value that was found.
        hint: What the user can do about it.

    Attributes:
        steps: For an error raised by a verifier (``ccai.verify.Verifier`` and the ``verify_*``
            functions), the per-step results of the checklist up to and including the step that
            failed (``ccai.verify.StepResult`` values), so a renderer can show which steps passed;
            empty otherwise.
    """

    def __init__(
        self,
        message: str,
        *,
        step: str | None = None,
        index: int | str | None = None,
        expected: Any = None,
        actual: Any = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.step = step
        self.index = index
        self.expected = expected
        self.actual = actual
        self.hint = hint
        self.steps: tuple[Any, ...] = ()

    def context(self) -> dict[str, Any]:
        """The structured context as a JSON-friendly dict (``None`` values omitted)."""
        out: dict[str, Any] = {"error": type(self).__name__, "message": self.message}
        for key in ("step", "index", "expected", "actual", "hint"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value if isinstance(value, int | str | bool | float) else str(value)
        return out

    def diagnostics(self) -> str:
        """A multi-line explanation for people: what failed, where, expected vs actual, what to do."""
        lines = [f"{type(self).__name__}: {self.message}"]
        if self.step is not None:
            lines.append(f"  step:     {self.step}")
        if self.index is not None:
            lines.append(f"  at:       {self.index}")
        if self.expected is not None:
            lines.append(f"  expected: {self.expected}")
        if self.actual is not None:
            lines.append(f"  actual:   {self.actual}")
        if self.hint is not None:
            lines.append(f"  hint:     {self.hint}")
        return "\n".join(lines)


# -- bad input from outside ------------------------------------------------------------------


class EvidenceError(Error):
    """Input from outside (evidence, collateral documents, files) cannot be used as given."""


class MalformedEvidence(EvidenceError):
    """Bytes or text are not in the expected format: short read, trailing data, bad encoding."""


class UnsupportedEvidence(EvidenceError):
    """Well-formed input of a version or type that ccai does not handle."""


# -- failed checks ---------------------------------------------------------------------------


class VerificationError(Error):
    """A verification step ran and the evidence failed it."""


class ChainError(VerificationError):
    """A certificate chain does not lead to the pinned trust anchor."""


class CertificateExpired(ChainError):
    """A certificate is not valid at the verification time."""


class CertificateRevoked(ChainError):
    """A certificate is revoked according to OCSP or a CRL."""


class SignatureError(VerificationError):
    """A signature (evidence, RIM, collateral or token) does not verify."""


class NonceMismatch(VerificationError):
    """The evidence is not bound to the verifier's nonce."""


class BindingError(VerificationError):
    """CPU evidence does not commit to this GPU evidence, these keys or this nonce."""


class FwidMismatch(VerificationError):
    """The firmware id in the attestation leaf certificate differs from the report's."""


class RimMismatch(VerificationError):
    """A reference integrity manifest does not belong to this report."""


class MeasurementMismatch(VerificationError):
    """One or more measurements differ from their reference values."""


class TcbError(VerificationError):
    """The platform's TCB level is not acceptable."""


class SimulatedEvidenceRejected(VerificationError):
    """Evidence from virtual hardware, presented without ``allow_simulated=True``."""


class PolicyViolation(VerificationError):
    """The appraisal policy is not satisfied."""


class TokenError(VerificationError):
    """An attestation token is invalid: signature, nonce, digest or expiry."""


# -- unavailable collateral ------------------------------------------------------------------


class CollateralError(Error):
    """Collateral needed for a check could not be obtained. This says nothing about the evidence."""


class CollateralUnavailable(CollateralError):
    """A RIM, OCSP response, TCB info, certificate or CRL is unreachable or absent offline."""


# -- local hardware --------------------------------------------------------------------------


class DeviceError(Error):
    """Local GPU or TEE access failed."""


class DriverNotFound(DeviceError):
    """No NVIDIA driver / NVML library, or no TEE interface, on this machine."""


class DeviceNotSupported(DeviceError):
    """The operation is not possible on this device, or not from inside a guest."""


# -- sealed models ---------------------------------------------------------------------------


class UnsealError(Error):
    """A sealed model could not be decrypted. Deliberately opaque: wrong key, tampering and
    truncation look the same, so the error reveals nothing an attacker could use."""

    def __init__(self, message: str = "sealed model could not be decrypted or authenticated") -> None:
        super().__init__(message)


# -- encrypted bodies ------------------------------------------------------------------------


class EhbpError(Error):
    """The Encrypted HTTP Body Protocol failed: a key configuration, an encapsulated key, a frame or a
    response nonce was refused, or the server asked for a fresh key. ``ccai.ehbp`` defines one
    subclass per EHBP error code; :attr:`code` is that code (``"AEAD_DECRYPT_FAILED"`` …) and the
    message reads ``CODE: detail``, as the protocol asks."""

    code: str = "EHBP_ERROR"

    def __init__(self, detail: str, **context: Any) -> None:
        super().__init__(f"{self.code}: {detail}", **context)
        self.detail = detail


# -- local misuse ----------------------------------------------------------------------------


class UsageError(Error):
    """The caller misused the API or gave bad arguments or configuration."""
