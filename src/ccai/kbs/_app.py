"""The key broker's settings and app factory (FastAPI; routes only translate HTTP ↔ :class:`Broker`).

Routes (Trustee's RCAR, ``/kbs/v0``):
  ``POST /auth`` → cookie ``kbs-session-id`` + ``{"nonce"}``;
  ``POST /attest`` (cookie) → ``{"token"}``;
  ``GET /resource/R/T/G`` (cookie or ``Authorization: Bearer``) → flattened JSON JWE;
  admin (``Authorization: Bearer <admin credential>``): ``POST /resource/R/T/G`` (body: the value),
  ``PUT /admin/policy/NAME`` ``{"document", "resource"|"repo"}``, ``GET /admin/policy/NAME``,
  ``POST /admin/rotate``, ``GET /admin/audit``; and ``GET /health``.
"""

from __future__ import annotations

import contextlib
import gc
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ccai._files import atomic_write
from ccai._home import ccai_home
from ccai._json import load_json
from ccai._logs import configure_json_logging
from ccai.collateral import (
    DEFAULT_OCSP_URL,
    DEFAULT_RIM_SERVICE_URL,
    INTEL_PCS_URL,
    BundleSource,
    CachedSource,
    CollateralBundle,
    CollateralCache,
    CollateralSource,
    IntelPcsClient,
    OcspClient,
    RimServiceClient,
    SourceChain,
    read_bundle,
)
from ccai.errors import Error, UsageError
from ccai.kbs._broker import Broker, BrokerRefusal
from ccai.kbs._db import create_engine, migrate, sessions
from ccai.kbs._keys import FileKeyProvider, KeyProvider
from ccai.kbs._repository import Repository
from ccai.verify import TrustAnchors, Verifier

__all__ = ["KbsSettings", "admin_credential_path", "create_kbs_app", "read_admin_credential"]

_LOG = logging.getLogger("ccai.kbs")
_COOKIE = "kbs-session-id"
_MAX_BODY = 4 * 1024 * 1024


