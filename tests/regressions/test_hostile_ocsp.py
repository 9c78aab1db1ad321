"""Regression: OCSP responses that ``cryptography`` loads but cannot fully decode.

``cryptography`` decodes an OCSP response lazily: ``load_der_ocsp_response`` checks the outer
structure, and an unknown signature algorithm, a duplicated nonce extension, an unknown CertID hash,
an undefined revocation reason or junk in the ``certs`` field surfaced only when the OCSP check
touched ``signature_hash_algorithm``, ``extensions``, ``hash_algorithm``, ``revocation_reason`` or
``certificates`` — as ``UnsupportedAlgorithm``, ``DuplicateExtension`` or ``ValueError``, which the
CLI answered with exit 70 "internal error". Each input here is a real response of the test
responder with one such defect; each must now be refused as :class:`CollateralError` (exit 3: the
collateral is unusable, nothing is known about the evidence) by ``load_ocsp_response``, by
``check_ocsp``, and by a GPU verification whose collateral bundle carries it.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ccai._time import utcnow
from ccai.collateral import (
    CollateralBundle,
    build_ocsp_request,
    dump_bundle,
    gather_gpu_collateral,
    inspect_bundle,
    load_bundle,
    ocsp_key,
)
from ccai.collateral._cache import DEFAULT_OCSP_TTL, ocsp_response_expiry
from ccai.errors import CollateralError, EvidenceError, VerificationError
from ccai.evidence import GpuEvidence, load_ocsp_response, parse_cert_chain
from ccai.verify import TrustAnchors, verify_gpu_evidence
from ccai.verify._ocsp_check import check_ocsp
from ccai.virtual import (
    OcspIssuer,
    OcspResponder,
    OcspRevocation,
    VirtualGpuBackend,
    settings_for_virtual_gpu,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
NONCE = bytes(range(32))


# -- a test PKI (root → CA → end certificates, a delegated responder) and its real responder --------


def _cert(
    cn: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    serial: int,
    *,
    ca: bool,
    eku: list[x509.ObjectIdentifier] | None = None,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(datetime(2024, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2030, 1, 1, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA384())


@dataclass
class _Pki:
    root: x509.Certificate
    ca: x509.Certificate
    ca_key: ec.EllipticCurvePrivateKey
    good: x509.Certificate
    revoked: x509.Certificate
    delegate: x509.Certificate
    delegate_key: ec.EllipticCurvePrivateKey

    def responder(self, *, delegated: bool = False) -> OcspResponder:
        def revocation(issuer: x509.Certificate, serial: int) -> OcspRevocation | None:
            if serial != self.revoked.serial_number:
                return None
            return OcspRevocation(
                revoked_at=datetime(2025, 1, 1, tzinfo=UTC), reason=x509.ReasonFlags.key_compromise
            )

        issuer = OcspIssuer(
            certificate=self.ca,
            private_key=self.ca_key,
            delegate_certificate=self.delegate if delegated else None,
            delegate_key=self.delegate_key if delegated else None,
        )
        return OcspResponder([issuer], revocation=revocation, clock=lambda: NOW)


@pytest.fixture(scope="module")
def pki() -> _Pki:
    root_key, ca_key, end_key, delegate_key = (ec.generate_private_key(ec.SECP384R1()) for _ in range(4))
    root = _cert("Test Root", root_key, None, 1, ca=True)
    ca = _cert("Test CA", ca_key, (root, root_key), 2, ca=True)
    return _Pki(
        root=root,
        ca=ca,
        ca_key=ca_key,
        good=_cert("Good", end_key, (ca, ca_key), 0x1001, ca=False),
        revoked=_cert("Revoked", end_key, (ca, ca_key), 0x1002, ca=False),
        delegate=_cert(
            "Test OCSP", delegate_key, (ca, ca_key), 0x2001, ca=False, eku=[ExtendedKeyUsageOID.OCSP_SIGNING]
        ),
        delegate_key=delegate_key,
    )


# -- a minimal DER rewriter (definite lengths only) -------------------------------------------------


def _read(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, end) of the element at ``pos``."""
    tag, first = data[pos], data[pos + 1]
    if first < 0x80:
        return tag, pos + 2, pos + 2 + first
    count = first & 0x7F
    length = int.from_bytes(data[pos + 2 : pos + 2 + count], "big")
    return tag, pos + 2 + count, pos + 2 + count + length


