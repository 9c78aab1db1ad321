"""Certificate checks for GPU evidence: the device chain, RIM signing chains, and the leaf FWID.

* **Device chain** (gpu-evidence.md §6.1): built with ``cryptography``'s X.509 path validation to
  the pinned ``NVIDIA Device Identity CA`` (the GPU-supplied root is ignored; only the pinned root
  is trusted). Path validation runs at a time inside every certificate's window so that an expired
  certificate is reported as :class:`~ccai.errors.CertificateExpired` naming its index, rather than
  as an anonymous path-building failure; validity at ``now`` is then checked explicitly.
* **RIM chains** (§6.4): NVIDIA encodes pre-2050 dates as GeneralizedTime, which the RFC 5280
  path validator rejects, so each link is checked with ``verify_directly_issued_by`` plus CA and
  key-usage constraints, and validity at ``now`` is checked by hand (practical-notes.md §3).
* **FWID** (§6.2): Hopper's ``2.23.133.5.4.1`` extension and Blackwell's DiceTcbInfo
  ``2.23.133.5.4.1.1`` are parsed as DER (not "take the last 48 bytes").

Device-chain shape (docs/gpu-verification.md, "Chain shape"): the leaf comes first; the other
certificates may come in any order and the device's own copy of the root may be left out (a
supplied self-signed root is ignored in any case); the path built to the pinned root must have
exactly :data:`DEVICE_CHAIN_LENGTH` certificates, and every supplied certificate other than a root
copy must be on it.

Successful path validations are cached — in a cache the caller owns (``ccai.verify.Verifier``
holds one), never in a module global — by the exact DER bytes of the chain and the anchor set;
validity at ``now`` is re-checked on every call, so a cache hit never extends a certificate's life.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from ccai._binary import Reader
from ccai.errors import CertificateExpired, ChainError, FwidMismatch, MalformedEvidence
from ccai.verify._anchors import GpuTrustAnchors
from ccai.verify._lru import LruCache

__all__ = [
    "DEVICE_CHAIN_LENGTH",
    "FWID_OID_BLACKWELL",
    "FWID_OID_HOPPER",
    "DeviceChainCache",
    "VerifiedChain",
    "check_validity",
    "common_name",
    "leaf_fwid",
    "verify_device_chain",
    "verify_rim_chain",
]

#: Hopper: tcg-dice-TcbInfo OID with NVIDIA's body ``SEQUENCE {INTEGER, SPKI, SEQUENCE {OID, OCTET STRING}}``.
FWID_OID_HOPPER = x509.ObjectIdentifier("2.23.133.5.4.1")
#: Blackwell: DiceTcbInfo (TCG DICE Attestation Architecture), FWID = ``fwids[0].digest``.
FWID_OID_BLACKWELL = x509.ObjectIdentifier("2.23.133.5.4.1.1")
_MAX_DEVICE_CHAIN_DEPTH = 8
#: Leaf (per-boot attestation key), per-device BROM, Provisioner ICA, Identity, root — the shape of
#: every NVIDIA GPU and NVSwitch device chain (gpu-evidence.md §6.1; NVIDIA's verifiers use 5 too).
DEVICE_CHAIN_LENGTH = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedChain:
    """A certificate chain that leads to a trusted root.

    Attributes:
        certificates: Leaf first, the trusted root last.
        anchors: The anchor set whose root the chain leads to.
        expiration: The earliest ``notAfter`` in the chain (claims ``x-nvidia-cert-expiration-date``).
    """

    certificates: tuple[x509.Certificate, ...]
    anchors: GpuTrustAnchors
    expiration: datetime


#: Verified device paths, keyed by (SHA-256 of the supplied chain's DER, anchor-set identity).
DeviceChainCache = LruCache[tuple[bytes, str], tuple[x509.Certificate, ...]]


def common_name(cert: x509.Certificate) -> str:
    """The subject CN of ``cert`` (or the whole subject when it has no CN)."""
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else cert.subject.rfc4514_string()


def _self_signed(cert: x509.Certificate) -> bool:
    return cert.subject == cert.issuer


def _chain_key(certs: Sequence[x509.Certificate]) -> bytes:
    h = hashlib.sha256()
    for cert in certs:
        der = cert.public_bytes(Encoding.DER)
        h.update(len(der).to_bytes(4, "big"))
        h.update(der)
    return h.digest()


def check_validity(certs: Sequence[x509.Certificate], *, now: datetime, step: str, what: str) -> datetime:
    """Check every certificate's validity window at ``now``.

    Args:
        certs: The chain, leaf first.
        now: The verification time.
        step: The checklist step, for the error.
        what: Which chain (``"device certificate chain"``), for the error.

    Returns:
        The earliest ``notAfter`` of the chain.

    Raises:
        CertificateExpired: a certificate is expired or not yet valid at ``now``.
    """
    for i, cert in enumerate(certs):
        start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
        if not start <= now <= end:
            state = "expired" if now > end else "not yet valid"
            raise CertificateExpired(
                f"{what}: certificate [{i}] {common_name(cert)!r} is {state} at {now.isoformat()}",
                step=step,
                index=i,
                expected=f"{start.isoformat()} .. {end.isoformat()}",
                actual=now.isoformat(),
            )
    return min(c.not_valid_after_utc for c in certs)


def _path_validation_time(certs: Sequence[x509.Certificate]) -> datetime | None:
    """A time inside every certificate's window, or None if the windows do not overlap."""
    start = max(c.not_valid_before_utc for c in certs)
    end = min(c.not_valid_after_utc for c in certs)
    return start if start <= end else None


