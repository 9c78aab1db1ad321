"""Certificate-chain and signature helpers shared by the TDX and SNP verifiers (no I/O).

Chains are walked link by link with ``verify_directly_issued_by`` because
``cryptography.x509.verification`` refuses RSA-PSS (AMD) and the Intel PCK profile lacks the SAN the
web-PKI profile demands. Each link also gets the checks a path validator would make: validity at
``now`` and, for issuers, ``BasicConstraints(ca=True)``.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

from ccai.errors import (
    CertificateExpired,
    CertificateRevoked,
    ChainError,
    CollateralUnavailable,
    SignatureError,
)

__all__ = [
    "check_crl",
    "check_validity",
    "cn_of",
    "same_cert",
    "verify_chain",
    "verify_ecdsa_raw",
    "verify_link",
]


def cn_of(cert: x509.Certificate) -> str:
    """The subject common name (empty when absent)."""
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def same_cert(a: x509.Certificate, b: x509.Certificate) -> bool:
    """Constant-time comparison of two certificates' DER encodings."""
    return hmac.compare_digest(a.public_bytes(Encoding.DER), b.public_bytes(Encoding.DER))


def check_validity(cert: x509.Certificate, now: datetime, *, step: str, index: int | str) -> None:
    """Raise :class:`CertificateExpired` unless ``notBefore <= now <= notAfter``."""
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise CertificateExpired(
            f"certificate {cn_of(cert)!r} is not valid at {now.isoformat()}",
            step=step,
            index=index,
            expected=f"{cert.not_valid_before_utc.isoformat()} .. {cert.not_valid_after_utc.isoformat()}",
            actual=now.isoformat(),
        )


def verify_link(child: x509.Certificate, issuer: x509.Certificate, *, step: str, index: int | str) -> None:
    """Check that ``issuer`` (a CA) directly signed ``child`` (ECDSA, RSA PKCS#1 or RSA-PSS).

    Raises:
        ChainError: names do not chain, the issuer is not a CA, or the signature is invalid.
    """
    try:
        constraints = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca = constraints.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise ChainError(f"issuer {cn_of(issuer)!r} is not a CA", step=step, index=index)
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise ChainError(
            f"{cn_of(child)!r} is not signed by {cn_of(issuer)!r}",
            step=step,
            index=index,
            expected=issuer.subject.rfc4514_string(),
            actual=f"{child.issuer.rfc4514_string()} ({type(exc).__name__})",
        ) from None


def verify_chain(
    chain: Sequence[x509.Certificate], anchor: x509.Certificate, now: datetime, *, step: str
) -> None:
    """Verify a leaf-first chain up to the pinned ``anchor``.

    The chain may end with a copy of the anchor (Intel's PCK chain does); any other top certificate
    must be directly issued by the anchor. Every certificate, the anchor included, must be valid at
    ``now``.

    Raises:
        ChainError: a broken link or a wrong root.
        CertificateExpired: a certificate outside its validity window.
    """
    certs = list(chain)
    if not certs:
        raise ChainError("empty certificate chain", step=step)
    if same_cert(certs[-1], anchor):
        certs.pop()
    elif certs[-1].subject == certs[-1].issuer:
        raise ChainError(
            "chain ends in a self-signed certificate that is not the pinned root",
            step=step,
            index=len(certs) - 1,
            expected=anchor.subject.rfc4514_string(),
            actual=certs[-1].subject.rfc4514_string(),
        )
    if not certs:
        raise ChainError("chain holds only the root", step=step)
    check_validity(anchor, now, step=step, index="root")
    for i, cert in enumerate(certs):
        check_validity(cert, now, step=step, index=i)
        verify_link(cert, certs[i + 1] if i + 1 < len(certs) else anchor, step=step, index=i)


def check_crl(
    crl: x509.CertificateRevocationList,
    issuer: x509.Certificate,
    now: datetime,
    revoked_candidates: Sequence[x509.Certificate],
    *,
    step: str,
    what: str,
) -> None:
    """Check a CRL's issuer, signature and window, then that no candidate is revoked by it.

    Raises:
        SignatureError: the CRL signature does not verify with ``issuer``.
        ChainError: the CRL is for another issuer.
        CollateralUnavailable: the CRL is outside its validity window at ``now``.
        CertificateRevoked: a candidate's serial is listed.
    """
    if crl.issuer != issuer.subject:
        raise ChainError(
            f"{what} is not issued by {cn_of(issuer)!r}",
            step=step,
            expected=issuer.subject.rfc4514_string(),
            actual=crl.issuer.rfc4514_string(),
        )
    public_key = issuer.public_key()
    if not crl.is_signature_valid(public_key):  # type: ignore[arg-type]
        raise SignatureError(f"{what} signature is invalid", step=step)
    next_update = crl.next_update_utc
    window_end = next_update.isoformat() if next_update else "-"
    if crl.last_update_utc > now or (next_update is not None and now > next_update):
        # A stale (or not yet valid) CRL says nothing about the evidence: fetch a fresh one.
        raise CollateralUnavailable(
            f"{what} is not valid at {now.isoformat()}; fetch fresh collateral",
            step=step,
            expected=f"{crl.last_update_utc.isoformat()} .. {window_end}",
            actual=now.isoformat(),
        )
    for cert in revoked_candidates:
        if cert.issuer == crl.issuer and crl.get_revoked_certificate_by_serial_number(cert.serial_number):
            raise CertificateRevoked(
                f"certificate {cn_of(cert)!r} is revoked by the {what}",
                step=step,
                actual=f"serial {cert.serial_number:x}",
            )


def verify_ecdsa_raw(
    public_key: ec.EllipticCurvePublicKey,
    r: int,
    s: int,
    data: bytes,
    hash_algorithm: hashes.HashAlgorithm,
    *,
    step: str,
    what: str,
) -> None:
    """Verify an ECDSA signature given as integers r, s.

    Raises:
        SignatureError: the signature does not verify.
    """
    try:
        public_key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hash_algorithm))
    except InvalidSignature:
        raise SignatureError(f"{what} does not verify", step=step) from None