def _children(element: bytes) -> list[bytes]:
    _, pos, end = _read(element, 0)
    out = []
    while pos < end:
        _, _, stop = _read(element, pos)
        out.append(element[pos:stop])
        pos = stop
    return out


def _encode(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _rebuild(element: bytes, children: list[bytes]) -> bytes:
    return _encode(element[0], b"".join(children))


def _edit_basic(der: bytes, edit: Callable[[list[bytes]], list[bytes]]) -> bytes:
    """Apply ``edit`` to the children of the BasicOCSPResponse inside an OCSPResponse
    (tbsResponseData, signatureAlgorithm, signature, [0] certs) and re-encode the envelope."""
    status, response_bytes = _children(der)
    explicit = _children(response_bytes)[0]  # [0] EXPLICIT ResponseBytes
    response_type, octets = _children(explicit)
    _, start, _ = _read(octets, 0)
    basic = octets[start:]
    new_basic = _rebuild(basic, edit(_children(basic)))
    new_explicit = _rebuild(explicit, [response_type, _encode(0x04, new_basic)])
    return _rebuild(der, [status, _rebuild(response_bytes, [new_explicit])])


def _edit_tbs(der: bytes, edit: Callable[[list[bytes]], list[bytes]]) -> bytes:
    """Apply ``edit`` to the children of ResponseData (version?, responderID, producedAt,
    responses, [1] responseExtensions?)."""

    def basic(children: list[bytes]) -> list[bytes]:
        return [_rebuild(children[0], edit(_children(children[0]))), *children[1:]]

    return _edit_basic(der, basic)


# -- the mutations -----------------------------------------------------------------------------------

_ECDSA_SHA384 = b"\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x03"
_UNKNOWN_ECDSA = b"\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x09"  # 1.2.840.10045.4.3.9: unassigned
_SHA1 = b"\x06\x05\x2b\x0e\x03\x02\x1a"
_SHA384 = b"\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x02"
_UNKNOWN_HASH = b"\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x7f"  # 2.16.840.1.101.3.4.2.127


def unknown_signature_oid(der: bytes) -> bytes:
    """BasicOCSPResponse.signatureAlgorithm becomes an unassigned ECDSA OID."""

    def edit(children: list[bytes]) -> list[bytes]:
        assert _ECDSA_SHA384 in children[1]
        return [children[0], children[1].replace(_ECDSA_SHA384, _UNKNOWN_ECDSA), *children[2:]]

    return _edit_basic(der, edit)


def duplicated_nonce(der: bytes) -> bytes:
    """responseExtensions carries the nonce extension twice."""

    def edit(children: list[bytes]) -> list[bytes]:
        assert children[-1][0] == 0xA1
        extensions = _children(_children(children[-1])[0])
        return [*children[:-1], _encode(0xA1, _encode(0x30, b"".join([extensions[0], *extensions])))]

    return _edit_tbs(der, edit)


def bad_version(der: bytes) -> bytes:
    """ResponseData gets ``version [0] EXPLICIT INTEGER 5`` (only v1 = 0 exists)."""

    def edit(children: list[bytes]) -> list[bytes]:
        assert children[0][0] != 0xA0  # DEFAULT v1 is omitted
        return [b"\xa0\x03\x02\x01\x05", *children]

    return _edit_tbs(der, edit)


def unknown_certid_hash(der: bytes) -> bytes:
    """The SingleResponse's CertID hash becomes an unassigned OID."""

    def edit(children: list[bytes]) -> list[bytes]:
        index = next(i for i, c in enumerate(children) if (c[0] == 0x30 and _SHA384 in c) or _SHA1 in c)
        hashed = children[index].replace(_SHA384, _UNKNOWN_HASH).replace(_SHA1, _UNKNOWN_HASH)
        return [*children[:index], hashed, *children[index + 1 :]]

    return _edit_tbs(der, edit)


def undefined_revocation_reason(der: bytes) -> bytes:
    """A revoked SingleResponse's CRLReason becomes 7 (unassigned in RFC 5280)."""
    marker = b"\xa0\x03\x0a\x01\x01"  # [0] EXPLICIT ENUMERATED keyCompromise
    assert marker in der
    return der.replace(marker, b"\xa0\x03\x0a\x01\x07", 1)


def junk_in_certs(der: bytes) -> bytes:
    """The certs field holds a SEQUENCE that is not a certificate."""

    def edit(children: list[bytes]) -> list[bytes]:
        junk = _encode(0xA0, _encode(0x30, _encode(0x30, b"\x02\x01\x01\x04\x03abc")))
        return [*children[:3], junk]

    return _edit_basic(der, edit)


def undecodable_responder_certificate(der: bytes) -> bytes:
    """The delegated responder certificate in certs has its first extension twice."""

    def edit(children: list[bytes]) -> list[bytes]:
        assert len(children) == 4, "needs a delegated responder's certificate"
        cert = _children(_children(children[3])[0])[0]
        parts = _children(cert)
        tbs = _children(parts[0])
        index = next(i for i, e in enumerate(tbs) if e[0] == 0xA3)
        extensions = _children(_children(tbs[index])[0])
        tbs[index] = _encode(0xA3, _encode(0x30, b"".join([extensions[0], *extensions])))
        parts[0] = _rebuild(parts[0], tbs)
        return [*children[:3], _encode(0xA0, _encode(0x30, _rebuild(cert, parts)))]

    return _edit_basic(der, edit)


def truncated(der: bytes) -> bytes:
    """The response loses its last 10 bytes."""
    return der[:-10]


# name → (mutation, which real response it applies to)
MUTATIONS: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "unknown-signature-oid": (unknown_signature_oid, "good"),
    "duplicated-nonce": (duplicated_nonce, "good"),
    "bad-version": (bad_version, "good"),
    "unknown-certid-hash": (unknown_certid_hash, "good"),
    "undefined-revocation-reason": (undefined_revocation_reason, "revoked"),
    "junk-in-certs": (junk_in_certs, "delegated"),
    "undecodable-responder-certificate": (undecodable_responder_certificate, "delegated"),
    "truncated": (truncated, "good"),
}


