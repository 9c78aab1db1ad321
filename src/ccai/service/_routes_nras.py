"""NRAS-compatible routes: ``POST /v3|v4/attest/gpu``, ``POST /v3|v4/attest/switch``, JWKS, health.

The request and the answer have NRAS's shapes (gpu-evidence.md §11): ``{"nonce", "arch",
"evidence_list": [{"evidence", "certificate"}], "claims_version"}`` in, the detached EAT
``[["JWT", overall], {"GPU-0": jwt, …}]`` out — HTTP 200 also when the verdict is false. The switch
endpoints take the same body with ``arch`` ``LS10`` (what NVIDIA's SDK sends) and answer
``{"SWITCH-0": jwt, …}`` submodules with NRAS's switch claims.
"""

from __future__ import annotations

import hashlib
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError

from ccai.errors import Error
from ccai.evidence import GpuEvidence
from ccai.service._http import ApiError, caller, read_json, status_for
from ccai.service._service import AttestationService, GpuRequest

__all__ = ["router"]

router = APIRouter()
_ARCHES = ("HOPPER", "BLACKWELL")
_SWITCH_ARCHES = ("LS10",)


class _Item(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    evidence: str
    certificate: str
    arch: str | None = None
    nonce: str | None = None
    version: str | None = None
    driver_version: str | None = None
    vbios_version: str | None = None


class _NrasRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    nonce: str
    arch: str | None = None
    evidence_list: list[_Item]
    claims_version: str | None = None
    policy: str | None = None


def _b64(text: str, what: str, index: int) -> bytes:
    import base64
    import binascii

    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError("INVALID_REQUEST", f"evidence_list[{index}].{what} is not base64") from None


def _decode(
    doc: Any, body: bytes, *, default_claims: str, max_gpus: int, arches: tuple[str, ...] = _ARCHES
) -> GpuRequest:
    try:
        req = _NrasRequest.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ApiError("INVALID_REQUEST", f"invalid request: {where}: {first['msg']}") from None
    try:
        nonce = bytes.fromhex(req.nonce)
    except ValueError:
        raise ApiError("INVALID_NONCE", "nonce must be 64 hex characters") from None
    if len(nonce) != 32:
        raise ApiError("INVALID_NONCE", "nonce must be 32 bytes (64 hex characters)")
    if not req.evidence_list:
        raise ApiError("INVALID_REQUEST", "evidence_list is empty")
    if len(req.evidence_list) > max_gpus:
        raise ApiError("TOO_MANY_DEVICES", f"at most {max_gpus} evidence items per request")
    arch = (req.arch or "").upper()
    if req.arch is not None and (not req.arch.isascii() or arch not in arches):
        raise ApiError(
            "UNSUPPORTED_ARCH", f"unsupported arch {req.arch[:40]!r}; expected {' or '.join(arches)}"
        )
    claims_version = req.claims_version or default_claims
    if claims_version not in ("2.0", "3.0"):
        raise ApiError("INVALID_REQUEST", "claims_version must be 2.0 or 3.0")
    items = []
    for i, item in enumerate(req.evidence_list):
        item_arch = (item.arch or req.arch or "").upper()
        if item_arch and (not item_arch.isascii() or item_arch not in arches):
            raise ApiError("UNSUPPORTED_ARCH", f"unsupported arch in evidence_list[{i}]")
        items.append(
            GpuEvidence(
                arch=item_arch,
                nonce=nonce,
                report=_b64(item.evidence, "evidence", i),
                certificate_chain=_b64(item.certificate, "certificate", i),
            )
        )
    return GpuRequest(
        nonce=nonce,
        evidence=tuple(items),
        claims_version=claims_version,
        policy=req.policy,
        digest=hashlib.sha256(body).hexdigest(),
    )


async def _attest(
    request: Request, *, endpoint: str, claims_version: str, switch: bool = False
) -> JSONResponse:
    state = request.app.state
    who = await caller(request)
    doc, body = await read_json(request, limit=state.settings.max_body_bytes)
    device_request = _decode(
        doc,
        body,
        default_claims=claims_version,
        max_gpus=state.settings.max_gpus,
        arches=_SWITCH_ARCHES if switch else _ARCHES,
    )
    service: AttestationService = state.service
    attest = service.attest_switch if switch else service.attest_gpu
    try:
        outcome = await attest(
            device_request, endpoint=endpoint, caller=who.key_id, request_id=request.state.request_id
        )
    except Error as exc:
        raise status_for(exc) from None
    request.state.verdict = outcome.result
    return JSONResponse(outcome.eat.to_json(), headers={"X-Ccai-Jti": outcome.jti})


@router.post("/v4/attest/gpu")
async def attest_gpu_v4(request: Request) -> JSONResponse:
    """GPU attestation, claims 3.0."""
    return await _attest(request, endpoint="/v4/attest/gpu", claims_version="3.0")


@router.post("/v3/attest/gpu")
async def attest_gpu_v3(request: Request) -> JSONResponse:
    """GPU attestation, claims 2.0."""
    return await _attest(request, endpoint="/v3/attest/gpu", claims_version="2.0")


@router.post("/v4/attest/switch")
async def attest_switch_v4(request: Request) -> JSONResponse:
    """NVSwitch (LS10) attestation, claims 3.0."""
    return await _attest(request, endpoint="/v4/attest/switch", claims_version="3.0", switch=True)


@router.post("/v3/attest/switch")
async def attest_switch_v3(request: Request) -> JSONResponse:
    """NVSwitch (LS10) attestation, claims 2.0."""
    return await _attest(request, endpoint="/v3/attest/switch", claims_version="2.0", switch=True)


@router.get("/.well-known/jwks.json")
async def jwks(request: Request) -> JSONResponse:
    """The token-signing keys (current and previous), each with ``x5c``."""
    service: AttestationService = request.app.state.service
    await service.keys.maybe_reload()
    return JSONResponse(service.jwks())


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    """Liveness and the database's reachability."""
    ok = await request.app.state.service.repo.ping()
    return JSONResponse({"status": "ok" if ok else "degraded"}, status_code=200 if ok else 503)
