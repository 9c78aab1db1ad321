"""Pure validation of an OCSP response (RFC 6960) for one certificate: no I/O, ``now`` injected.

The collateral layer fetches DER responses; the verifier calls :func:`check_ocsp` for each
certificate of a chain it has already validated. The checks, in order:

(1) the response parses and its ``responseStatus`` is ``successful``;
(2) it holds a SingleResponse whose CertID (issuer name hash, issuer key hash, serial) matches the
    certificate and its issuer, computed with the hash the response uses (NVIDIA's Python verifier
    asks with SHA-384, NVAT with SHA-1; both are accepted);
(3) the responder is authorised: the issuer itself, a delegated responder certificate issued
    directly by the issuer with the ``id-kp-OCSPSigning`` extended key usage (RFC 6960 §4.2.2.2),
    or a certificate with that usage which chains to one of ``trusted_roots`` (the locally
    configured responder of §4.2.2.2 — how NVIDIA's own verifier accepts its responder);
(4) the response signature verifies with the responder's key;
(5) ``thisUpdate`` is not in the future and ``nextUpdate`` not in the past (with a small clock skew);
(6) when a request nonce is given, the response echoes it (constant-time compare);
(7) the certificate status: ``good`` passes; ``revoked`` raises :class:`CertificateRevoked`
    unless its reason is explicitly allowed; ``unknown`` raises :class:`ChainError` unless allowed.

A response that cannot be used (malformed: not fully decodable by
:func:`ccai.evidence.load_ocsp_response`, embedded certificates included; unsuccessful; for
another certificate; stale; or with a foreign nonce) raises :class:`CollateralError`: it says
nothing about the evidence. A response whose signature or responder is wrong raises :class:`SignatureError`.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import hmac
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from ccai.collateral import GpuCollateral, ocsp_key
from ccai.errors import CertificateRevoked, ChainError, CollateralError, CollateralUnavailable, SignatureError
from ccai.evidence import load_ocsp_response
from ccai.verify._lru import LruCache

__all__ = [
    "DEFAULT_CLOCK_SKEW",
    "DEFAULT_MAX_AGE_WITHOUT_NEXT_UPDATE",
    "OcspCache",
    "OcspCertStatus",
    "OcspStatus",
    "check_chain_ocsp",
    "check_ocsp",
    "describe_certificate",
]

#: Tolerance for clock differences between the responder and the verifier.
DEFAULT_CLOCK_SKEW = timedelta(minutes=5)
#: How long a response without ``nextUpdate`` is taken as current (NVAT uses a default TTL too).
DEFAULT_MAX_AGE_WITHOUT_NEXT_UPDATE = timedelta(hours=1)
_MAX_RESPONDER_CHAIN = 5
_STEP = "OCSP"


class OcspCertStatus(enum.StrEnum):
    """The certificate status an OCSP response states (claims-3.0 ``x-nvidia-cert-ocsp-status``)."""

    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class OcspStatus:
    """The outcome of a successful :func:`check_ocsp` call.

    Attributes:
        status: good, or revoked/unknown when the caller allowed it.
        revocation_reason: RFC 5280 reason name (``certificateHold``, ``keyCompromise``, …) when revoked.
        revocation_time: When the certificate was revoked.
        this_update: The response's ``thisUpdate``.
        next_update: The response's ``nextUpdate`` (None when the responder gives none).
        produced_at: The response's ``producedAt``.
        nonce_checked: True when a request nonce was given and the response echoed it.
        responder: Subject of the certificate that signed the response.
        serial_number: Serial of the certificate the status is about.
    """

    status: OcspCertStatus
    revocation_reason: str | None
    revocation_time: datetime | None
    this_update: datetime
    next_update: datetime | None
    produced_at: datetime
    nonce_checked: bool
    responder: str
    serial_number: int


@dataclass(frozen=True, slots=True)
class _Authenticated:
    """What steps (1)–(4) established about one response: it parses, it is successful, it covers
    the certificate, and an authorised responder signed it. ``window`` is the validity period of
    a delegated responder certificate (re-checked against ``now`` on every use), None when the
    certificate's issuer signed the response itself. The response's times and the responder's
    name are read once here: a warm verifier reuses them on every request."""

    response: ocsp.OCSPResponse
    single: ocsp.OCSPSingleResponse
    responder: x509.Certificate
    window: tuple[datetime, datetime] | None
    this_update: datetime
    next_update: datetime | None
    produced_at: datetime
    responder_name: str


#: Responses whose time-independent checks passed, keyed by the SHA-256 of the exact response
#: bytes, the certificate, its issuer and the trusted responder roots.
OcspCache = LruCache[
    tuple[bytes, x509.Certificate, x509.Certificate, tuple[x509.Certificate, ...]], _Authenticated
]


def _cache_key(
    response_der: bytes,
    cert: x509.Certificate,
    issuer: x509.Certificate,
    trusted_roots: Sequence[x509.Certificate],
) -> tuple[bytes, x509.Certificate, x509.Certificate, tuple[x509.Certificate, ...]]:
    # Certificates compare and hash by their DER encoding: the key is as exact as fingerprints,
    # without hashing every certificate on every lookup.
    return (hashlib.sha256(response_der).digest(), cert, issuer, tuple(trusted_roots))


def _authenticate(
    response_der: bytes,
    cert: x509.Certificate,
    issuer: x509.Certificate,
    *,
    now: datetime,
    trusted_roots: Sequence[x509.Certificate],
    subject: str,
) -> _Authenticated:
    """Steps (1)–(4): parse, responseStatus, the SingleResponse for ``cert``, the responder and
    its signature."""
    # (1) parse and responseStatus
    # Everything the steps below read decodes here, or the response is refused as collateral.
    response = load_ocsp_response(response_der, what=f"OCSP response for {subject}", step=_STEP)
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        raise CollateralError(
            f"OCSP responder gave no status for {subject}",
            step=_STEP,
            expected="successful",
            actual=response.response_status.name.lower(),
        )

    # (2) the SingleResponse for this certificate
    single = _matching_single_response(response.responses, cert, issuer)
    if single is None:
        raise CollateralError(
            f"OCSP response does not cover {subject} (CertID mismatch: another certificate or issuer)",
            step=_STEP,
        )

    # (3) authorised responder, (4) its signature
    responder = _authorised_responder(response, issuer, now=now, trusted_roots=trusted_roots)
    _verify_response_signature(response, responder)
    window = None if responder is issuer else (responder.not_valid_before_utc, responder.not_valid_after_utc)
    return _Authenticated(
        response=response,
        single=single,
        responder=responder,
        window=window,
        this_update=single.this_update_utc,
        next_update=single.next_update_utc,
        produced_at=response.produced_at_utc,
        responder_name=responder.subject.rfc4514_string(),
    )


@functools.lru_cache(maxsize=4096)
def describe_certificate(cert: x509.Certificate) -> str:
    """A short human name for a certificate: its subject CN (or full subject) and serial.

    Remembered per certificate: every OCSP check names its subject for its error messages.
    """
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    name = str(cns[0].value) if cns else cert.subject.rfc4514_string()
    return f"{name!r} (serial {cert.serial_number:x})"


def check_ocsp(
    response_der: bytes,
    cert: x509.Certificate,
    issuer: x509.Certificate,
    *,
    now: datetime,
    nonce: bytes | None = None,
    trusted_roots: Sequence[x509.Certificate] = (),
    allow_revocation_reasons: Collection[str] = (),
    allow_unknown: bool = False,
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
    max_age_without_next_update: timedelta = DEFAULT_MAX_AGE_WITHOUT_NEXT_UPDATE,
    cache: OcspCache | None = None,
) -> OcspStatus:
    """Validate a DER OCSP response for ``cert`` (issued by ``issuer``) at time ``now``.

    Args:
        response_der: The DER-encoded OCSPResponse.
        cert: The certificate whose status is asked.
        issuer: Its issuer (already validated as part of the chain).
        now: The verification time (timezone-aware).
        nonce: The nonce sent in the request; when given, the response must echo it.
        trusted_roots: Roots under which a locally trusted responder certificate may chain.
        allow_revocation_reasons: Revocation reasons to accept instead of failing
            (e.g. ``{"certificateHold"}``, NVIDIA's ``--allow_hold_cert``). Empty by default.
        allow_unknown: Return ``unknown`` instead of failing.
        clock_skew: Tolerance for clock differences.
        max_age_without_next_update: How old a response without ``nextUpdate`` may be.
        cache: Where responses that passed steps (1)–(4) are remembered, keyed by their exact
            bytes, ``cert``, ``issuer`` and ``trusted_roots`` (a :class:`~ccai.verify.Verifier`
            owns one). On a hit only the time-dependent checks run: a delegated responder's
            validity, the response's window, the nonce, and the status.

    Returns:
        The status with its times and revocation reason.

    Raises:
        CollateralError: the response is malformed, unsuccessful, about another certificate,
            outside its validity window, or does not echo ``nonce``.
        SignatureError: the responder is not authorised or its signature does not verify.
        CertificateRevoked: the certificate is revoked for a reason not allowed.
        ChainError: the responder does not know the certificate and ``allow_unknown`` is false.
    """
    subject = describe_certificate(cert)
    # (1)–(4) depend only on the bytes, the certificates and the roots (and, for a delegated
    # responder, its validity period, re-checked here against ``now``): a cache hit skips them.
    key = _cache_key(response_der, cert, issuer, trusted_roots) if cache is not None else None
    hit = cache.get(key) if cache is not None and key is not None else None
    if hit is not None and hit.window is not None and not hit.window[0] <= now <= hit.window[1]:
        hit = None  # the full check below says why the responder is not acceptable now
    if hit is None:
        hit = _authenticate(response_der, cert, issuer, now=now, trusted_roots=trusted_roots, subject=subject)
        # A responder that is neither the issuer nor issued by it was accepted through a local
        # root, whose intermediates' validity is not captured in ``window``: not cached.
        if (
            cache is not None
            and key is not None
            and (hit.window is None or _issued_by(hit.responder, issuer))
        ):
            cache.put(key, hit)
    response, single = hit.response, hit.single

    # (5) validity window of the response
    this_update, next_update = hit.this_update, hit.next_update
    if this_update > now + clock_skew:
        raise CollateralError(
            f"OCSP response for {subject} is not yet valid",
            step=_STEP,
            expected=f"thisUpdate <= {now.isoformat()}",
            actual=this_update.isoformat(),
        )
    expires = next_update if next_update is not None else this_update + max_age_without_next_update
    if now - clock_skew > expires:
        raise CollateralError(
            f"OCSP response for {subject} is stale",
            step=_STEP,
            expected=f"nextUpdate >= {now.isoformat()}",
            actual=expires.isoformat(),
            hint="fetch a fresh response (or refresh the offline collateral bundle)",
        )

    # (6) nonce
    nonce_checked = False
    if nonce is not None:
        echoed = _response_nonce(response)
        if echoed is None or not hmac.compare_digest(echoed, nonce):
            raise CollateralError(
                f"OCSP response for {subject} does not echo the request nonce (replayed or cached response)",
                step=_STEP,
                expected=nonce.hex(),
                actual=echoed.hex() if echoed is not None else "no nonce",
            )
        nonce_checked = True

    # (7) certificate status
    reason: str | None = None
    revoked_at: datetime | None = None
    if single.certificate_status is ocsp.OCSPCertStatus.GOOD:
        status = OcspCertStatus.GOOD
    elif single.certificate_status is ocsp.OCSPCertStatus.REVOKED:
        status = OcspCertStatus.REVOKED
        flag = single.revocation_reason
        reason = flag.value if flag is not None else x509.ReasonFlags.unspecified.value
        revoked_at = single.revocation_time_utc
        if reason not in allow_revocation_reasons:
            raise CertificateRevoked(
                f"certificate {subject} is revoked ({reason})",
                step=_STEP,
                expected="good",
                actual=f"revoked: {reason}",
                hint=f"revoked at {revoked_at.isoformat()}" if revoked_at else None,
            )
    else:
        status = OcspCertStatus.UNKNOWN
        if not allow_unknown:
            raise ChainError(
                f"OCSP responder does not know certificate {subject}",
                step=_STEP,
                expected="good",
                actual="unknown",
            )
    return OcspStatus(
        status=status,
        revocation_reason=reason,
        revocation_time=revoked_at,
        this_update=this_update,
        next_update=next_update,
        produced_at=hit.produced_at,
        nonce_checked=nonce_checked,
        responder=hit.responder_name,
        serial_number=cert.serial_number,
    )


def _matching_single_response(
    responses: Iterable[ocsp.OCSPSingleResponse], cert: x509.Certificate, issuer: x509.Certificate
) -> ocsp.OCSPSingleResponse | None:
    """The SingleResponse whose CertID names ``cert`` under ``issuer`` (any supported hash)."""
    for single in responses:
        if single.serial_number != cert.serial_number:
            continue
        algorithm = single.hash_algorithm
        if not isinstance(algorithm, hashes.SHA1 | hashes.SHA256 | hashes.SHA384 | hashes.SHA512):
            continue
        # cryptography computes the CertID hashes exactly as RFC 6960 §4.1.1 defines them
        # (hash of the issuer's DER name, hash of its subjectPublicKey BIT STRING value).
        expected = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm).build()
        if hmac.compare_digest(single.issuer_name_hash, expected.issuer_name_hash) and hmac.compare_digest(
            single.issuer_key_hash, expected.issuer_key_hash
        ):
            return single
    return None


def _responder_matches(response: ocsp.OCSPResponse, candidate: x509.Certificate) -> bool:
    """Whether ``candidate`` is the certificate the ResponderID names (byName or byKey)."""
    if response.responder_name is not None:
        return candidate.subject == response.responder_name
    key_hash = response.responder_key_hash
    if key_hash is None:
        return False
    # byKey is the SHA-1 of the responder's subjectPublicKey bits, which is exactly RFC 5280's
    # method (1) key identifier.
    digest = x509.SubjectKeyIdentifier.from_public_key(candidate.public_key()).digest
    return hmac.compare_digest(digest, key_hash)


def _within(cert: x509.Certificate, now: datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _has_ocsp_signing(cert: x509.Certificate) -> bool:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.OCSP_SIGNING in eku


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _authorised_responder(
    response: ocsp.OCSPResponse,
    issuer: x509.Certificate,
    *,
    now: datetime,
    trusted_roots: Sequence[x509.Certificate],
) -> x509.Certificate:
    """Find the certificate that signed the response and check it may speak for ``issuer``."""
    if _responder_matches(response, issuer):
        return issuer
    supplied = list(response.certificates)
    for candidate in supplied:
        if not _responder_matches(response, candidate):
            continue
        if not _has_ocsp_signing(candidate):
            raise SignatureError(
                "OCSP responder certificate lacks the id-kp-OCSPSigning extended key usage",
                step=_STEP,
                actual=candidate.subject.rfc4514_string(),
            )
        if not _within(candidate, now):
            raise SignatureError(
                "OCSP responder certificate is outside its validity period",
                step=_STEP,
                actual=f"until {candidate.not_valid_after_utc.isoformat()}",
            )
        # RFC 6960 §4.2.2.2: a delegated responder is issued directly by the CA that issued the cert.
        if _issued_by(candidate, issuer):
            return candidate
        # Locally configured responder: chains to a trusted root through supplied certificates.
        if trusted_roots and _chains_to_root(candidate, [*supplied, issuer], trusted_roots, now=now):
            return candidate
        raise SignatureError(
            "OCSP responder certificate is not issued by the certificate's issuer nor by a trusted root",
            step=_STEP,
            expected=issuer.subject.rfc4514_string(),
            actual=candidate.issuer.rfc4514_string(),
        )
    raise SignatureError(
        "OCSP response is signed by an unknown responder (not the issuer, no delegated certificate)",
        step=_STEP,
        expected=issuer.subject.rfc4514_string(),
        actual=response.responder_name.rfc4514_string()
        if response.responder_name is not None
        else (response.responder_key_hash or b"").hex(),
    )


def _chains_to_root(
    cert: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    *,
    now: datetime,
) -> bool:
    current = cert
    for _ in range(_MAX_RESPONDER_CHAIN):
        for root in roots:
            if current.issuer == root.subject and _issued_by(current, root):
                return True
        parent = next(
            (
                c
                for c in intermediates
                if c.subject == current.issuer and c != current and _issued_by(current, c)
            ),
            None,
        )
        if parent is None or not _within(parent, now):
            return False
        current = parent
    return False


def _verify_response_signature(response: ocsp.OCSPResponse, responder: x509.Certificate) -> None:
    key = responder.public_key()
    data = response.tbs_response_bytes
    signature = response.signature
    algorithm = response.signature_hash_algorithm
    try:
        if isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None:
            key.verify(signature, data, ec.ECDSA(algorithm))
        elif isinstance(key, rsa.RSAPublicKey) and algorithm is not None:
            key.verify(signature, data, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(signature, data)
        else:
            raise SignatureError("OCSP response uses an unsupported signature algorithm", step=_STEP)
    except InvalidSignature:
        raise SignatureError(
            "OCSP response signature does not verify with the responder's key",
            step=_STEP,
            actual=responder.subject.rfc4514_string(),
        ) from None


def _response_nonce(response: ocsp.OCSPResponse) -> bytes | None:
    try:
        return response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except x509.ExtensionNotFound:
        return None


def check_chain_ocsp(
    chain: Sequence[x509.Certificate],
    collateral: GpuCollateral,
    *,
    now: datetime,
    skip_leaf: bool,
    trusted_roots: Sequence[x509.Certificate] = (),
    allow_revocation_reasons: Collection[str] = (),
    allow_unknown: bool = False,
    cache: OcspCache | None = None,
) -> tuple[OcspStatus, ...]:
    """Check the OCSP responses in ``collateral`` for every certificate of a leaf-first ``chain``
    that NVIDIA checks: indices 1 … n−2 of a device chain (``skip_leaf=True``), 0 … n−2 of a RIM
    chain. Each response's nonce is checked when ``collateral.ocsp_nonces`` records one.

    Args:
        chain: Certificates, leaf first, root last (already validated by the caller).
        collateral: Gathered collateral (``collateral.ocsp_checked`` must be True).
        now: Verification time.
        skip_leaf: True for device chains.
        trusted_roots: See :func:`check_ocsp`.
        allow_revocation_reasons: See :func:`check_ocsp`.
        allow_unknown: See :func:`check_ocsp`.
        cache: See :func:`check_ocsp`.

    Returns:
        One status per checked certificate, in chain order (leaf side first).

    Raises:
        CollateralUnavailable: a response is missing.
        CollateralError, SignatureError, CertificateRevoked, ChainError: see :func:`check_ocsp`.
    """
    statuses: list[OcspStatus] = []
    for i in range(1 if skip_leaf else 0, len(chain) - 1):
        cert, issuer = chain[i], chain[i + 1]
        key = ocsp_key(cert)
        response = collateral.ocsp.get(key)
        if response is None:
            raise CollateralUnavailable(
                f"no OCSP response for {describe_certificate(cert)}", step=_STEP, index=i
            )
        statuses.append(
            check_ocsp(
                response,
                cert,
                issuer,
                now=now,
                nonce=collateral.ocsp_nonces.get(key),
                trusted_roots=trusted_roots,
                allow_revocation_reasons=allow_revocation_reasons,
                allow_unknown=allow_unknown,
                cache=cache,
            )
        )
    return tuple(statuses)
