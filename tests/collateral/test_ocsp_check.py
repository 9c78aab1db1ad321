"""check_ocsp (ccai.verify._ocsp_check): responses built by the real responder of the dev server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from ccai.collateral import build_ocsp_request
from ccai.errors import (
    CertificateRevoked,
    ChainError,
    CollateralError,
    SignatureError,
    VerificationError,
)
from ccai.verify._ocsp_check import OcspCertStatus, check_ocsp
from ccai.virtual import OcspIssuer, OcspResponder

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
NONCE = bytes(range(32))


def _response(pki: Any, cert: x509.Certificate, *, nonce: bytes | None = NONCE, **kwargs: Any) -> bytes:
    return pki.responder(**kwargs).respond(build_ocsp_request(cert, pki.ca, nonce=nonce))


def test_good_response_signed_by_issuer(pki: Any) -> None:
    status = check_ocsp(_response(pki, pki.good), pki.good, pki.ca, now=NOW, nonce=NONCE)
    assert status.status is OcspCertStatus.GOOD
    assert status.revocation_reason is None
    assert status.nonce_checked
    assert status.this_update == NOW
    assert status.next_update == NOW + timedelta(hours=1)
    assert status.serial_number == pki.good.serial_number
    assert "Test CA" in status.responder


def test_good_response_from_delegated_responder(pki: Any) -> None:
    status = check_ocsp(_response(pki, pki.good, delegated=True), pki.good, pki.ca, now=NOW, nonce=NONCE)
    assert status.status is OcspCertStatus.GOOD
    assert "Test OCSP" in status.responder


def test_sha1_certid_is_accepted(pki: Any) -> None:
    request = build_ocsp_request(pki.good, pki.ca, nonce=None, algorithm=hashes.SHA1())
    der = pki.responder().respond(request)
    assert check_ocsp(der, pki.good, pki.ca, now=NOW).status is OcspCertStatus.GOOD


def test_revoked_raises_with_reason(pki: Any) -> None:
    with pytest.raises(CertificateRevoked) as info:
        check_ocsp(_response(pki, pki.revoked), pki.revoked, pki.ca, now=NOW, nonce=NONCE)
    assert "keyCompromise" in info.value.message
    assert info.value.actual == "revoked: keyCompromise"


def test_allowed_hold_returns_revoked_status_with_reason(pki: Any) -> None:
    der = _response(pki, pki.held)
    with pytest.raises(CertificateRevoked):
        check_ocsp(der, pki.held, pki.ca, now=NOW)
    status = check_ocsp(der, pki.held, pki.ca, now=NOW, allow_revocation_reasons={"certificateHold"})
    assert status.status is OcspCertStatus.REVOKED
    assert status.revocation_reason == "certificateHold"
    assert status.revocation_time == datetime(2025, 2, 1, tzinfo=UTC)


def _signed_by(pki: Any, signer: x509.Certificate, key: Any, encoding: ocsp.OCSPResponderEncoding) -> bytes:
    request = ocsp.load_der_ocsp_request(build_ocsp_request(pki.good, pki.ca, nonce=None))
    return (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=request.issuer_name_hash,
            issuer_key_hash=request.issuer_key_hash,
            serial_number=request.serial_number,
            algorithm=request.hash_algorithm,
            cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=NOW,
            next_update=NOW + timedelta(hours=1),
            revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(encoding, signer)
        .sign(key, hashes.SHA384())
        .public_bytes(serialization.Encoding.DER)
    )


def test_wrong_responder_key_is_a_signature_error(pki: Any, cert_factory: Any) -> None:
    # An impostor CA certificate: the issuer's name, another key.
    impostor = cert_factory(
        "Test CA", pki.other_key, issuer=None, issuer_key=pki.other_key, serial=2, ca=True
    )
    by_name = _signed_by(pki, impostor, pki.other_key, ocsp.OCSPResponderEncoding.NAME)
    with pytest.raises(SignatureError, match="does not verify"):
        check_ocsp(by_name, pki.good, pki.ca, now=NOW)
    by_key = _signed_by(pki, impostor, pki.other_key, ocsp.OCSPResponderEncoding.HASH)
    with pytest.raises(SignatureError, match="unknown responder"):
        check_ocsp(by_key, pki.good, pki.ca, now=NOW)
    # The same response signed by the real issuer passes.
    genuine = _signed_by(pki, pki.ca, pki.ca_key, ocsp.OCSPResponderEncoding.NAME)
    assert check_ocsp(genuine, pki.good, pki.ca, now=NOW).status is OcspCertStatus.GOOD


def test_flipped_signature_byte_is_a_signature_error(pki: Any) -> None:
    der = bytearray(_response(pki, pki.good))
    der[-2] ^= 0x01  # inside the ECDSA s integer at the end of the BasicOCSPResponse
    with pytest.raises((SignatureError, CollateralError)) as info:
        check_ocsp(bytes(der), pki.good, pki.ca, now=NOW, nonce=NONCE)
    assert isinstance(info.value, SignatureError)


def test_delegate_without_ocsp_signing_usage_is_rejected(pki: Any, cert_factory: Any) -> None:
    plain = cert_factory(
        "Not a responder", pki.delegate_key, issuer=pki.ca, issuer_key=pki.ca_key, serial=0x3001, ca=False
    )
    responder = OcspResponder(
        [
            OcspIssuer(
                certificate=pki.ca,
                private_key=pki.ca_key,
                delegate_certificate=plain,
                delegate_key=pki.delegate_key,
            )
        ],
        revocation=pki.revocation,
        clock=lambda: NOW,
    )
    der = responder.respond(build_ocsp_request(pki.good, pki.ca, nonce=None))
    with pytest.raises(SignatureError, match="OCSPSigning"):
        check_ocsp(der, pki.good, pki.ca, now=NOW)


def test_delegate_from_another_ca_is_rejected_unless_it_chains_to_a_trusted_root(
    pki: Any, cert_factory: Any
) -> None:
    # A responder certificate issued by the root, not by the certificate's issuer.
    foreign = cert_factory(
        "Root OCSP",
        pki.delegate_key,
        issuer=pki.root,
        issuer_key=pki.root_key,
        serial=0x3002,
        ca=False,
        eku=[ExtendedKeyUsageOID.OCSP_SIGNING],
    )
    responder = OcspResponder(
        [
            OcspIssuer(
                certificate=pki.ca,
                private_key=pki.ca_key,
                delegate_certificate=foreign,
                delegate_key=pki.delegate_key,
            )
        ],
        revocation=pki.revocation,
        clock=lambda: NOW,
    )
    der = responder.respond(build_ocsp_request(pki.good, pki.ca, nonce=None))
    with pytest.raises(SignatureError, match="not issued by"):
        check_ocsp(der, pki.good, pki.ca, now=NOW)
    status = check_ocsp(der, pki.good, pki.ca, now=NOW, trusted_roots=[pki.root])
    assert status.status is OcspCertStatus.GOOD


def test_stale_and_future_responses_are_collateral_errors(pki: Any) -> None:
    der = _response(pki, pki.good)
    with pytest.raises(CollateralError, match="stale") as info:
        check_ocsp(der, pki.good, pki.ca, now=NOW + timedelta(hours=2))
    assert not isinstance(info.value, VerificationError)
    with pytest.raises(CollateralError, match="not yet valid"):
        check_ocsp(der, pki.good, pki.ca, now=NOW - timedelta(hours=1))
    # Within the clock skew on both ends.
    check_ocsp(der, pki.good, pki.ca, now=NOW + timedelta(hours=1, minutes=4))
    check_ocsp(der, pki.good, pki.ca, now=NOW - timedelta(minutes=4))


def test_nonce_mismatch_and_missing_nonce(pki: Any) -> None:
    der = _response(pki, pki.good)
    with pytest.raises(CollateralError, match="nonce"):
        check_ocsp(der, pki.good, pki.ca, now=NOW, nonce=b"\xff" * 32)
    without = _response(pki, pki.good, nonce=None)
    with pytest.raises(CollateralError, match="nonce"):
        check_ocsp(without, pki.good, pki.ca, now=NOW, nonce=NONCE)
    assert not check_ocsp(without, pki.good, pki.ca, now=NOW).nonce_checked


def test_response_for_another_certificate(pki: Any) -> None:
    der = _response(pki, pki.good)
    with pytest.raises(CollateralError, match="CertID"):
        check_ocsp(der, pki.revoked, pki.ca, now=NOW)
    with pytest.raises(CollateralError, match="CertID"):
        check_ocsp(der, pki.good, pki.root, now=NOW)


def test_unsuccessful_and_garbage_responses(pki: Any) -> None:
    unauthorized = pki.responder().respond(build_ocsp_request(pki.ca, pki.root, nonce=None))
    with pytest.raises(CollateralError, match="no status") as info:
        check_ocsp(unauthorized, pki.ca, pki.root, now=NOW)
    assert info.value.actual == "unauthorized"
    with pytest.raises(CollateralError, match="DER"):
        check_ocsp(b"\x30\x03\x0a\x01", pki.good, pki.ca, now=NOW)


def test_unknown_status(pki: Any) -> None:
    request = ocsp.load_der_ocsp_request(build_ocsp_request(pki.good, pki.ca, nonce=None))
    der = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=request.issuer_name_hash,
            issuer_key_hash=request.issuer_key_hash,
            serial_number=request.serial_number,
            algorithm=request.hash_algorithm,
            cert_status=ocsp.OCSPCertStatus.UNKNOWN,
            this_update=NOW,
            next_update=NOW + timedelta(hours=1),
            revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.NAME, pki.ca)
        .sign(pki.ca_key, hashes.SHA384())
        .public_bytes(serialization.Encoding.DER)
    )
    with pytest.raises(ChainError, match="does not know"):
        check_ocsp(der, pki.good, pki.ca, now=NOW)
    assert check_ocsp(der, pki.good, pki.ca, now=NOW, allow_unknown=True).status is OcspCertStatus.UNKNOWN


def test_cache_skips_only_the_time_independent_checks(pki: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from ccai.verify import _ocsp_check
    from ccai.verify._lru import LruCache

    cache: _ocsp_check.OcspCache = LruCache(8)
    der = _response(pki, pki.good, delegated=True)
    first = check_ocsp(der, pki.good, pki.ca, now=NOW, nonce=NONCE, cache=cache)
    assert len(cache) == 1
    # A hit does not verify the signature again …
    calls: list[object] = []
    real = _ocsp_check._verify_response_signature
    monkeypatch.setattr(_ocsp_check, "_verify_response_signature", lambda *a: calls.append(a) or real(*a))
    assert check_ocsp(der, pki.good, pki.ca, now=NOW, nonce=NONCE, cache=cache) == first
    assert calls == []
    # … but every time-dependent check still runs on a hit: window, nonce, status.
    with pytest.raises(CollateralError, match="stale"):
        check_ocsp(der, pki.good, pki.ca, now=NOW + timedelta(hours=2), cache=cache)
    with pytest.raises(CollateralError, match="not yet valid"):
        check_ocsp(der, pki.good, pki.ca, now=NOW - timedelta(hours=1), cache=cache)
    with pytest.raises(CollateralError, match="nonce"):
        check_ocsp(der, pki.good, pki.ca, now=NOW, nonce=b"\xff" * 32, cache=cache)
    # The delegated responder's own validity is re-checked against now.
    late = pki.delegate.not_valid_after_utc + timedelta(days=1)
    with pytest.raises((SignatureError, CollateralError)):
        check_ocsp(der, pki.good, pki.ca, now=late, cache=cache)
    # The key is the exact bytes and the certificate: another certificate or a flipped byte misses.
    with pytest.raises(CollateralError, match="CertID"):
        check_ocsp(der, pki.revoked, pki.ca, now=NOW, cache=cache)
    flipped = bytearray(der)
    flipped[-2] ^= 0x01
    with pytest.raises(SignatureError):
        check_ocsp(bytes(flipped), pki.good, pki.ca, now=NOW, cache=cache)
    assert len(cache) == 1  # failures are never cached
    # A revoked status is cached as authenticated, and still raises on every use.
    revoked = _response(pki, pki.revoked)
    for _ in range(2):
        with pytest.raises(CertificateRevoked):
            check_ocsp(revoked, pki.revoked, pki.ca, now=NOW, cache=cache)


def test_responders_accepted_through_a_local_root_are_not_cached(pki: Any, cert_factory: Any) -> None:
    from ccai.verify._lru import LruCache

    foreign = cert_factory(
        "Root OCSP",
        pki.delegate_key,
        issuer=pki.root,
        issuer_key=pki.root_key,
        serial=0x3003,
        ca=False,
        eku=[ExtendedKeyUsageOID.OCSP_SIGNING],
    )
    responder = OcspResponder(
        [
            OcspIssuer(
                certificate=pki.ca,
                private_key=pki.ca_key,
                delegate_certificate=foreign,
                delegate_key=pki.delegate_key,
            )
        ],
        revocation=pki.revocation,
        clock=lambda: NOW,
    )
    der = responder.respond(build_ocsp_request(pki.good, pki.ca, nonce=None))
    cache: Any = LruCache(8)
    assert check_ocsp(der, pki.good, pki.ca, now=NOW, trusted_roots=[pki.root], cache=cache)
    assert len(cache) == 0
