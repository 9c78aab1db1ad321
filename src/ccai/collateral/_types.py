"""What the verifier consumes from the collateral layer, and the interface sources implement.

``verify/`` does no I/O: callers first gather a :class:`GpuCollateral` (RIM documents and OCSP
responses as raw bytes) from a :class:`CollateralSource` — the RIM service, a RIM directory, an
OCSP responder, an offline bundle or a cache — then pass it to the verifier with ``now``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from cryptography import x509

__all__ = ["CollateralSource", "GpuCollateral", "ocsp_key"]


@functools.lru_cache(maxsize=4096)
def ocsp_key(cert: x509.Certificate) -> str:
    """The key under which a certificate's OCSP response is stored: issuer DN + serial (hex).

    Remembered per certificate (hashed and compared by its DER), so a long-running verifier
    looking up the same chains' responses on every request formats each issuer DN once.
    """
    return f"{cert.issuer.rfc4514_string()}#{cert.serial_number:x}"


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuCollateral:
    """Collateral for GPU evidence, as raw signed documents (the verifier checks every signature).

    Attributes:
        rims: RIM id (e.g. ``NV_GPU_DRIVER_GH100_550.144.03``) → RIM XML bytes.
        ocsp: :func:`ocsp_key` of a certificate → DER OCSP response for it.
        ocsp_checked: False when revocation was deliberately not fetched (offline without a
            bundle); the verifier then reports revocation status as "not checked", never "good".
        ocsp_nonces: :func:`ocsp_key` → the nonce sent in the OCSP request, for the responses
            that were fetched fresh and echo it. Responses from a cache or a bundle have no
            entry: the verifier checks their validity window only (and may require a nonce).
    """

    rims: Mapping[str, bytes] = field(default_factory=dict)
    ocsp: Mapping[str, bytes] = field(default_factory=dict)
    ocsp_checked: bool = True
    ocsp_nonces: Mapping[str, bytes] = field(default_factory=dict)


@runtime_checkable
class CollateralSource(Protocol):
    """Somewhere collateral can be fetched from. Implementations raise ``CollateralUnavailable``."""

    def rim(self, rim_id: str) -> bytes:
        """The RIM XML for ``rim_id``."""
        ...

    def ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, *, nonce: bytes | None) -> bytes:
        """A DER OCSP response for ``cert`` issued by ``issuer``."""
        ...
