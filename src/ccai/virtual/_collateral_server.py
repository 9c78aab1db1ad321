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

import base64
import hashlib
import hmac
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from ccai._time import utcnow
from ccai.errors import CollateralUnavailable, UsageError

if TYPE_CHECKING:
    from ccai.device._virtual import VirtualGpuBackend
    from ccai.tee import VirtualCpuTee

__all__ = [
    "DevCollateralSettings",
    "OcspIssuer",
    "OcspResponder",
    "Revocation",
    "create_dev_collateral_app",
    "run_in_background",
    "settings_for_virtual_gpu",
]

_OCSP_REQUEST = "application/ocsp-request"
_OCSP_RESPONSE = "application/ocsp-response"
_MAX_OCSP_REQUEST = 16 * 1024
_DER = serialization.Encoding.DER


@dataclass(frozen=True, slots=True, kw_only=True)
class Revocation:
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
        revocation: ``(issuer certificate, serial) → Revocation | None``.
        clock: The current time (``thisUpdate``/``producedAt``).
        validity: ``nextUpdate - thisUpdate``.
    """

    def __init__(
        self,
        issuers: Sequence[OcspIssuer],
        *,
        revocation: Callable[[x509.Certificate, int], Revocation | None],
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
            return _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        issuer = self._issuer_for(request)
        if issuer is None:
            return _unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
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


def _unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
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

    Args:
        settings: What to serve.

    Returns:
        The ASGI app (run it under uvicorn).
    """
    app = FastAPI(title="ccai development collateral server", docs_url=None, redoc_url=None, openapi_url=None)
    started = datetime.now(UTC).isoformat()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/rim/ids")
    def rim_ids() -> dict[str, Any]:
        return {"ids": sorted(settings.rim_ids()), "request_id": str(uuid.uuid4()), "last_updated": started}

    @app.get("/v1/rim/{rim_id}")
    def rim(rim_id: str) -> Response:
        try:
            xml = settings.rim(rim_id)
        except (CollateralUnavailable, UsageError):
            return JSONResponse({"message": "RIM_NOT_FOUND"}, status_code=404)
        return JSONResponse(
            {
                "id": rim_id,
                "rim": base64.b64encode(xml).decode(),
                "sha256": hashlib.sha256(xml).hexdigest(),
                "last_updated": started,
                "rim_format": "TCG",
                "request_id": str(uuid.uuid4()),
            }
        )

    async def ocsp_endpoint(request: Request) -> Response:
        body = await request.body()
        if len(body) > _MAX_OCSP_REQUEST:
            der = _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        else:
            der = settings.responder.respond(body)
        return Response(content=der, media_type=_OCSP_RESPONSE)

    app.add_api_route("/ocsp", ocsp_endpoint, methods=["POST"])
    app.add_api_route("/", ocsp_endpoint, methods=["POST"])
    if settings.tee is not None:
        _add_cpu_routes(app, settings.tee, settings.clock)
    return app


