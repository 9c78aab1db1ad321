"""Composite routes: ``POST /v1/nonce`` (a stored single-use challenge) and ``POST /v1/attest``.

``/v1/attest`` takes a ccai evidence bundle (the JSON of ``ccai.evidence.dump_evidence_bundle``,
with or without embedded collateral), optionally wrapped as ``{"bundle": {...}, "policy": NAME}``,
and answers ``{"token", "result", "steps", "error", "policy"}``.
"""

from __future__ import annotations

import json
from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ccai.errors import Error
from ccai.service._http import ApiError, caller, read_json, status_for
from ccai.service._service import AttestationService, outcome_json

__all__ = ["router"]

router = APIRouter()


@router.post("/v1/nonce")
async def new_nonce(request: Request) -> JSONResponse:
    """Issue a challenge: ``{"nonce": hex, "expires_at": ISO 8601}``. Optional body
    ``{"ttl_seconds": N}`` shortens (never lengthens) the service's nonce lifetime."""
    await caller(request)
    ttl = None
    if int(request.headers.get("content-length") or 0) > 0:
        doc, _ = await read_json(request, limit=1024)
        value = doc.get("ttl_seconds") if isinstance(doc, dict) else None
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ApiError("INVALID_REQUEST", "ttl_seconds must be a positive integer")
            ttl = timedelta(seconds=value)
    service: AttestationService = request.app.state.service
    nonce, expires = await service.issue_nonce(ttl)
    return JSONResponse({"nonce": nonce.hex(), "expires_at": expires.isoformat()})


@router.post("/v1/attest")
async def attest(request: Request) -> JSONResponse:
    """Verify a composite evidence bundle bound to a live nonce of this service."""
    state = request.app.state
    who = await caller(request)
    doc, body = await read_json(request, limit=state.settings.max_body_bytes)
    policy = None
    if isinstance(doc, dict) and "bundle" in doc:
        unknown = set(doc) - {"bundle", "policy"}
        if unknown:
            raise ApiError("INVALID_REQUEST", f"unknown keys: {', '.join(sorted(unknown))}")
        policy = doc.get("policy")
        if policy is not None and not isinstance(policy, str):
            raise ApiError("INVALID_REQUEST", "policy must be a name")
        body = json.dumps(doc["bundle"]).encode()
        doc = doc["bundle"]
    if isinstance(doc, dict) and len(doc.get("gpus") or ()) > state.settings.max_gpus:
        raise ApiError("TOO_MANY_DEVICES", f"at most {state.settings.max_gpus} GPUs per bundle")
    service: AttestationService = state.service
    try:
        outcome = await service.attest_bundle(
            body, policy_name=policy, caller=who.key_id, request_id=request.state.request_id
        )
    except Error as exc:
        raise status_for(exc) from None
    request.state.verdict = outcome.result
    return JSONResponse(outcome_json(outcome), headers={"X-Ccai-Jti": outcome.jti})
