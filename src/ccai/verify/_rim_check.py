"""Authenticate an NVIDIA RIM: signing chain to the pinned CoRIM root, validity, enveloped XMLDSig.

Recipe (practical-notes.md §3, gpu-evidence.md §7.2):

(a) parse with :func:`ccai.evidence.parse_rim` (no entities, no DTD, no network);
(b) walk the embedded chain link by link to a pinned RIM root (``verify_directly_issued_by``;
    ``cryptography``'s RFC 5280 validator refuses NVIDIA's GeneralizedTime dates);
(c) check every certificate's validity at the injected ``now`` (reported as ``CertificateExpired``);
(d) verify the XMLDSig with ``signxml`` pinned to the embedded signer certificate (the chain is
    checked in (b), so signxml's own chain logic — which rejects NVIDIA's root — is not used),
    requiring exactly one signature, a direct child of the root, with a single ``URI=""``
    reference: the whole document minus the signature is what was signed, so the parsed
    measurements are covered by it.

Steps (a), (b) and (d) depend only on the RIM bytes and the anchors, so their result is cached
— in a cache the caller owns (``ccai.verify.Verifier`` holds one) — under the SHA-256 of the RIM
bytes; (c) runs on every call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from lxml import etree
from signxml import DigestAlgorithm, SignatureMethod  # type: ignore[attr-defined]
from signxml.exceptions import InvalidCertificate, InvalidDigest, InvalidInput, InvalidSignature
from signxml.verifier import SignatureConfiguration, XMLVerifier

from ccai.errors import ChainError, MalformedEvidence, SignatureError, UsageError
from ccai.evidence import Rim, parse_rim
from ccai.verify._anchors import GpuTrustAnchors
from ccai.verify._gpu_certs import check_validity, common_name, verify_rim_chain
from ccai.verify._lru import LruCache

__all__ = ["CheckedRim", "RimCache", "check_rim"]

_DSIG = "http://www.w3.org/2000/09/xmldsig#"
# What NVIDIA signs with (ECDSA-SHA384 over SHA-384 digests); the SHA-256/512 siblings are
# accepted for forward compatibility, SHA-1 and HMAC never.
_SIGNATURE_CONFIG_METHODS = frozenset(
    {SignatureMethod.ECDSA_SHA256, SignatureMethod.ECDSA_SHA384, SignatureMethod.ECDSA_SHA512}
)
_DIGESTS = frozenset({DigestAlgorithm.SHA256, DigestAlgorithm.SHA384, DigestAlgorithm.SHA512})


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckedRim:
    """A RIM whose signature and signing chain verified.

    Attributes:
        rim_id: The id the RIM was selected by.
        rim: The parsed manifest.
        chain: Signer first, pinned root last.
        anchors: The anchor set the chain leads to.
        expiration: Earliest ``notAfter`` of the chain.
    """

    rim_id: str
    rim: Rim
    chain: tuple[x509.Certificate, ...]
    anchors: GpuTrustAnchors
    expiration: datetime


#: Authenticated RIMs, keyed by (SHA-256 of the RIM bytes, anchor-set identity).
RimCache = LruCache[tuple[bytes, str], tuple[Rim, tuple[x509.Certificate, ...]]]


def _check_signature_shape(xml: bytes, *, step: str, what: str) -> None:
    """Exactly one enveloped signature, child of the root, one reference to the whole document."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    root = etree.fromstring(xml, parser)
    signatures = root.findall(f".//{{{_DSIG}}}Signature")
    if len(signatures) != 1 or signatures[0].getparent() is not root:
        raise SignatureError(
            f"{what}: expected exactly one XMLDSig Signature as a child of the root, found {len(signatures)}",
            step=step,
        )
    references = signatures[0].findall(f"{{{_DSIG}}}SignedInfo/{{{_DSIG}}}Reference")
    uris = [ref.get("URI") for ref in references]
    if uris != [""]:
        raise SignatureError(
            f'{what}: the signature must have one Reference with URI="" (the whole document)',
            step=step,
            expected='[""]',
            actual=str(uris),
        )