def _real(pki: _Pki, kind: str) -> tuple[bytes, x509.Certificate]:
    cert = pki.revoked if kind == "revoked" else pki.good
    request = build_ocsp_request(cert, pki.ca, nonce=NONCE)
    return pki.responder(delegated=kind == "delegated").respond(request), cert


def _hostile(pki: _Pki, name: str) -> tuple[bytes, x509.Certificate]:
    mutate, kind = MUTATIONS[name]
    der, cert = _real(pki, kind)
    return mutate(der), cert


def test_the_rewriter_is_lossless(pki: _Pki) -> None:
    der, _ = _real(pki, "delegated")
    assert _edit_basic(der, lambda c: c) == der
    assert _edit_tbs(der, lambda c: c) == der


#: Defects that cryptography already refuses at load time (they must still be typed errors).
_EAGER = {"bad-version", "junk-in-certs", "truncated"}


def _touch(response: ocsp.OCSPResponse) -> None:
    """What the OCSP check reads, without the guard."""
    _ = response.signature_hash_algorithm, response.responder_key_hash, response.produced_at_utc
    for extension in response.extensions:
        _ = extension.value
    for single in response.responses:
        _ = single.hash_algorithm, single.this_update_utc, single.revocation_reason
    for cert in response.certificates:
        _ = list(cert.extensions)


@pytest.mark.parametrize("name", sorted(set(MUTATIONS) - _EAGER))
def test_the_lazy_mutations_load_and_fail_later(pki: _Pki, name: str) -> None:
    """The premise: cryptography loads each mutated response; the defect surfaces on access."""
    hostile, _ = _hostile(pki, name)
    response = ocsp.load_der_ocsp_response(hostile)
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    with pytest.raises((ValueError, UnsupportedAlgorithm, x509.DuplicateExtension)):
        _touch(response)


