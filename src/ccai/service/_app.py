"""The app factory: :func:`create_app` builds the attestation service from its settings.

Construction (fails closed — any problem stops the start with a clear message):

1. the :class:`~ccai.verify.Verifier` — trust anchors (the pinned vendor roots; the caller's
   test-PKI anchors only with ``allow_simulated``), collateral sources (offline bundle, RIM dir,
   then the online RIM service / OCSP responder behind one shared freshness-aware cache; Intel PCS
   and AMD KDS clients for CPU collateral a bundle does not embed) — built once and reused by every
   request, so its caches are shared;
2. at start (lifespan): the database engine, Alembic migrations, the policies named in the
   settings, the signing-key ring (first keys created when there are none).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.ext.asyncio import AsyncEngine

from ccai.collateral import (
    AMD_KDS_URL,
    DEFAULT_OCSP_URL,
    DEFAULT_RIM_SERVICE_URL,
    INTEL_PCS_URL,
    AmdKdsClient,
    BundleSource,
    CachedSource,
    CollateralCache,
    CollateralSource,
    IntelPcsClient,
    OcspClient,
    RimDirectory,
    RimServiceClient,
    SourceChain,
    read_bundle,
)
from ccai.errors import UsageError
from ccai.service._auth import ApiKeyAuth, RateLimiter
from ccai.service._db import create_engine, migrate, session_factory
from ccai.service._http import ApiError, error_response
from ccai.service._keys import KeyRing, MasterKey, load_master_key
from ccai.service._logging import configure_logging, log_event
from ccai.service._metrics import CONTENT_TYPE_LATEST, MeteredSource, Metrics
from ccai.service._repository import Repository
from ccai.service._service import AttestationService
from ccai.service._settings import ServiceSettings
from ccai.verify import Policy, TrustAnchors, Verifier

__all__ = ["Database", "build_verifier", "create_app", "open_database", "prepare_database"]

_Scope = MutableMapping[str, Any]
_Message = MutableMapping[str, Any]
_Receive = Callable[[], Awaitable[_Message]]
_Send = Callable[[_Message], Awaitable[None]]


def build_verifier(settings: ServiceSettings, *, anchors: TrustAnchors | None, metrics: Metrics) -> Verifier:
    """The app's one Verifier, from the settings.

    Raises:
        UsageError: ``allow_simulated`` without test-PKI anchors, or an unreadable bundle / RIM dir.
    """
    if settings.allow_simulated and (anchors is None or not anchors.simulated):
        raise UsageError(
            "allow_simulated needs the virtual hardware's test-PKI anchors, passed in by the caller",
            hint="ccai serve attestation --allow-simulated builds them (ccai.virtual.virtual_trust_anchors)",
        )
    if not settings.allow_simulated and anchors is not None and anchors.simulated:
        raise UsageError("test-PKI anchors are trusted only with allow_simulated")
    sources: list[CollateralSource] = []
    bundle = read_bundle(settings.collateral) if settings.collateral is not None else None
    if bundle is not None:
        sources.append(BundleSource(bundle))
    if settings.rim_dir is not None:
        if not settings.rim_dir.is_dir():
            raise UsageError(f"--rim-dir {settings.rim_dir} is not a directory")
        sources.append(RimDirectory(settings.rim_dir))
    if not settings.offline:
        origin = SourceChain(
            [
                RimServiceClient(settings.rim_service_url or DEFAULT_RIM_SERVICE_URL),
                OcspClient(settings.ocsp_url or DEFAULT_OCSP_URL),
            ]
        )
        # One cache for every request of this replica: RIMs until their TTL, OCSP responses
        # until their nextUpdate (ccai.collateral's freshness rules).
        sources.append(CachedSource(MeteredSource(origin, metrics, origin=True), CollateralCache()))
    source = MeteredSource(SourceChain(sources), metrics, origin=False) if sources else None
    check_revocation = not settings.offline or bundle is not None
    pcs: IntelPcsClient | None = None
    kds: AmdKdsClient | None = None
    if not settings.offline:
        # CPU collateral for bundles that embed none. Intel's PCS and AMD's KDS know nothing of
        # ccai's virtual TEEs, so a simulated service asks only the servers it is pointed at
        # (``ccai dev collateral-server``); a production one defaults to the vendors'.
        if settings.pcs_url is not None or not settings.allow_simulated:
            pcs = IntelPcsClient(settings.pcs_url or INTEL_PCS_URL)
        if settings.kds_url is not None or not settings.allow_simulated:
            kds = AmdKdsClient(settings.kds_url or AMD_KDS_URL)
    return Verifier(
        anchors=anchors,
        allow_simulated=settings.allow_simulated,
        gpu_source=source,
        check_revocation=check_revocation,
        pcs=pcs,
        kds=kds,
        at=settings.at,
    )


def _with_policy(base: Verifier) -> Callable[[Policy], Verifier]:
    def make(policy: Policy) -> Verifier:
        verifier = Verifier(
            anchors=base.anchors,
            policy=policy,
            allow_simulated=base.allow_simulated,
            gpu_source=base.gpu_source,
            check_revocation=base.check_revocation,
            pcs=base.pcs,
            kds=base.kds,
            at=base.at,
        )
        verifier.caches = base.caches  # one set of caches per app
        return verifier

    return make


@dataclass(frozen=True, slots=True)
class Database:
    """An open, migrated database: the engine and its repository."""

    engine: AsyncEngine
    repo: Repository


async def open_database(url: str) -> Database:
    """Open and migrate the database at ``url``.

    Raises:
        UsageError: the URL is unusable or the database cannot be reached or migrated.
    """
    engine = create_engine(url)
    try:
        await migrate(engine)
    except BaseException:
        await engine.dispose()
        raise
    return Database(engine=engine, repo=Repository(session_factory(engine)))


async def prepare_database(settings: ServiceSettings, *, master_key: MasterKey | None = None) -> None:
    """Make the database ready for replicas: migrated, with signing keys the master key opens.

    Run once before the workers start (``ccai serve attestation`` does): the first production and
    development keys are then created by one process, so every worker of a fresh database
    publishes the same current key from its first request (workers that each created a key would
    disagree until their next key refresh).

    Args:
        settings: The settings (database URL, master key file).
        master_key: The key-encryption key (default: :func:`load_master_key`).

    Raises:
        UsageError: the database cannot be opened or migrated, or the master key does not open
            the stored keys.
    """
    db = await open_database(settings.resolved_database_url())
    try:
        master = master_key or load_master_key(settings.master_key_path())
        await KeyRing(db.repo, master, refresh=settings.key_refresh_seconds).start()
    finally:
        await db.engine.dispose()


class _Edge:
    """Pure ASGI middleware: request id, latency and request metrics, one JSON log line each."""

    def __init__(self, app: Callable[[_Scope, _Receive, _Send], Awaitable[None]], metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: _Scope, receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                text = value.decode("latin-1")[:64]
                if text.isascii() and text.isprintable():
                    request_id = text
        request_id = request_id or secrets.token_hex(8)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: _Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            endpoint = getattr(route, "path", "other")
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(elapsed)
            if endpoint not in ("/metrics", "/health"):
                log_event(
                    "request",
                    request_id=request_id,
                    method=scope.get("method"),
                    path=endpoint,
                    status=status,
                    ms=round(elapsed * 1000, 2),
                    api_key_id=state.get("caller"),
                    verdict=state.get("verdict"),
                )


def create_app(
    settings: ServiceSettings,
    *,
    anchors: TrustAnchors | None = None,
    master_key: MasterKey | None = None,
) -> FastAPI:
    """Build the attestation service app.

    Args:
        settings: The settings (:meth:`ServiceSettings.build`).
        anchors: Trust anchors; the test-PKI anchors of ccai's virtual hardware must be passed
            here (with ``settings.allow_simulated``) — the service never builds them itself.
        master_key: The key-encryption key (default: :func:`load_master_key` at start).

    Returns:
        The FastAPI app (serve it with uvicorn; the database is opened in its lifespan).

    Raises:
        UsageError: inconsistent settings.
    """
    from ccai.service._routes_admin import router as admin_router
    from ccai.service._routes_composite import router as composite_router
    from ccai.service._routes_nras import router as nras_router

    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise UsageError("TLS needs both --tls-cert and --tls-key")
    configure_logging()
    metrics = Metrics()
    verifier = build_verifier(settings, anchors=anchors, metrics=metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = await open_database(settings.resolved_database_url())
        try:
            master = master_key or load_master_key(settings.master_key_path())
            keys = KeyRing(db.repo, master, refresh=settings.key_refresh_seconds)
            await keys.start()
            service = AttestationService(
                verifier=verifier,
                repo=db.repo,
                keys=keys,
                metrics=metrics,
                issuer=settings.issuer,
                nonce_ttl=timedelta(seconds=settings.nonce_ttl_seconds),
                make_verifier=_with_policy(verifier),
            )
            for name, path in settings.policies.items():
                try:
                    document = path.read_text()
                except OSError as exc:
                    raise UsageError(f"cannot read policy {name}={path}: {exc.strerror}") from None
                stored = await service.put_policy(name, document)
                log_event("policy loaded", policy=name, version=stored.version)
            app.state.service = service
            app.state.master_key = master
            app.state.auth = ApiKeyAuth(db.repo, cache_seconds=settings.api_key_cache_seconds)
            app.state.limiter = RateLimiter(rate=settings.rate_limit, burst=settings.rate_burst)
            log_event(
                "attestation service started",
                simulated=settings.allow_simulated,
                anonymous=settings.allow_anonymous,
                offline=settings.offline,
                database=db.engine.dialect.name,
                kid=keys.signer.kid,
            )
            if settings.allow_anonymous:
                log_event(
                    "ANONYMOUS ACCESS IS ALLOWED: the attest endpoints need no API key", level=logging.WARNING
                )
            yield
        finally:
            await db.engine.dispose()
            verifier.close()

    app = FastAPI(
        title="ccai attestation service",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        del request
        return error_response(exc)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log_event(
            "internal error",
            level=logging.ERROR,
            request_id=getattr(request.state, "request_id", None),
            error=type(exc).__name__,
        )
        return error_response(ApiError("INTERNAL_ERROR", "internal error"))

    @app.get("/metrics")
    async def _metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(nras_router)
    app.include_router(composite_router)
    app.include_router(admin_router)
    app.add_middleware(_Edge, metrics=metrics)
    return app
