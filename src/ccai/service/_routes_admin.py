"""Admin routes (admin API key only): named policies and signing-key rotation.

``PUT /v1/admin/policies/{name}`` (body: the policy JSON) stores a new version;
``GET /v1/admin/policies/{name}`` shows the newest; ``GET /v1/admin/policies`` lists them;
``POST /v1/admin/keys/rotate`` makes a new current signing key.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ccai.errors import Error
from ccai.service._http import ApiError, caller, read_json, status_for
from ccai.service._keys import rotate
from ccai.service._service import AttestationService

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin")


@router.get("/policies")
async def list_policies(request: Request) -> JSONResponse:
    """Every policy name with its newest version."""
    await caller(request, admin=True)
    service: AttestationService = request.app.state.service
    names = await service.repo.policy_names()
    return JSONResponse({"policies": [{"name": n, "version": v} for n, v in names]})


@router.get("/policies/{name}")
async def show_policy(name: str, request: Request) -> JSONResponse:
    """The newest version of a policy."""
    await caller(request, admin=True)
    service: AttestationService = request.app.state.service
    stored = await service.repo.get_policy(name)
    if stored is None:
        raise ApiError("POLICY_NOT_FOUND", f"no policy named {name!r}")
    return JSONResponse(
        {"name": stored.name, "version": stored.version, "policy": json.loads(stored.document)}
    )


@router.put("/policies/{name}")
async def put_policy(name: str, request: Request) -> JSONResponse:
    """Store a new version of a policy (validated first)."""
    await caller(request, admin=True)
    doc, _ = await read_json(request, limit=request.app.state.settings.max_body_bytes)
    service: AttestationService = request.app.state.service
    try:
        stored = await service.put_policy(name, json.dumps(doc, sort_keys=True))
    except Error as exc:
        raise status_for(exc) from None
    return JSONResponse({"name": stored.name, "version": stored.version})


@router.post("/keys/rotate")
async def rotate_key(request: Request) -> JSONResponse:
    """Make a new current production signing key (the old one stays in the JWKS as previous)."""
    await caller(request, admin=True)
    service: AttestationService = request.app.state.service
    kid = await rotate(service.repo, request.app.state.master_key)
    await service.keys.reload()
    return JSONResponse({"kid": kid})
