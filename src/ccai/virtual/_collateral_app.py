"""The FastAPI routes of the development collateral server (imported only when an app is built).

:func:`ccai.virtual.create_dev_collateral_app` imports this module lazily, so importing
:mod:`ccai.virtual` does not import FastAPI.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from ccai.errors import CollateralUnavailable, UsageError
from ccai.virtual._collateral_server import (
    MAX_OCSP_REQUEST,
    OCSP_RESPONSE,
    DevCollateralSettings,
    unsuccessful_ocsp_response,
)

if TYPE_CHECKING:
    from ccai.virtual._tee import VirtualCpuTee

__all__ = ["build_app"]


def build_app(settings: DevCollateralSettings) -> FastAPI:
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
        if len(body) > MAX_OCSP_REQUEST:
            der = unsuccessful_ocsp_response(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        else:
            der = settings.responder.respond(body)
        return Response(content=der, media_type=OCSP_RESPONSE)

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
