"""Certificates, CRLs and OCSP responses from outside: guarded loaders; PEM chains as NVML carries them.

``cryptography`` decodes an X.509 certificate lazily: ``load_*`` checks the outer structure, and a
bad version, a duplicated or undecodable extension, an unknown signature or key algorithm or a
malformed name surfaces only when the verifier later touches ``.extensions``, ``.public_key()``,
``.signature_hash_algorithm`` … — as ``InvalidVersion``, ``DuplicateExtension``,
``UnsupportedAlgorithm`` or ``ValueError`` in the middle of a chain check. Every certificate and CRL
that enters ccai therefore goes through :func:`load_certificate`, :func:`load_pem_certificates` or
:func:`load_crl`, which decode everything a verifier reads at the boundary and turn any failure
into :class:`~ccai.errors.MalformedEvidence`.

OCSP responses decode just as lazily (``certificates``, ``signature_hash_algorithm``, the responder
id, the SingleResponses' times and reasons, the nonce extension …). They are always collateral,
never evidence, so :func:`load_ocsp_response` decodes everything an OCSP check reads and turns any
failure into :class:`~ccai.errors.CollateralError`: a response that cannot be decoded says nothing
about the evidence it was fetched for (exit 3, not 1). Its embedded responder certificates go through
:func:`load_certificate`.
"""

from __future__ import annotations

import re
import warnings

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509 import ocsp

from ccai.errors import CollateralError, MalformedEvidence

__all__ = ["load_certificate", "load_crl", "load_ocsp_response", "load_pem_certificates", "parse_cert_chain"]

_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)\s*-----END ([A-Z0-9 ]+)-----",
    re.DOTALL,
)
# What cryptography raises on a certificate or CRL it cannot decode (at load time or lazily).
_DECODE_ERRORS = (
    ValueError,
    TypeError,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    UnsupportedAlgorithm,
)


def _decode_certificate(cert: x509.Certificate) -> None:
    """Touch every part of ``cert`` that a verifier reads, so lazy decoding fails here."""
    _ = cert.version, cert.serial_number
    _ = cert.not_valid_before_utc, cert.not_valid_after_utc
    _ = cert.subject.rfc4514_string(), cert.issuer.rfc4514_string()
    for extension in cert.extensions:
        _ = extension.value
    cert.public_key()
    _ = cert.signature_hash_algorithm, cert.signature_algorithm_parameters


def _decode_crl(crl: x509.CertificateRevocationList) -> None:
    """Touch every part of ``crl`` that a verifier reads, so lazy decoding fails here."""
    _ = crl.issuer.rfc4514_string(), crl.last_update_utc, crl.next_update_utc
    _ = crl.signature_hash_algorithm, crl.signature_algorithm_parameters
    for extension in crl.extensions:
        _ = extension.value
    for revoked in crl:
        _ = revoked.serial_number, revoked.revocation_date_utc
        for extension in revoked.extensions:
            _ = extension.value


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def load_certificate(
    data: bytes, *, what: str, step: str = "parse", index: int | str | None = None
) -> x509.Certificate:
    """Load one certificate (DER, or PEM when it starts with a PEM header) and decode all of it.

    AMD's VCEKs and VLEKs have serial number 0, which ``cryptography`` accepts with a deprecation
    warning; that warning is silenced here.

    Args:
        data: The certificate bytes.
        what: What the certificate is (``"VCEK"``), for the error.
        step: The parse or verification step, for the error.
        index: The certificate's position in its chain, for the error.

    Returns:
        The certificate; its version, validity, names, extensions, public key and signature
        algorithm all decode.

    Raises:
        MalformedEvidence: any part of the certificate cannot be decoded.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            if bytes(data).lstrip().startswith(b"-----BEGIN"):
                cert = x509.load_pem_x509_certificate(bytes(data))
            else:
                cert = x509.load_der_x509_certificate(bytes(data))
            _decode_certificate(cert)
    except _DECODE_ERRORS as exc:
        raise MalformedEvidence(f"{what} cannot be decoded: {_reason(exc)}", step=step, index=index) from None
    return cert


def load_pem_certificates(pem: bytes, *, what: str, step: str = "parse") -> tuple[x509.Certificate, ...]:
    """Load every ``CERTIFICATE`` block of a PEM text and decode all of each (see :func:`load_certificate`).

    Args:
        pem: The PEM text.
        what: What the chain is (``"PCK certificate chain"``), for the error.
        step: The parse or verification step, for the error.

    Returns:
        The certificates in the order given (possibly none is an error: see Raises).

    Raises:
        MalformedEvidence: no certificate, or one that cannot be decoded.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            certs = x509.load_pem_x509_certificates(bytes(pem))
            for n, cert in enumerate(certs):
                try:
                    _decode_certificate(cert)
                except _DECODE_ERRORS as exc:
                    raise MalformedEvidence(
                        f"{what}: certificate {n} cannot be decoded: {_reason(exc)}", step=step, index=n
                    ) from None
    except _DECODE_ERRORS as exc:
        raise MalformedEvidence(f"{what} is not PEM certificates: {_reason(exc)}", step=step) from None
    return tuple(certs)