def _verify_xmldsig(xml: bytes, signer: x509.Certificate, *, step: str, what: str) -> None:
    _check_signature_shape(xml, step=step, what=what)
    config = SignatureConfiguration(
        require_x509=True,
        location="./",
        expect_references=1,
        signature_methods=_SIGNATURE_CONFIG_METHODS,
        digest_algorithms=_DIGESTS,
        # The validity of the signer is checked at ``now`` in step (c); signxml must not use the
        # wall clock, so it is asked at a time inside the signer's window.
        verification_time=signer.not_valid_before_utc,
    )
    try:
        XMLVerifier().verify(xml, x509_cert=signer, expect_config=config)
    except (InvalidSignature, InvalidDigest) as exc:
        raise SignatureError(
            f"{what}: XMLDSig does not verify with signer {common_name(signer)!r}",
            step=step,
            hint=str(exc) or None,
        ) from None
    except (InvalidCertificate, InvalidInput) as exc:
        raise SignatureError(f"{what}: XMLDSig is not acceptable: {exc}", step=step) from None
    except Exception as exc:
        # A hostile RIM reaches signxml and lxml, which raise a wide, version-dependent set of
        # exceptions on malformed signatures (DocumentInvalid when ds:SignatureMethod is missing,
        # C14NError, TypeError, KeyError …). Only the third-party call is inside this ``try``:
        # whatever it raises, the RIM's signature is not acceptable.
        reason = str(exc).splitlines()[0] if str(exc) else ""
        raise SignatureError(
            f"{what}: XMLDSig is malformed ({type(exc).__name__}{': ' + reason if reason else ''})",
            step=step,
        ) from None


def check_rim(
    rim_id: str,
    xml: bytes,
    *,
    anchors: Sequence[GpuTrustAnchors],
    now: datetime,
    step: str,
    what: str,
    cache: RimCache | None = None,
) -> CheckedRim:
    """Parse and authenticate one RIM.

    Args:
        rim_id: The id the RIM was selected by (for messages and claims).
        xml: The RIM document bytes.
        anchors: Anchor sets to try, in order (their ``rim_roots``).
        now: The verification time.
        step: The checklist step, for errors.
        what: Which RIM (``"driver RIM NV_GPU_DRIVER_GH100_545.00"``), for errors.
        cache: Where authenticated RIMs are remembered (``None``: not cached).

    Returns:
        The parsed RIM with its verified chain.

    Raises:
        MalformedEvidence: the RIM is not a well-formed SWID document.
        ChainError: the embedded chain does not lead to a pinned RIM root.
        CertificateExpired: a chain certificate is outside its window at ``now``.
        SignatureError: the XMLDSig does not verify or is not of the required shape.
    """
    digest = hashlib.sha256(xml).digest()
    for anchor_set in anchors:
        hit = cache.get((digest, anchor_set.identity)) if cache is not None else None
        if hit is not None:
            rim, chain = hit
            expiration = check_validity(chain, now=now, step=step, what=f"{what} signing chain")
            return CheckedRim(rim_id=rim_id, rim=rim, chain=chain, anchors=anchor_set, expiration=expiration)

    try:
        rim = parse_rim(xml)
    except MalformedEvidence as exc:
        raise MalformedEvidence(f"{what}: {exc.message}", step=step, index=exc.index) from None
    # (b) chain to a pinned root: the first anchor set that accepts it.
    refusals: list[ChainError] = []
    for anchor_set in anchors:
        try:
            chain = verify_rim_chain(
                rim.certificates, roots=anchor_set.rim_roots, step=step, what=f"{what} signing chain"
            )
        except ChainError as exc:
            refusals.append(exc)
            continue
        # (c) validity at now, before the signature, so an expired signer reads "expired".
        expiration = check_validity(chain, now=now, step=step, what=f"{what} signing chain")
        # (d) the XMLDSig, pinned to the signer the chain check accepted.
        _verify_xmldsig(xml, chain[0], step=step, what=what)
        if cache is not None:
            cache.put((digest, anchor_set.identity), (rim, chain))
        return CheckedRim(rim_id=rim_id, rim=rim, chain=chain, anchors=anchor_set, expiration=expiration)
    if refusals:
        raise refusals[0]
    raise UsageError("check_rim needs at least one trust-anchor set")
