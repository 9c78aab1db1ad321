"""An external OpenAI-compatible engine behind the gateway: its process, and the forwarding proxy.

:class:`UpstreamEngine` starts the operator's command (``--upstream-cmd "CMD {model_dir} {port}"``:
vLLM, SGLang, ``transformers serve``) on a loopback port, waits for its ``/health`` and stops the
whole process group on exit. :class:`UpstreamProxy` is the ASGI app that forwards the inference
routes to it with httpx, streaming both ways' bodies without buffering the response: every chunk
the engine writes (one SSE event, typically) is sent on as soon as it arrives. Hop-by-hop headers
are dropped in both directions; an engine that cannot be reached is a ``502`` JSON answer.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from ccai.errors import DeviceError, UsageError

__all__ = ["EngineStartError", "UpstreamEngine", "UpstreamProxy", "json_response"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

#: RFC 9110 §7.6.1 hop-by-hop headers, plus those the proxy recomputes itself.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
#: How many distinct request targets keep their parsed engine URL (httpx URLs are immutable).
_URL_CACHE_SIZE = 64
#: The largest request body forwarded (OpenAI requests are small; long prompts fit easily).
MAX_REQUEST_BODY = 32 * 1024 * 1024


class EngineStartError(DeviceError):
    """The inference engine did not start (the process exited, never became healthy, or the model
    did not load): the gateway does not serve."""


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _argv(template: str, *, model_dir: Path, port: int) -> list[str]:
    try:
        words = shlex.split(template)
    except ValueError as exc:
        raise UsageError(f"--upstream-cmd is not a valid command line: {exc}") from None
    if not words:
        raise UsageError("--upstream-cmd is empty")
    joined = " ".join(words)
    if "{model_dir}" not in joined or "{port}" not in joined:
        raise UsageError("--upstream-cmd must contain {model_dir} and {port}", actual=template)
    return [w.replace("{model_dir}", str(model_dir)).replace("{port}", str(port)) for w in words]


class UpstreamEngine:
    """The external engine process (its own process group, stopped with the gateway).

    Args:
        template: The command line with ``{model_dir}`` and ``{port}`` placeholders.
        model_dir: The unsealed (RAM-backed) model directory.
        host: The loopback address the engine listens on.
        port: Its port (default: a free one).
        env: Extra environment variables.
    """

    def __init__(
        self,
        template: str,
        *,
        model_dir: Path,
        host: str = "127.0.0.1",
        port: int | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = port if port is not None else _free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.argv: Sequence[str] = _argv(template, model_dir=model_dir, port=self.port)
        self._env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float) -> float:
        """Start the engine and wait for ``GET /health`` → 200.

        Returns:
            Seconds until it was healthy.

        Raises:
            EngineStartError: the command cannot be run, exits, or is not healthy within ``timeout``.
        """
        from ccai.openai_protocol import wait_healthy

        try:
            self.process = subprocess.Popen(  # noqa: S603 - the operator's own command line
                list(self.argv), env=self._env, stdin=subprocess.DEVNULL, start_new_session=True
            )
        except OSError as exc:
            raise EngineStartError(
                f"cannot run the upstream engine {self.argv[0]!r}: {exc.strerror or exc}"
            ) from None
        try:
            return wait_healthy(self.url, process=self.process, timeout=timeout)
        except UsageError as exc:
            self.stop()
            raise EngineStartError(f"upstream engine: {exc.message}") from None

    def alive(self) -> bool:
        """Whether the engine process is still running."""
        return self.process is not None and self.process.poll() is None

    def stop(self, *, grace: float = 10.0) -> None:
        """Stop the engine's process group: SIGTERM, then SIGKILL after ``grace`` seconds."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=grace)