def load_crl(data: bytes, *, what: str, step: str = "parse") -> x509.CertificateRevocationList:
    """Load a DER (or PEM) CRL and decode all of it: issuer, dates, algorithm, extensions, entries.

    Args:
        data: The CRL bytes.
        what: Which CRL (``"PCK CRL"``), for the error.
        step: The verification step, for the error.

    Returns:
        The CRL.

    Raises:
        MalformedEvidence: any part of the CRL cannot be decoded.
    """
    try:
        if bytes(data).lstrip().startswith(b"-----BEGIN"):
            crl = x509.load_pem_x509_crl(bytes(data).strip())
        else:
            crl = x509.load_der_x509_crl(bytes(data))
        _decode_crl(crl)
    except _DECODE_ERRORS as exc:
        raise MalformedEvidence(f"{what} is not a decodable CRL: {_reason(exc)}", step=step) from None
    return crl


def _decode_ocsp_response(response: ocsp.OCSPResponse) -> None:
    """Touch every part of a successful ``response`` that an OCSP check reads (not the embedded
    certificates: :func:`load_ocsp_response` loads those through :func:`load_certificate`)."""
    if response.responder_name is not None:
        _ = response.responder_name.rfc4514_string()
    _ = response.responder_key_hash, response.produced_at_utc
    _ = response.signature_algorithm_oid, response.signature_hash_algorithm
    _ = response.tbs_response_bytes, response.signature
    for extension in response.extensions:
        _ = extension.value
    singles = list(response.responses)
    for single in singles:
        _ = single.serial_number, single.hash_algorithm, single.issuer_name_hash, single.issuer_key_hash
        _ = single.certificate_status, single.this_update_utc, single.next_update_utc
        _ = single.revocation_time_utc, single.revocation_reason
    if len(singles) == 1:  # cryptography exposes singleExtensions only for a lone SingleResponse
        for extension in response.single_extensions:
            _ = extension.value


def load_ocsp_response(der: bytes, *, what: str, step: str = "OCSP") -> ocsp.OCSPResponse:
    """Load a DER OCSPResponse and decode all of it that an OCSP check reads.

    A response whose ``responseStatus`` is not ``successful`` has no body: it is returned after
    loading, and the caller decides what the status means. A successful one has its responder id,
    ``producedAt``, signature algorithm, extensions (the nonce), every SingleResponse (CertID,
    status, times, revocation reason), ``singleExtensions`` and embedded certificates decoded here.

    Args:
        der: The response bytes.
        what: Which response (``"OCSP response for 'GH100 A01 FSP BROM' (serial 4a…)"``), for the error.
        step: The verification step, for the error.

    Returns:
        The response.

    Raises:
        CollateralError: the bytes are not an OCSP response, or any part of a successful one
            (an embedded certificate included) cannot be decoded. An OCSP response is collateral:
            one that cannot be used says nothing about the evidence.
    """
    try:
        response = ocsp.load_der_ocsp_response(bytes(der))
    except _DECODE_ERRORS as exc:
        raise CollateralError(f"{what} is not a DER OCSP response: {_reason(exc)}", step=step) from None
    try:
        if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
            return response
        _decode_ocsp_response(response)
        certificates = response.certificates
    except _DECODE_ERRORS as exc:
        raise CollateralError(f"{what} cannot be decoded: {_reason(exc)}", step=step) from None
    for n, cert in enumerate(certificates):
        try:
            load_certificate(
                cert.public_bytes(Encoding.DER), what=f"{what}: certificate {n}", step=step, index=n
            )
        except MalformedEvidence as exc:
            raise CollateralError(exc.message, step=step, index=n) from None
    return response


def parse_cert_chain(pem: bytes) -> tuple[x509.Certificate, ...]:
    """Parse a concatenated PEM certificate chain, keeping its order (leaf first, root last).

    Only ``CERTIFICATE`` blocks are accepted; text between blocks must be whitespace (NVML pads the
    buffer with NULs, which are tolerated at the end). Nothing about the chain is checked here:
    order, issuers and validity are the verifier's job; but every certificate decodes completely
    (:func:`load_certificate`).

    Args:
        pem: The chain as bytes.

    Returns:
        The certificates in the order given.

    Raises:
        MalformedEvidence: no certificate, a non-certificate PEM block, stray text, or a block
            that is not a fully decodable X.509 certificate.
    """
    data = bytes(pem).rstrip(b"\0")
    certs: list[x509.Certificate] = []
    pos = 0
    for n, m in enumerate(_PEM_BLOCK.finditer(data)):
        if data[pos : m.start()].strip():
            raise MalformedEvidence(
                f"certificate chain: unexpected text before certificate {n}", step="parse", index=n
            )
        if m.group(1) != b"CERTIFICATE" or m.group(3) != b"CERTIFICATE":
            raise MalformedEvidence(
                f"certificate chain: block {n} is {m.group(1).decode('ascii', 'replace')}, not CERTIFICATE",
                step="parse",
                index=n,
            )
        certs.append(load_certificate(m.group(0), what=f"certificate chain: certificate {n}", index=n))
        pos = m.end()
    if data[pos:].strip():
        raise MalformedEvidence("certificate chain: unexpected text after the last certificate", step="parse")
    if not certs:
        raise MalformedEvidence("certificate chain: no PEM certificate found", step="parse")
    return tuple(certs)