class KbsSettings(BaseModel):
    """The key broker's configuration (frozen; unknown keys refused).

    Attributes:
        host, port: Where to listen (loopback by default).
        database_url: SQLAlchemy async URL (default SQLite ``$CCAI_HOME/kbs.db``).
        offline: Never fetch collateral over the network (use ``collateral`` / embedded collateral).
        collateral: An offline collateral bundle.
        rim_service_url, ocsp_url: Online GPU collateral (NVIDIA's by default).
        pcs_url: Intel PCS / PCCS for the TDX collateral of Trustee-encoded quotes (composite
            bundles carry theirs; default Intel's when online). Offline, only the bundle's is used.
        allow_simulated: Accept ccai's virtual hardware (development only).
        master_key_file: The master key ring (default ``$CCAI_HOME/kbs-master.keys``).
        admin_credential_file: The admin credential (default ``$CCAI_HOME/kbs-admin.token``).
        challenge_ttl_seconds, token_ttl_seconds: Lifetimes of challenges and tokens.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8444, ge=0, le=65535)
    database_url: str | None = None
    offline: bool = False
    collateral: Path | None = None
    rim_service_url: str | None = None
    ocsp_url: str | None = None
    pcs_url: str | None = None
    allow_simulated: bool = False
    master_key_file: Path | None = None
    admin_credential_file: Path | None = None
    challenge_ttl_seconds: int = Field(default=300, ge=1, le=86400)
    token_ttl_seconds: int = Field(default=300, ge=1, le=86400)

    @classmethod
    def build(cls, **given: Any) -> KbsSettings:
        """Settings from the given values (``None`` = default).

        Raises:
            UsageError: an invalid value.
        """
        try:
            return cls.model_validate({k: v for k, v in given.items() if v is not None})
        except ValidationError as exc:
            first = exc.errors()[0]
            raise UsageError(
                f"invalid kbs setting {'.'.join(map(str, first['loc']))}: {first['msg']}"
            ) from None

    def resolved_database_url(self) -> str:
        """``database_url`` or SQLite under ``$CCAI_HOME``."""
        return self.database_url or f"sqlite+aiosqlite:///{ccai_home() / 'kbs.db'}"


def admin_credential_path(settings: KbsSettings | None = None) -> Path:
    """Where the admin credential is kept."""
    given = settings.admin_credential_file if settings is not None else None
    return given or ccai_home() / "kbs-admin.token"


def read_admin_credential(path: Path | None = None) -> str:
    """The admin credential written by the broker on its first start.

    Raises:
        UsageError: the file is missing (start the broker first, or pass the credential).
    """
    path = path or admin_credential_path()
    try:
        return path.read_text().strip()
    except OSError:
        raise UsageError(
            f"no admin credential at {path}", hint="start `ccai serve kbs` on this machine first"
        ) from None


def _ensure_admin_credential(path: Path) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # replace=False: two replicas starting together keep the first credential written.
        with contextlib.suppress(FileExistsError):
            atomic_write(path, (secrets.token_urlsafe(32) + "\n").encode(), mode=0o600, replace=False)
    return read_admin_credential(path)


def _verifier(
    settings: KbsSettings, anchors: TrustAnchors | None, bundle: CollateralBundle | None
) -> Verifier:
    if settings.allow_simulated and (anchors is None or not anchors.simulated):
        raise UsageError(
            "allow_simulated needs the virtual hardware's test-PKI anchors, passed in by the caller"
        )
    if not settings.allow_simulated and anchors is not None and anchors.simulated:
        raise UsageError("test-PKI anchors are trusted only with allow_simulated")
    sources: list[CollateralSource] = []
    if bundle is not None:
        sources.append(BundleSource(bundle))
    if not settings.offline:
        origin = SourceChain(
            [
                RimServiceClient(settings.rim_service_url or DEFAULT_RIM_SERVICE_URL),
                OcspClient(settings.ocsp_url or DEFAULT_OCSP_URL),
            ]
        )
        sources.append(CachedSource(origin, CollateralCache()))
    return Verifier(
        anchors=anchors,
        allow_simulated=settings.allow_simulated,
        gpu_source=SourceChain(sources) if sources else None,
        check_revocation=not settings.offline or bundle is not None,
        # Intel PCS (or the given PCCS) for Trustee-encoded quotes, which carry no collateral.
        pcs=None if settings.offline else IntelPcsClient(settings.pcs_url or INTEL_PCS_URL),
    )


_FROZEN = False


def _freeze_startup_heap() -> None:
    """Move what start-up allocated (modules, trust anchors, the verifier, the engine) out of the
    cyclic garbage collector's view, once per process.

    A full collection otherwise walks that whole heap every few dozen requests (tens of ms on one
    request); after the freeze it walks only what requests allocate. Garbage is collected first,
    so nothing unreachable is frozen.
    """
    global _FROZEN  # noqa: PLW0603 - once per process
    if not _FROZEN:
        _FROZEN = True
        gc.collect()
        gc.freeze()


def _log(event: str, **fields: Any) -> None:
    # One JSON line per event (ccai._logs); callers pass no secrets (no keys, tokens, values or nonces).
    _LOG.info(event, extra=fields)


def _refusal(exc: BrokerRefusal) -> JSONResponse:
    return JSONResponse(status_code=exc.status, content={"error": exc.reason, "detail": exc.message})


def create_kbs_app(
    settings: KbsSettings, *, anchors: TrustAnchors | None = None, keys: KeyProvider | None = None
) -> FastAPI:
    """Build the key broker app.

    Args:
        settings: The settings.
        anchors: Trust anchors; ccai's test-PKI anchors must be passed here with ``allow_simulated``.
        keys: The master-key provider (default: :class:`FileKeyProvider` under ``$CCAI_HOME``).

    Raises:
        UsageError: inconsistent settings.
    """
    bundle = read_bundle(settings.collateral) if settings.collateral is not None else None
    verifier = _verifier(settings, anchors, bundle)
    configure_json_logging(_LOG.name, text_key="event")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.resolved_database_url())
        try:
            await migrate(engine)

            provider = keys or FileKeyProvider(settings.master_key_file or ccai_home() / "kbs-master.keys")
            broker = Broker(
                verifier=verifier,
                repo=Repository(sessions(engine)),
                keys=provider,
                allow_simulated=settings.allow_simulated,
                collateral=bundle,
                challenge_ttl=timedelta(seconds=settings.challenge_ttl_seconds),
                token_ttl=timedelta(seconds=settings.token_ttl_seconds),
            )
            await broker.start()
            app.state.broker = broker
            app.state.admin = _ensure_admin_credential(admin_credential_path(settings))
            _freeze_startup_heap()
            _log(
                "kbs started",
                database=engine.dialect.name,
                simulated=settings.allow_simulated,
                pid=os.getpid(),
            )
            yield
        finally:
            await engine.dispose()
            verifier.close()

    app = FastAPI(title="ccai key broker", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    def broker_of(request: Request) -> Broker:
        broker: Broker = request.app.state.broker
        return broker

    async def json_body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > _MAX_BODY:
            raise BrokerRefusal(413, "too_large", "request body too large")
        try:
            # Strict and depth-limited; decoded once: the attest route hands the evidence bundle
            # inside on as a decoded object (no second encode and parse).
            body = load_json(raw or b"{}", what="the body")
        except Error as exc:
            raise BrokerRefusal(400, "bad_request", exc.message) from None
        if not isinstance(body, dict):
            raise BrokerRefusal(400, "bad_request", "the body must be a JSON object")
        return body

    def check_admin(request: Request) -> None:
        given = request.headers.get("authorization", "")
        expected = "Bearer " + request.app.state.admin
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise BrokerRefusal(401, "not_admin", "admin credential required")

    @app.exception_handler(BrokerRefusal)
    async def _refused(request: Request, exc: BrokerRefusal) -> JSONResponse:
        _log("refused", path=request.url.path, status=exc.status, reason=exc.reason)
        return _refusal(exc)

    @app.exception_handler(Error)
    async def _error(request: Request, exc: Error) -> JSONResponse:
        _log("error", path=request.url.path, error=type(exc).__name__)
        status = 400 if isinstance(exc, UsageError) else 403
        return JSONResponse(status_code=status, content={"error": type(exc).__name__, "detail": exc.message})

    @app.get("/health")
    async def _health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/kbs/v0/auth")
    async def _auth(request: Request) -> Response:
        sid, nonce = await broker_of(request).auth(await json_body(request))
        response = JSONResponse({"nonce": nonce, "extra-params": {}})
        response.set_cookie(
            _COOKIE, sid, max_age=settings.challenge_ttl_seconds, httponly=True, samesite="strict"
        )
        return response

    @app.post("/kbs/v0/attest")
    async def _attest(request: Request) -> Response:
        started = time.perf_counter()
        sid = request.cookies.get(_COOKIE)
        token = await broker_of(request).attest(sid, await json_body(request))
        _log("attested", ms=round((time.perf_counter() - started) * 1000, 2))
        return JSONResponse({"token": token})

    @app.get("/kbs/v0/resource/{repo}/{kind}/{tag}")
    async def _resource(repo: str, kind: str, tag: str, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        name = f"{repo}/{kind}/{tag}"
        jwe = await broker_of(request).resource(name, sid=request.cookies.get(_COOKIE), bearer=bearer)
        _log("released", resource=name)
        return JSONResponse(jwe)

    @app.post("/kbs/v0/resource/{repo}/{kind}/{tag}")
    async def _put(repo: str, kind: str, tag: str, request: Request) -> Response:
        check_admin(request)
        raw = await request.body()
        if len(raw) > _MAX_BODY:
            raise BrokerRefusal(413, "too_large", "resource too large")
        version = await broker_of(request).put_resource(f"{repo}/{kind}/{tag}", raw)
        _log("stored", resource=f"{repo}/{kind}/{tag}", version=version)
        return JSONResponse({"resource": f"{repo}/{kind}/{tag}", "version": version})

    @app.put("/kbs/v0/admin/policy/{name}")
    async def _set_policy(name: str, request: Request) -> Response:
        check_admin(request)
        body = await json_body(request)
        document = body.get("document")
        if not isinstance(document, str):
            document = json.dumps(document)
        version = await broker_of(request).set_policy(
            name, document, resource=body.get("resource"), repo=body.get("repo")
        )
        return JSONResponse({"policy": name, "version": version})

    @app.get("/kbs/v0/admin/policy/{name}")
    async def _show_policy(name: str, request: Request) -> Response:
        check_admin(request)
        shown = await broker_of(request).show_policy(name)
        if shown is None:
            raise BrokerRefusal(404, "not_found", f"no policy named {name}")
        return JSONResponse(shown)

    @app.post("/kbs/v0/admin/rotate")
    async def _rotate(request: Request) -> Response:
        check_admin(request)
        return JSONResponse(await broker_of(request).rotate())

    @app.get("/kbs/v0/admin/audit")
    async def _audit(request: Request) -> Response:
        check_admin(request)
        return JSONResponse({"records": await broker_of(request).repo.audit()})

    return app
