"""The development collateral server: a RIM service and a real OCSP responder for a test PKI.

It serves what NVIDIA's services serve, in their shapes, for the virtual CC GPU (or any test PKI):

* ``GET /v1/rim/{id}`` → ``{"id", "rim": base64(XML), "sha256", "last_updated", "rim_format",
  "request_id"}``; 404 ``{"message": "RIM_NOT_FOUND"}`` (gpu-evidence.md §7.3);
* ``GET /v1/rim/ids`` → ``{"ids": [...], "request_id", "last_updated"}``;
* ``POST /ocsp`` (and ``POST /``, where NVIDIA's responder listens) with
  ``application/ocsp-request`` → a signed ``application/ocsp-response`` (RFC 6960), built with
  ``cryptography``'s ``OCSPResponseBuilder``: the nonce is echoed, revoked serials are reported
  with their reason, and — like NVIDIA's responder — a known issuer with an unknown serial is
  ``good``, an unknown issuer gets ``unauthorized``.

It is a development tool: it signs with test keys, and ccai never trusts those keys unless a
caller asks for simulation by name. :func:`run_in_background` starts it on loopback in a thread
(the tests and ``ccai demo`` use it); ``ccai dev collateral-server`` runs it in the foreground.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from ccai._net import listen_socket
from ccai._time import utcnow
from ccai.errors import UsageError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ccai.virtual._gpu import VirtualGpuBackend
    from ccai.virtual._tee import VirtualCpuTee

__all__ = [
    "DevCollateralSettings",
    "OcspIssuer",
    "OcspResponder",
    "OcspRevocation",
    "create_dev_collateral_app",
    "run_in_background",
    "settings_for_virtual_gpu",
]

_OCSP_REQUEST = "application/ocsp-request"
OCSP_RESPONSE = "application/ocsp-response"
#: The largest OCSP request body the server reads.
MAX_OCSP_REQUEST = 16 * 1024
_DER = serialization.Encoding.DER


@dataclass(frozen=True, slots=True, kw_only=True)
class OcspRevocation:
    """How the responder reports a revoked certificate."""

    revoked_at: datetime
    reason: x509.ReasonFlags


@dataclass(frozen=True, slots=True, kw_only=True)
class OcspIssuer:
    """A CA the responder answers for.

    Attributes:
        certificate: The CA certificate (what requests name as issuer).
        private_key: Its key, which signs the responses unless a delegate is given.
        delegate_certificate: Optional delegated responder certificate (issued by the CA, with
            the ``id-kp-OCSPSigning`` usage); it signs instead and is included in the response.
        delegate_key: The delegate's key.
    """

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey
    delegate_certificate: x509.Certificate | None = None
    delegate_key: ec.EllipticCurvePrivateKey | None = None


class OcspResponder:
    """Builds signed OCSP responses for a set of issuers.

    Args:
        issuers: The CAs answered for.
        revocation: ``(issuer certificate, serial) → OcspRevocation | None``.
        clock: The current time (``thisUpdate``/``producedAt``).
        validity: ``nextUpdate - thisUpdate``.
    """

    def __init__(
        self,
        issuers: Sequence[OcspIssuer],
        *,
        revocation: Callable[[x509.Certificate, int], OcspRevocation | None],
        clock: Callable[[], datetime] = utcnow,
        validity: timedelta = timedelta(hours=1),
    ) -> None:
        self._issuers = tuple(issuers)
        self._revocation = revocation
        self._clock = clock
        self._validity = validity

    def _issuer_for(self, request: ocsp.OCSPRequest) -> OcspIssuer | None:
        algorithm = request.hash_algorithm
        for issuer in self._issuers:
            cert = issuer.certificate
            name_hash = hashes.Hash(algorithm)
            name_hash.update(cert.subject.public_bytes())
            # A CertID's issuerKeyHash is the hash of the issuer's subjectPublicKey bits; the SKI
            # method (1) is the SHA-1 of the same bits, so compute it the same way for any hash.
            key_hash = _key_bits_hash(cert, algorithm)
            if hmac.compare_digest(name_hash.finalize(), request.issuer_name_hash) and hmac.compare_digest(
                key_hash, request.issuer_key_hash
            ):
                return issuer
        return None

    def respond(self, request_der: bytes) -> bytes:
        """Answer one DER OCSPRequest with a DER OCSPResponse.

        Malformed requests get ``malformedRequest``; requests about an issuer this responder does
        not serve get ``unauthorized`` (as NVIDIA's responder answers an unknown issuer).
        """
        try:
            request = ocsp.load_der_ocsp_request(request_der)
        except ValueError:
            return unsuccessful_ocsp_response(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        issuer = self._issuer_for(request)
        if issuer is None:
            return unsuccessful_ocsp_response(ocsp.OCSPResponseStatus.UNAUTHORIZED)
        now = self._clock().replace(microsecond=0)
        revoked = self._revocation(issuer.certificate, request.serial_number)
        builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
            issuer_name_hash=request.issuer_name_hash,
            issuer_key_hash=request.issuer_key_hash,
            serial_number=request.serial_number,
            algorithm=request.hash_algorithm,
            cert_status=ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD,
            this_update=now,
            next_update=now + self._validity,
            revocation_time=revoked.revoked_at if revoked else None,
            revocation_reason=revoked.reason if revoked else None,
        )
        signer_cert, signer_key = issuer.certificate, issuer.private_key
        if issuer.delegate_certificate is not None and issuer.delegate_key is not None:
            signer_cert, signer_key = issuer.delegate_certificate, issuer.delegate_key
            builder = builder.certificates([signer_cert])
        builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, signer_cert)
        try:
            nonce = request.extensions.get_extension_for_class(x509.OCSPNonce).value
        except x509.ExtensionNotFound:
            nonce = None
        if nonce is not None:
            builder = builder.add_extension(nonce, critical=False)
        return builder.sign(signer_key, hashes.SHA384()).public_bytes(_DER)


def _key_bits_hash(cert: x509.Certificate, algorithm: hashes.HashAlgorithm) -> bytes:
    probe = ocsp.OCSPRequestBuilder().add_certificate(cert, cert, algorithm).build()
    return probe.issuer_key_hash


def unsuccessful_ocsp_response(status: ocsp.OCSPResponseStatus) -> bytes:
    """A DER OCSPResponse with an error status and no body (RFC 6960 §2.3)."""
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(_DER)


@dataclass(frozen=True, slots=True, kw_only=True)
class DevCollateralSettings:
    """What the development collateral server serves.

    Attributes:
        rim: ``rim id → XML`` (raises :class:`CollateralUnavailable` for an unknown id).
        rim_ids: The ids it holds.
        responder: The OCSP responder.
        tee: The virtual CPU TEE whose Intel-PCS-like / AMD-KDS-like collateral is served too
            (``None``: GPU collateral only).
        clock: The clock that dates the CPU collateral (issue date = the start of its day).
    """

    rim: Callable[[str], bytes]
    rim_ids: Callable[[], Sequence[str]]
    responder: OcspResponder
    tee: VirtualCpuTee | None = None
    clock: Callable[[], datetime] = utcnow


def create_dev_collateral_app(settings: DevCollateralSettings) -> FastAPI:
    """Build the FastAPI app of the development collateral server.

    FastAPI is imported here, not when :mod:`ccai.virtual` is imported: the virtual hardware is
    usable without the ``[service]`` extra.

    Args:
        settings: What to serve.

    Returns:
        The ASGI app (run it under uvicorn).
    """
    from ccai.virtual._collateral_app import build_app

    return build_app(settings)


def settings_for_virtual_gpu(
    backend: VirtualGpuBackend, *, clock: Callable[[], datetime] = utcnow, tee: VirtualCpuTee | None = None
) -> DevCollateralSettings:
    """Serve the virtual CC GPU's RIMs and answer OCSP for its test PKI.

    Under the ``REVOKED_CERTIFICATE`` fault the responder reports each GPU's BROM certificate as
    revoked (with the reason the test PKI records).

    Args:
        backend: The virtual GPU (``VirtualGpuBackend.open()``).
        clock: The responder's clock.
        tee: The virtual CPU TEE of the same virtual VM, whose collateral is served too.
    """
    pki = backend.pki
    # The switches' CAs (BROM per switch, LS10 provisioner, BIOS RIM signers) are issued when first
    # used: issue them now, so the responder answers for every certificate the evidence carries.
    for index in range(backend.switch_count):
        backend.switch_certificate_chain(index)
    if backend.switch_count:
        backend.rim(backend.switch_rim_id())
    issuers = [
        OcspIssuer(certificate=cred.certificate, private_key=cred.private_key)
        for cred in pki.credentials()
        if _is_ca(cred.certificate)
    ]
    revoked_serials: frozenset[int] = pki.revoked_serials

    def revocation(issuer: x509.Certificate, serial: int) -> OcspRevocation | None:
        if serial not in revoked_serials:
            return None
        for cred in pki.credentials():
            cert = cred.certificate
            if cert.serial_number == serial and cert.issuer == issuer.subject:
                record = pki.revocation(cert)
                if record is not None:
                    return OcspRevocation(revoked_at=record.revoked_at, reason=record.reason)
        return OcspRevocation(
            revoked_at=datetime(2024, 6, 1, tzinfo=UTC), reason=x509.ReasonFlags.unspecified
        )

    def rim_ids() -> list[str]:
        ids = {rim_id for i in range(backend.gpu_count) for rim_id in backend.rim_ids(i)}
        if backend.switch_count:
            ids.add(backend.switch_rim_id())
        return sorted(ids)

    return DevCollateralSettings(
        rim=backend.rim,
        rim_ids=rim_ids,
        responder=OcspResponder(issuers, revocation=revocation, clock=clock),
        tee=tee,
        clock=clock,
    )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


@contextmanager
def run_in_background(
    app: Any, *, host: str = "127.0.0.1", port: int = 0, lifespan: Literal["on", "off"] = "off"
) -> Iterator[str]:
    """Run an ASGI app under uvicorn in a daemon thread; yield its base URL; stop it on exit.

    The socket is bound before the server starts (``port=0`` picks a free port), so the URL is
    usable as soon as it is yielded. With ``lifespan="on"`` (apps that open a database in their
    lifespan, such as the key broker and the attestation service) it is yielded once the startup
    completed.

    Raises:
        UsageError: ``host:port`` cannot be bound (for example, address already in use).
    """
    import uvicorn

    sock = listen_socket(host, port)
    sock.listen(128)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan=lifespan, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="ccai-dev-server"
    )
    thread.start()
    if lifespan != "off":
        while not server.started:
            if not thread.is_alive():
                sock.close()
                raise UsageError(f"the server on {host}:{bound_port} did not start")
            time.sleep(0.01)
    try:
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