def _check_shape(
    path: Sequence[x509.Certificate], supplied: Sequence[x509.Certificate], *, step: str
) -> None:
    """The built path has NVIDIA's length and uses every supplied certificate (no strays)."""
    if len(path) != DEVICE_CHAIN_LENGTH:
        raise ChainError(
            f"the device chain builds a path of {len(path)} certificates to the pinned root; "
            f"NVIDIA device chains have {DEVICE_CHAIN_LENGTH} (leaf, BROM, Provisioner ICA, Identity, root)",
            step=step,
            expected=DEVICE_CHAIN_LENGTH,
            actual=len(path),
        )
    on_path = {c.public_bytes(Encoding.DER) for c in path}
    for i, cert in enumerate(supplied, start=1):
        if cert.public_bytes(Encoding.DER) not in on_path:
            raise ChainError(
                f"device certificate {common_name(cert)!r} is not on the path from the leaf to the root",
                step=step,
                index=i,
                hint="the chain carries a certificate of another device or hierarchy",
            )


def verify_device_chain(
    certs: Sequence[x509.Certificate],
    *,
    anchors: Sequence[GpuTrustAnchors],
    now: datetime,
    step: str,
    cache: DeviceChainCache | None = None,
) -> VerifiedChain:
    """Validate a GPU attestation-key chain (leaf first) to one of the pinned device roots.

    The anchor sets are tried in order; the first that validates the chain is returned. The leaf
    must come first (it is the key that signed the report); the other certificates may come in any
    order, and the root may be omitted (see the module docstring).

    Args:
        certs: The chain as the device supplied it (leaf first; a supplied root is ignored).
        anchors: The trust-anchor sets to try (NVIDIA first).
        now: The verification time.
        step: The checklist step, for errors.
        cache: Where successful path validations are remembered (``None``: not cached).

    Returns:
        The built chain (leaf first, pinned root last), with the anchor set it leads to.

    Raises:
        ChainError: no path to any trusted root, the chain is empty, the path does not have NVIDIA's
            length, or a supplied certificate is not on it.
        CertificateExpired: the path is valid but a certificate is outside its window at ``now``.
    """
    if not certs:
        raise ChainError("device certificate chain is empty", step=step)
    leaf = certs[0]
    # The device's own copy of the root is not trusted; drop self-signed certificates so path
    # building uses the pinned root only. The order of the rest does not matter to the builder.
    intermediates = [c for c in certs[1:] if not _self_signed(c)]
    key = _chain_key([leaf, *intermediates])
    last_error = "no anchors"
    for anchor_set in anchors:
        cached = cache.get((key, anchor_set.identity)) if cache is not None else None
        if cached is None and not _may_lead_to(anchor_set, [leaf, *intermediates]):
            # No supplied certificate names a root of this set as its issuer: no path can be
            # built to it, so the (costly, uncached) attempt is skipped.
            last_error = "no supplied certificate is issued by a root of this anchor set"
            continue
        if cached is None:
            when = _path_validation_time([leaf, *intermediates, *anchor_set.device_roots])
            if when is None:
                when = now
            try:
                verifier = (
                    PolicyBuilder()
                    .store(Store(list(anchor_set.device_roots)))
                    .time(when)
                    .max_chain_depth(_MAX_DEVICE_CHAIN_DEPTH)
                    .build_client_verifier()
                )
                built = verifier.verify(leaf, intermediates)
            except VerificationError as exc:
                last_error = str(exc)
                continue
            cached = tuple(built.chain)
            _check_shape(cached, intermediates, step=step)
            if cache is not None:
                cache.put((key, anchor_set.identity), cached)
        expiration = check_validity(cached, now=now, step=step, what="device certificate chain")
        return VerifiedChain(certificates=cached, anchors=anchor_set, expiration=expiration)
    names = ", ".join(a.name for a in anchors)
    raise ChainError(
        f"device certificate chain of {common_name(leaf)!r} does not lead to a pinned root ({names})",
        step=step,
        index=0,
        expected=" / ".join(common_name(r) for a in anchors for r in a.device_roots),
        actual=common_name(certs[-1]),
        hint=f"path validation said: {last_error}",
    )


