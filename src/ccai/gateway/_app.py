"""The gateway's HTTP surface and its process: ``/health``, ``/metrics``, the attestation document, and
the EHBP-wrapped inference routes, which answer ``503`` until the boot is ``ready``.

Routes:

* ``GET /health`` — the boot state (:meth:`GatewayBoot.health`); 200 when ready, else 503. Always open.
* ``GET /metrics`` — Prometheus text: requests by route kind and status, the boot's seconds, the
  attestation documents served and the seconds each took.
* ``GET /.well-known/ccai/attestation?nonce=HEX64`` — a fresh composite evidence bundle bound to the
  nonce, the gateway's HPKE key (and TLS key), collateral embedded, and with an attestation service
  configured its token as ``attestation_token`` (docs/confidential-serving.md).
* everything else (``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``,
  ``/.well-known/hpke-keys``) — through ``ccai.ehbp.EhbpMiddleware`` to the engine: plaintext bodies
  are refused unless the gateway runs with ``allow_plaintext``.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from ccai.gateway._boot import BootState, GatewayBoot, GatewayConfig
from ccai.gateway._log import configure_logging, log_event
from ccai.gateway._upstream import Receive, Scope, Send, UpstreamProxy, json_response

__all__ = ["ATTESTATION_PATH", "GatewayApp", "run_gateway"]

#: The attestation document's path.
ATTESTATION_PATH = "/.well-known/ccai/attestation"
_NONCE = re.compile(r"^[0-9a-fA-F]{64}$")


class _Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ccai_gateway_requests", "HTTP requests by route kind and status", ["route", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.boot_seconds = Gauge(
            "ccai_gateway_boot_seconds", "Seconds from boot start to ready (0 before)", registry=self.registry
        )
        self.ready = Gauge("ccai_gateway_ready", "1 when serving inference", registry=self.registry)
        self.documents = Counter(
            "ccai_gateway_attestation_documents", "Attestation documents served", registry=self.registry
        )
        self.document_seconds = Histogram(
            "ccai_gateway_attestation_document_seconds",
            "Seconds to collect one attestation document (evidence + collateral)",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )


def _route_kind(path: str) -> str:
    if path in ("/health", "/metrics"):
        return path[1:]
    if path == ATTESTATION_PATH:
        return "attestation"
    if path == "/.well-known/hpke-keys":
        return "hpke-keys"
    return "inference"


class GatewayApp:
    """The gateway's pure-ASGI app over a :class:`GatewayBoot`.

    Args:
        boot: The boot state machine (its state decides what answers).
        on_shutdown: Called (in a worker thread) when the server's lifespan ends: stop the boot,
            the engine and the hardware before uvicorn returns (it re-raises SIGTERM/SIGINT then).
    """

    def __init__(self, boot: GatewayBoot, *, on_shutdown: Callable[[], None] | None = None) -> None:
        self.boot = boot
        self._on_shutdown = on_shutdown
        self.metrics = _Metrics()
        self._protected: Any = None
        self._protected_for: Any = None
        self._counters: dict[tuple[str, int], Any] = {}  # (route kind, status) -> its counter child

    def _inference(self) -> Any:
        """``EhbpMiddleware`` around the engine app, built once the engine exists."""
        from ccai.ehbp import EhbpMiddleware

        inner = self.boot.inference_app
        if self._protected_for is not inner:
            boot = self.boot
            # A provider, not the key: the boot's key can be rotated while serving (rotate_key).
            self._protected = EhbpMiddleware(
                inner, key=lambda: boot.server_key, allow_plaintext=boot.config.allow_plaintext
            )
            self._protected_for = inner
        return self._protected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope.get("path", "")
        kind = _route_kind(path)
        status = 500

        async def counted(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            if kind == "health":
                await self._health(counted)
            elif kind == "metrics":
                await self._metrics(counted)
            elif not self.boot.ready:
                await json_response(
                    counted,
                    503,
                    json.dumps(
                        {
                            "error": {
                                "message": f"the gateway is not ready ({self.boot.state.value})",
                                "type": "unavailable",
                            }
                        }
                    ).encode(),
                    [(b"retry-after", b"5")],
                )
            elif kind == "attestation":
                await self._attestation(scope, counted)
            else:
                await self._inference()(scope, receive, counted)
        finally:
            counter = self._counters.get((kind, status))
            if counter is None:
                counter = self._counters[(kind, status)] = self.metrics.requests.labels(kind, str(status))
            counter.inc()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                inner = self.boot.inference_app
                if isinstance(inner, UpstreamProxy):
                    await inner.aclose()
                if self._on_shutdown is not None:
                    await asyncio.to_thread(self._on_shutdown)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _health(self, send: Send) -> None:
        doc = self.boot.health()
        await json_response(send, 200 if self.boot.ready else 503, json.dumps(doc).encode())

    async def _metrics(self, send: Send) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        self.metrics.boot_seconds.set(self.boot.boot_seconds or 0.0)
        self.metrics.ready.set(1 if self.boot.ready else 0)
        body = generate_latest(self.metrics.registry)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", CONTENT_TYPE_LATEST.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _attestation(self, scope: Scope, send: Send) -> None:
        from urllib.parse import parse_qs

        if scope.get("method") not in ("GET", "HEAD"):
            await json_response(send, 405, b'{"error": {"message": "use GET", "type": "method_not_allowed"}}')
            return
        values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("nonce", [])
        if len(values) != 1 or not _NONCE.match(values[0]):
            body = {
                "error": {
                    "message": "nonce must be 64 hex digits (32 random bytes)",
                    "type": "invalid_request_error",
                }
            }
            await json_response(send, 400, json.dumps(body).encode())
            return
        nonce = bytes.fromhex(values[0])
        server_key = self.boot.server_key  # the key of this document, even if it rotates meanwhile
        attester = self.boot.attester
        if attester is None:  # closed while shutting down
            await json_response(send, 503, b'{"error": {"message": "shutting down", "type": "unavailable"}}')
            return
        start = time.perf_counter()
        try:
            document = await asyncio.to_thread(
                attester.document,
                nonce,
                hpke_public_key=server_key.public_key,
                tls_spki_sha256=self.boot.tls_spki_sha256,
            )
        except Exception as exc:
            log_event("attestation_failed", error=type(exc).__name__)
            body = {"error": {"message": "evidence collection failed", "type": "unavailable"}}
            await json_response(send, 503, json.dumps(body).encode())
            return
        if self.boot.config.attestation_service is not None:
            try:
                token = await asyncio.to_thread(
                    attester.service_token,
                    self.boot.config.attestation_service,
                    api_key=self.boot.config.attestation_service_key,
                    hpke_public_key=server_key.public_key,
                    tls_spki_sha256=self.boot.tls_spki_sha256,
                )
            except Exception as exc:
                log_event("attestation_service_failed", error=type(exc).__name__, reason=str(exc)[:200])
                body = {"error": {"message": "the attestation service gave no token", "type": "unavailable"}}
                await json_response(send, 503, json.dumps(body).encode())
                return
            doc = json.loads(document)
            doc["attestation_token"] = token
            document = json.dumps(doc).encode()
        seconds = time.perf_counter() - start
        self.metrics.documents.inc()
        self.metrics.document_seconds.observe(seconds)
        log_event("attestation_document", seconds=round(seconds, 4))
        await json_response(send, 200, document, [(b"x-ccai-collect-seconds", f"{seconds:.4f}".encode())])


def run_gateway(
    config: GatewayConfig, *, on_ready: Callable[[GatewayBoot], None] | None = None
) -> GatewayBoot:
    """Serve the gateway in the foreground until stopped; boot in a background thread.

    The listening socket opens first (``/health`` shows the boot state); the boot walks its states;
    on failure the server stops at once. SIGHUP (when called from the main thread) replaces the
    HPKE key (:meth:`GatewayBoot.rotate_key`), as ``config.hpke_rotate_seconds`` does periodically.
    Returns the boot; the caller raises ``boot.error`` when the boot failed (``ccai serve gateway``
    exits non-zero with the reason).

    Args:
        config: The configuration (checked here).
        on_ready: Called once, from the boot thread, when the gateway is ready.

    Raises:
        UsageError: bad options, or the address cannot be bound.
    """
    import uvicorn

    from ccai._net import listen_socket

    config.check()
    configure_logging()
    boot = GatewayBoot(config)
    tls: dict[str, Any] = {}
    if config.tls_cert is not None:
        tls = {"ssl_certfile": str(config.tls_cert), "ssl_keyfile": str(config.tls_key)}
    server: uvicorn.Server | None = None

    def walk() -> None:
        boot.run()
        if boot.state is BootState.READY:
            if on_ready is not None:
                on_ready(boot)
        elif server is not None:
            server.should_exit = True

    thread = threading.Thread(target=walk, name="ccai-gateway-boot", daemon=True)
    stopping = threading.Event()

    def rotate_periodically(every: float) -> None:
        while not stopping.wait(every):
            if boot.ready:
                boot.rotate_key()

    def shutdown() -> None:
        stopping.set()
        boot.cancel()
        if thread.is_alive():
            thread.join(timeout=30)
        boot.close()

    app = GatewayApp(boot, on_shutdown=shutdown)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
            proxy_headers=False,  # nothing reads the client's address: no X-Forwarded-* pass per request
            **tls,
        )
    )
    sock = listen_socket(config.host, config.port)
    sock.listen(1024)
    host, port = sock.getsockname()[:2]
    scheme = "https" if config.tls_cert is not None else "http"
    boot.url = f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"
    log_event("listening", host=host, port=port, plaintext_allowed=config.allow_plaintext)
    previous_hup = _on_sighup(boot)
    if config.hpke_rotate_seconds is not None:
        threading.Thread(
            target=rotate_periodically,
            args=(config.hpke_rotate_seconds,),
            name="ccai-gateway-rotate",
            daemon=True,
        ).start()
    thread.start()
    try:
        server.run(sockets=[sock])
    finally:
        shutdown()
        sock.close()
        if previous_hup is not None:
            signal.signal(signal.SIGHUP, previous_hup)
    return boot


def _on_sighup(boot: GatewayBoot) -> Any:
    """Rotate the HPKE key on SIGHUP (main thread only); returns the previous handler, or ``None``."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGHUP"):
        return None

    def rotate(signum: int, frame: Any) -> None:
        del signum, frame
        if boot.ready:
            # Off the signal handler: the key is swapped by a plain assignment, logging takes a lock.
            threading.Thread(target=boot.rotate_key, name="ccai-gateway-rotate", daemon=True).start()

    return signal.signal(signal.SIGHUP, rotate)