@pytest.mark.parametrize("name", sorted(_EAGER))
def test_the_eager_mutations_fail_at_load(pki: _Pki, name: str) -> None:
    hostile, _ = _hostile(pki, name)
    with pytest.raises(ValueError):
        ocsp.load_der_ocsp_response(hostile)


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_load_ocsp_response_refuses_as_collateral(pki: _Pki, name: str) -> None:
    hostile, _ = _hostile(pki, name)
    with pytest.raises(CollateralError, match="OCSP response") as info:
        load_ocsp_response(hostile, what="OCSP response")
    assert "\n" not in info.value.message


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_check_ocsp_refuses_as_collateral(pki: _Pki, name: str) -> None:
    hostile, cert = _hostile(pki, name)
    with pytest.raises(CollateralError) as info:
        check_ocsp(hostile, cert, pki.ca, now=NOW, nonce=NONCE, trusted_roots=[pki.root])
    assert not isinstance(info.value, VerificationError | EvidenceError)
    assert info.value.step == "OCSP"


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_collateral_layer_treats_them_as_unusable(pki: _Pki, name: str) -> None:
    """The cache does not keep them, the bundle inspector names the defect instead of crashing."""
    hostile, cert = _hostile(pki, name)
    assert ocsp_response_expiry(hostile, now=NOW, default_ttl=DEFAULT_OCSP_TTL) is None
    bundle = load_bundle(
        json.dumps(
            {
                "version": 1,
                "gpu": {"ocsp": {ocsp_key(cert): {"response": base64.b64encode(hostile).decode()}}},
            }
        ).encode()
    )
    summary = inspect_bundle(bundle, now=NOW)["gpu"]["ocsp"][0]
    assert "error" in summary


def test_real_responses_still_pass(pki: _Pki) -> None:
    for kind in ("good", "delegated"):
        der, cert = _real(pki, kind)
        load_ocsp_response(der, what="OCSP response")
        check_ocsp(der, cert, pki.ca, now=NOW, nonce=NONCE)


# -- through a GPU verification with an offline collateral bundle ----------------------------------


class _InProcessSource:
    """The virtual GPU's RIMs and OCSP responder, without the HTTP server."""

    def __init__(self, backend: VirtualGpuBackend) -> None:
        self._settings = settings_for_virtual_gpu(backend)

    def rim(self, rim_id: str) -> bytes:
        return self._settings.rim(rim_id)

    def ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, *, nonce: bytes | None) -> bytes:
        return self._settings.responder.respond(build_ocsp_request(cert, issuer, nonce=nonce))


@pytest.mark.parametrize(
    "name", ["unknown-signature-oid", "duplicated-nonce", "unknown-certid-hash", "truncated"]
)
def test_gpu_verification_with_a_hostile_bundle_response(tmp_path: Path, name: str) -> None:
    backend = VirtualGpuBackend.create(home=tmp_path / "gpu")
    nonce = secrets.token_bytes(32)
    arch = backend.status().gpus[0].architecture
    items = [
        GpuEvidence(
            arch=arch.value.upper(),
            nonce=nonce,
            report=backend.attestation_report(0, nonce),
            certificate_chain=backend.certificate_chain(0),
        )
    ]
    now = utcnow()
    collateral = gather_gpu_collateral(items, _InProcessSource(backend), now=now)
    # The bundle keeps the responses of the device chain; one of them becomes hostile.
    chain = parse_cert_chain(backend.certificate_chain(0))
    key = ocsp_key(chain[1])
    document = json.loads(dump_bundle(CollateralBundle(gpu=collateral)))
    der = base64.b64decode(document["gpu"]["ocsp"][key]["response"])
    document["gpu"]["ocsp"][key]["response"] = base64.b64encode(MUTATIONS[name][0](der)).decode()
    bundle = load_bundle(json.dumps(document).encode())
    roots = backend.trust_anchors()
    anchors = TrustAnchors.simulated_test_pki(
        gpu_device_root=roots.device_root_pem, gpu_rim_root=roots.rim_root_pem
    )
    with pytest.raises(CollateralError) as info:
        verify_gpu_evidence(
            items,
            nonce=nonce,
            collateral=bundle.gpu,
            now=now,
            allow_simulated=True,
            anchors=anchors,
            reported_cc_mode="on",
        )
    assert not isinstance(info.value, VerificationError | EvidenceError)
    assert "OCSP response" in info.value.message


def test_the_rewriter_reaches_the_certs_field(pki: _Pki) -> None:
    der, _ = _real(pki, "delegated")
    response = ocsp.load_der_ocsp_response(der)
    assert [c.public_bytes(Encoding.DER) for c in response.certificates] == [
        pki.delegate.public_bytes(Encoding.DER)
    ]