async def json_response(
    send: Send, status: int, body: bytes, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    """Send a complete JSON response from a pure-ASGI app."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _error_body(message: str, kind: str) -> bytes:
    import json

    return json.dumps({"error": {"message": message, "type": kind}}).encode()


_HOP_BY_HOP_BYTES = frozenset(name.encode() for name in _HOP_BY_HOP)


def _end_to_end(headers: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` without the hop-by-hop ones, including those the ``Connection`` header names."""
    drop = _HOP_BY_HOP_BYTES
    for name, value in headers:
        if name.lower() == b"connection":
            named = {t.strip().lower() for t in value.split(b",") if t.strip()}
            drop = drop | named
    out = []
    for name, value in headers:
        lowered = name.lower()
        if lowered not in drop:
            out.append((lowered, value))
    return out


class UpstreamProxy:
    """ASGI app forwarding every HTTP request to ``base_url`` and streaming the answer back.

    The engine is reached through one ``httpx.AsyncHTTPTransport`` (a keep-alive connection pool),
    not an ``httpx.AsyncClient``: a proxy needs none of the client's URL merging, cookies, auth or
    redirects, and skipping them saves a fifth of the hop's CPU per request.

    Args:
        base_url: The engine's base URL (loopback).
        timeout: Seconds to wait for the engine's first response byte and between chunks.
    """

    def __init__(self, base_url: str, *, timeout: float = 600.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._transport: Any = None
        self._url: Any = None
        self._extensions: dict[str, Any] = {}
        self._urls: dict[bytes, Any] = {}

    def _http(self) -> Any:
        import httpx

        if self._transport is None:
            self._url = httpx.URL(self.base_url)
            timeout = httpx.Timeout(self.timeout, connect=5.0)
            self._extensions = {"timeout": timeout.as_dict()}
            self._transport = httpx.AsyncHTTPTransport(
                limits=httpx.Limits(max_connections=1024, max_keepalive_connections=256)
            )
        return self._transport

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._transport is not None:
            await self._transport.aclose()
            self._transport = None

    def _target(self, scope: Scope) -> Any:
        """The engine's URL for this request: the base URL's scheme and host, the request's path and
        query as they came (so no request target can name another host)."""
        import httpx

        path = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string", b"")
        target = path + b"?" + query if query else path
        url = self._urls.get(target)
        if url is not None:
            return url
        try:
            url = self._url.copy_with(raw_path=target)
        except (httpx.InvalidURL, UnicodeError):
            # Bytes a request target does not carry as they are (non-ASCII, "#", controls): each
            # percent-escaped, as RFC 3986 escapes octets.
            escaped = "".join(chr(b) if 0x20 < b < 0x7F and b != 0x23 else f"%{b:02X}" for b in target)
            url = self._url.copy_with(raw_path=escaped.encode())
        if len(self._urls) < _URL_CACHE_SIZE:  # the few inference routes, parsed once
            self._urls[target] = url
        return url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        import httpx

        if scope["type"] != "http":
            return
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body = message.get("body", b"")
        if message.get("more_body", False):
            buffer = bytearray(body)
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                buffer += message.get("body", b"")
                if len(buffer) > MAX_REQUEST_BODY:
                    break
                if not message.get("more_body", False):
                    break
            body = bytes(buffer)
        if len(body) > MAX_REQUEST_BODY:
            await json_response(send, 413, _error_body("request body too large", "invalid_request_error"))
            return
        transport = self._http()
        headers = _end_to_end(scope.get("headers", ()))
        headers.append((b"host", self._url.netloc))
        if body or scope["method"] in ("POST", "PUT", "PATCH"):
            headers.append((b"content-length", str(len(body)).encode()))
        try:
            url = self._target(scope)
        except (httpx.InvalidURL, UnicodeError):
            await json_response(send, 400, _error_body("invalid request target", "invalid_request_error"))
            return
        request = httpx.Request(
            scope["method"], url, headers=headers, stream=httpx.ByteStream(body), extensions=self._extensions
        )
        try:
            response = await transport.handle_async_request(request)
        except httpx.HTTPError as exc:
            await json_response(
                send,
                502,
                _error_body(f"the inference engine is unavailable ({type(exc).__name__})", "bad_gateway"),
            )
            return
        stream = response.stream
        try:
            out = _end_to_end(response.headers.raw)
            await send({"type": "http.response.start", "status": response.status_code, "headers": out})
            try:
                async for chunk in stream:
                    if chunk:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except httpx.HTTPError:
                pass  # the engine went away mid-stream: end the response (the client sees it truncated)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await stream.aclose()