def _add_cpu_routes(app: FastAPI, tee: VirtualCpuTee, clock: Callable[[], datetime]) -> None:
    """Intel PCS v4 and AMD KDS paths (cpu-evidence.md §2.7, §3.3) for the virtual CPU TEE, in the
    shapes :class:`~ccai.collateral.IntelPcsClient` and :class:`~ccai.collateral.AmdKdsClient` read."""
    import urllib.parse

    not_found = JSONResponse({"message": "NOT_FOUND"}, status_code=404)

    def tdx() -> Any:
        return tee.tdx_collateral(clock()) if tee.tee == "tdx" else None

    def signed(body_member: str, text: str, signature: bytes) -> str:
        # The signed member's exact text, as PCS serves it: the client cuts it out byte-exactly.
        return f'{{"{body_member}":{text},"signature":"{signature.hex()}"}}'

    def tcb_info(fmspc: str = "") -> Response:
        coll = tdx()
        if coll is None or fmspc.lower() != tee.tdx_platform.fmspc.hex():
            return not_found
        return Response(
            signed("tcbInfo", coll.tcb_info, coll.tcb_info_signature),
            media_type="application/json",
            headers={"TCB-Info-Issuer-Chain": urllib.parse.quote(coll.tcb_info_issuer_chain)},
        )

    def qe_identity() -> Response:
        coll = tdx()
        if coll is None:
            return not_found
        return Response(
            signed("enclaveIdentity", coll.qe_identity, coll.qe_identity_signature),
            media_type="application/json",
            headers={"SGX-Enclave-Identity-Issuer-Chain": urllib.parse.quote(coll.qe_identity_issuer_chain)},
        )

    def pck_crl(ca: str = "platform", encoding: str = "der") -> Response:
        coll = tdx()
        if coll is None or ca != "platform" or coll.pck_crl is None:
            return not_found
        return Response(
            coll.pck_crl,
            media_type="application/pkix-crl",
            headers={"SGX-PCK-CRL-Issuer-Chain": urllib.parse.quote(coll.pck_crl_issuer_chain or "")},
        )

    def root_ca_crl() -> Response:
        coll = tdx()
        if coll is None or coll.root_ca_crl is None:
            return not_found
        return Response(coll.root_ca_crl, media_type="application/pkix-crl")

    for prefix in ("/tdx/certification/v4", "/sgx/certification/v4"):
        app.add_api_route(f"{prefix}/tcb", tcb_info, methods=["GET"])
        app.add_api_route(f"{prefix}/qe/identity", qe_identity, methods=["GET"])
    app.add_api_route("/sgx/certification/v4/pckcrl", pck_crl, methods=["GET"])
    app.add_api_route("/sgx/certification/v4/rootcacrl", root_ca_crl, methods=["GET"])

    def snp() -> Any:
        return tee.snp_collateral(clock()) if tee.tee == "snp" else None

    def vcek(product: str, hwid: str) -> Response:
        coll = snp()
        if coll is None or product != tee.snp_platform.product or hwid.lower() != tee.chip_id().hex():
            return not_found
        return Response(coll.vcek, media_type="application/pkix-cert")

    def cert_chain(product: str) -> Response:
        coll = snp()
        if coll is None or product != tee.snp_platform.product or coll.ask is None or coll.ark is None:
            return not_found
        pem = b"".join(
            x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
            for der in (coll.ask, coll.ark)
        )
        return Response(pem, media_type="application/x-pem-file")

    def amd_crl(product: str) -> Response:
        coll = snp()
        if coll is None or product != tee.snp_platform.product or coll.crl is None:
            return not_found
        return Response(coll.crl, media_type="application/pkix-crl")

    app.add_api_route("/vcek/v1/{product}/cert_chain", cert_chain, methods=["GET"])
    app.add_api_route("/vcek/v1/{product}/crl", amd_crl, methods=["GET"])
    app.add_api_route("/vcek/v1/{product}/{hwid}", vcek, methods=["GET"])


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
    issuers = [
        OcspIssuer(certificate=cred.certificate, private_key=cred.private_key)
        for cred in pki.credentials()
        if _is_ca(cred.certificate)
    ]
    revoked_serials: frozenset[int] = pki.revoked_serials

    def revocation(issuer: x509.Certificate, serial: int) -> Revocation | None:
        if serial not in revoked_serials:
            return None
        for cred in pki.credentials():
            cert = cred.certificate
            if cert.serial_number == serial and cert.issuer == issuer.subject:
                record = pki.revocation(cert)
                if record is not None:
                    return Revocation(revoked_at=record.revoked_at, reason=record.reason)
        return Revocation(revoked_at=datetime(2024, 6, 1, tzinfo=UTC), reason=x509.ReasonFlags.unspecified)

    def rim_ids() -> list[str]:
        return sorted({rim_id for i in range(backend.gpu_count) for rim_id in backend.rim_ids(i)})

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
def run_in_background(app: Any, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run an ASGI app under uvicorn in a daemon thread; yield its base URL; stop it on exit.

    The socket is bound before the server starts (``port=0`` picks a free port), so the URL is
    usable as soon as it is yielded.
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="ccai-dev-server"
    )
    thread.start()
    try:
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