def _may_lead_to(anchor_set: GpuTrustAnchors, certs: Sequence[x509.Certificate]) -> bool:
    """Whether a path from ``certs`` to a root of ``anchor_set`` is possible at all (name check only)."""
    roots = {root.subject for root in anchor_set.device_roots}
    return any(cert.issuer in roots for cert in certs)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _may_sign_documents(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature)
    except x509.ExtensionNotFound:
        return True


def verify_rim_chain(
    certs: Sequence[x509.Certificate],
    *,
    roots: Sequence[x509.Certificate],
    step: str,
    what: str,
) -> tuple[x509.Certificate, ...]:
    """Validate a RIM signing chain (leaf first, as embedded in the RIM) to a pinned root, link by link.

    Validity windows are *not* checked here (see :func:`check_validity`), so the result can be
    cached independently of the verification time.

    Args:
        certs: The embedded certificates, signer first; the embedded root, if any, is ignored.
        roots: The pinned RIM roots.
        step: The checklist step, for errors.
        what: Which RIM (``"driver RIM NV_GPU_DRIVER_GH100_545.00"``), for errors.

    Returns:
        The chain from the signer to the pinned root (inclusive).

    Raises:
        ChainError: a link does not verify, an issuer is not a CA, the signer may not sign, or the
            chain does not end at a pinned root.
    """
    if not certs:
        raise ChainError(f"{what}: no signing certificate embedded", step=step)
    chain = [c for c in certs if not _self_signed(c)] or [certs[0]]
    if not _may_sign_documents(chain[0]):
        raise ChainError(
            f"{what}: signer {common_name(chain[0])!r} lacks the digitalSignature key usage",
            step=step,
            index=0,
        )
    for i in range(len(chain) - 1):
        child, parent = chain[i], chain[i + 1]
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise ChainError(
                f"{what}: certificate [{i}] {common_name(child)!r} is not issued by [{i + 1}] "
                f"{common_name(parent)!r}",
                step=step,
                index=i,
                hint=str(exc) or None,
            ) from None
        if not _is_ca(parent):
            raise ChainError(
                f"{what}: certificate [{i + 1}] {common_name(parent)!r} issues certificates but is not a CA",
                step=step,
                index=i + 1,
            )
    top = chain[-1]
    for root in roots:
        if top.issuer != root.subject:
            continue
        try:
            top.verify_directly_issued_by(root)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return (*chain, root)
    raise ChainError(
        f"{what}: signing chain ends at {top.issuer.rfc4514_string()!r}, not at a pinned RIM root",
        step=step,
        index=len(chain) - 1,
        expected=" / ".join(common_name(r) for r in roots),
        actual=common_name(certs[-1]),
    )


