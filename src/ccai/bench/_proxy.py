"""A deliberately buffering reverse proxy, to show what buffering does to streaming latency.

Gateways that buffer responses (nginx's default ``proxy_buffering on``, serving-performance.md §9)
hold every SSE event until the upstream response is complete: the client sees the first token only
when the last one is generated (TTFT ≈ E2E latency) and then all tokens in one burst (ITL ≈ 0).
``mode="buffer"`` does exactly that; ``mode="stream"`` forwards each chunk as it arrives, so the two
modes together separate the cost of a Python proxy hop from the damage buffering does.

Starlette and uvicorn come with the ``service`` extra; they are imported when a proxy is built, so
``ccai.bench`` imports without them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Literal

import httpx

from ccai._net import listen_socket
from ccai.errors import UsageError

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["ProxyMode", "build_proxy_app", "serve_proxy"]

ProxyMode = Literal["buffer", "stream"]
"""``"buffer"`` holds each response until it is complete; ``"stream"`` forwards chunks as they arrive."""

_NEEDS_SERVICE = "pip install 'ccai[service]'"

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
    "accept-encoding",
    "content-encoding",
}


def build_proxy_app(upstream: str, *, mode: ProxyMode = "buffer", timeout: float = 600.0) -> Starlette:
    """A Starlette app that forwards every request to ``upstream``.

    Args:
        upstream: Base URL of the real server.
        mode: ``"buffer"`` reads the whole upstream response before sending any of it;
            ``"stream"`` forwards chunks as they arrive.
        timeout: Upstream timeout in seconds.

    Returns:
        The ASGI app.

    Raises:
        UsageError: Starlette is not installed (the ``service`` extra).
    """
    try:
        from starlette.applications import Starlette
        from starlette.background import BackgroundTask
        from starlette.responses import Response, StreamingResponse
        from starlette.routing import Route
    except ImportError:
        raise UsageError("the buffering proxy needs Starlette", hint=_NEEDS_SERVICE) from None
    base = upstream.rstrip("/")
    client = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=10.0), trust_env=False)

    async def forward(request: Request) -> Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        upstream_request = client.build_request(
            request.method,
            base + request.url.path + (f"?{request.url.query}" if request.url.query else ""),
            headers=headers,
            content=await request.body(),
        )
        resp = await client.send(upstream_request, stream=True)
        out_headers = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP_BY_HOP}
        if mode == "buffer":
            try:
                data = await resp.aread()
            finally:
                await resp.aclose()
            return Response(content=data, status_code=resp.status_code, headers=out_headers)

        async def relay() -> AsyncIterator[bytes]:
            async for chunk in resp.aiter_raw():
                yield chunk

        return StreamingResponse(
            relay(), status_code=resp.status_code, headers=out_headers, background=BackgroundTask(resp.aclose)
        )

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    methods = ["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "HEAD"]
    return Starlette(
        routes=[Route("/{path:path}", forward, methods=methods)],
        lifespan=lifespan,
    )


def serve_proxy(
    upstream: str, *, host: str = "127.0.0.1", port: int = 8001, mode: ProxyMode = "buffer"
) -> None:
    """Run the proxy under uvicorn until interrupted.

    Args:
        upstream: Base URL of the real server.
        host: Listen address.
        port: Listen port.
        mode: ``"buffer"`` or ``"stream"``.

    Raises:
        UsageError: Starlette or uvicorn is not installed (the ``service`` extra), or the address
            cannot be bound (``cannot listen on HOST:PORT: address already in use``).
    """
    app = build_proxy_app(upstream, mode=mode)
    try:
        import uvicorn
    except ImportError:
        raise UsageError("the buffering proxy needs uvicorn", hint=_NEEDS_SERVICE) from None

    sock = listen_socket(host, port)
    config = uvicorn.Config(app, log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])
