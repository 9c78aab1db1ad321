"""One exception class per EHBP error code (SPEC §5.5), all under :class:`ccai.errors.EhbpError`.

The codes are for the process that raised them; they never travel on the wire (a server answers
400, 422 with the key-configuration problem, or 500, and never says which check failed).
"""

from __future__ import annotations

from typing import Any

from ccai.errors import EhbpError, UsageError

__all__ = [
    "AeadDecryptFailed",
    "ChunkTooLarge",
    "DuplicateResponseNonce",
    "FramingTruncated",
    "HpkeSetupFailed",
    "InvalidEncapsulatedKey",
    "InvalidInput",
    "InvalidKeyConfig",
    "InvalidResponseNonce",
    "KeyConfigMismatch",
    "MissingResponseNonce",
    "SequenceOverflow",
    "UnsupportedSuite",
]


class InvalidKeyConfig(EhbpError):
    """A key configuration is unparseable, or key discovery answered non-2xx or another media type."""

    code = "INVALID_KEY_CONFIG"


class UnsupportedSuite(EhbpError):
    """A key configuration names a KEM, KDF or AEAD other than X25519 / HKDF-SHA256 / AES-256-GCM."""

    code = "UNSUPPORTED_SUITE"


class InvalidEncapsulatedKey(EhbpError):
    """``Ehbp-Encapsulated-Key`` is not hex, not 32 bytes, repeated, or absent where required."""

    code = "INVALID_ENCAPSULATED_KEY"


class HpkeSetupFailed(EhbpError):
    """HPKE setup, seal, export or the response key derivation failed."""

    code = "HPKE_SETUP_FAILED"


class MissingResponseNonce(EhbpError):
    """A 2xx answer to an encrypted request carries no ``Ehbp-Response-Nonce``: its body would be
    unauthenticated plaintext, so it is refused."""

    code = "MISSING_RESPONSE_NONCE"


class InvalidResponseNonce(EhbpError):
    """``Ehbp-Response-Nonce`` is not hex or not 32 bytes."""

    code = "INVALID_RESPONSE_NONCE"


class DuplicateResponseNonce(EhbpError):
    """More than one ``Ehbp-Response-Nonce`` header."""

    code = "DUPLICATE_RESPONSE_NONCE"


class KeyConfigMismatch(EhbpError):
    """The server answered the 422 key-configuration problem: the request was encrypted to a key it
    no longer holds (rotation, or another server). The request was rejected before the application
    saw it, so sending it again to a fresh, verified key is safe.

    Attributes:
        title: The problem's ``title`` as the server sent it (unauthenticated text).
    """

    code = "KEY_CONFIG_MISMATCH"

    def __init__(
        self, detail: str = "the server does not hold the key this request was encrypted to", **context: Any
    ) -> None:
        super().__init__(detail, **context)
        self.title = detail


class FramingTruncated(EhbpError):
    """A body ended inside a length prefix or inside a frame."""

    code = "FRAMING_TRUNCATED"


class ChunkTooLarge(EhbpError):
    """A frame's length prefix exceeds the receiver's maximum; refused before anything is allocated."""

    code = "CHUNK_TOO_LARGE"


class AeadDecryptFailed(EhbpError):
    """A frame did not authenticate (wrong key, tampering, reordering or a frame from another
    message). Deliberately one error for all of them."""

    code = "AEAD_DECRYPT_FAILED"


class SequenceOverflow(EhbpError):
    """The frame sequence number is exhausted (2**64 frames in one body)."""

    code = "SEQUENCE_OVERFLOW"


class InvalidInput(EhbpError, UsageError):
    """Caller misuse: a reserved EHBP header set by hand, a malformed key or nonce given as input."""

    code = "INVALID_INPUT"