# -- FWID --------------------------------------------------------------------------------------

_TAG_SEQUENCE = 0x30
_TAG_INTEGER = 0x02
_TAG_OID = 0x06
_TAG_OCTET_STRING = 0x04
_TAG_FWIDS = 0xA6  # [6] IMPLICIT SEQUENCE OF FWID (DiceTcbInfo)


def _der_tlv(r: Reader) -> tuple[int, bytes]:
    tag = r.u8("tag")
    first = r.u8("length")
    if first < 0x80:
        length = first
    elif first in (0x81, 0x82, 0x83):
        length = int.from_bytes(r.take(first & 0x7F, "long length"), "big")
    else:
        raise MalformedEvidence(f"{r.what}: unsupported DER length form 0x{first:02x}", step="parse")
    return tag, r.take(length, f"value of tag 0x{tag:02x}")


def _hopper_fwid(value: bytes) -> bytes:
    outer = Reader(value, what="Hopper FWID extension")
    tag, body = _der_tlv(outer)
    outer.expect_end()
    if tag != _TAG_SEQUENCE:
        raise MalformedEvidence("Hopper FWID extension: not a SEQUENCE", step="parse")
    r = Reader(body, what="Hopper FWID extension")
    elements = []
    while r.remaining:
        elements.append(_der_tlv(r))
    if len(elements) != 3 or [t for t, _ in elements] != [_TAG_INTEGER, _TAG_SEQUENCE, _TAG_SEQUENCE]:
        raise MalformedEvidence(
            "Hopper FWID extension: expected SEQUENCE {INTEGER, SPKI, FWID}", step="parse"
        )
    return _fwid_digest(elements[2][1], what="Hopper FWID extension")


def _fwid_digest(body: bytes, *, what: str) -> bytes:
    """``FWID ::= SEQUENCE { hashAlg OBJECT IDENTIFIER, digest OCTET STRING }`` (body of the SEQUENCE)."""
    r = Reader(body, what=what)
    tag_alg, _alg = _der_tlv(r)
    tag_digest, digest = _der_tlv(r)
    r.expect_end()
    if tag_alg != _TAG_OID or tag_digest != _TAG_OCTET_STRING:
        raise MalformedEvidence(f"{what}: FWID is not SEQUENCE {{OID, OCTET STRING}}", step="parse")
    return digest


def _blackwell_fwid(value: bytes) -> bytes:
    outer = Reader(value, what="DiceTcbInfo extension")
    tag, body = _der_tlv(outer)
    outer.expect_end()
    if tag != _TAG_SEQUENCE:
        raise MalformedEvidence("DiceTcbInfo extension: not a SEQUENCE", step="parse")
    r = Reader(body, what="DiceTcbInfo extension")
    while r.remaining:
        tag, field = _der_tlv(r)
        if tag == _TAG_FWIDS:
            fwids = Reader(field, what="DiceTcbInfo fwids")
            first_tag, first = _der_tlv(fwids)
            if first_tag != _TAG_SEQUENCE:
                raise MalformedEvidence("DiceTcbInfo fwids: entry is not a SEQUENCE", step="parse")
            return _fwid_digest(first, what="DiceTcbInfo fwids[0]")
    raise MalformedEvidence("DiceTcbInfo extension: no fwids field", step="parse")


def leaf_fwid(leaf: x509.Certificate) -> bytes | None:
    """The FWID the attestation leaf certificate carries, or None if it has no FWID extension.

    Raises:
        FwidMismatch: the FWID extension is present but cannot be decoded.
    """
    for oid, extract in ((FWID_OID_BLACKWELL, _blackwell_fwid), (FWID_OID_HOPPER, _hopper_fwid)):
        try:
            ext = leaf.extensions.get_extension_for_oid(oid)
        except x509.ExtensionNotFound:
            continue
        value = ext.value
        if not isinstance(value, x509.UnrecognizedExtension):
            continue
        try:
            return extract(value.value)
        except MalformedEvidence as exc:
            raise FwidMismatch(
                f"leaf certificate FWID extension {oid.dotted_string} is malformed: {exc.message}",
                step="(3) report contents and FWID",
                index=0,
            ) from None
    return None
