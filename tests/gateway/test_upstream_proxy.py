"""``UpstreamProxy`` in process, in front of a recording engine on a loopback port: what reaches the
engine (target, host, length, end-to-end headers only), what comes back (status, headers, body,
each chunk as it is sent), and the error answers (413, 502)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest

from ccai.gateway import UpstreamProxy
from ccai.virtual import run_in_background

Scope = dict[str, Any]
#: The proxy's request-body limit (``ccai.gateway._upstream.MAX_REQUEST_BODY``).
MAX_REQUEST_BODY = 32 * 1024 * 1024


async def _engine(scope: Scope, receive: Any, send: Any) -> None:
    """Answers every request with what it saw, as JSON; ``/sse`` streams three events instead."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/sse":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for i in range(3):
            await send({"type": "http.response.body", "body": f"data: {i}\n\n".encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    seen = {
        "method": scope["method"],
        "raw_path": scope["raw_path"].decode("latin-1"),
        "query": scope["query_string"].decode("latin-1"),
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
        "body": body.decode("latin-1"),
    }
    await send(
        {
            "type": "http.response.start",
            "status": 201,
            "headers": [
                (b"content-type", b"application/json"),
                (b"x-engine", b"1"),
                (b"keep-alive", b"timeout=5"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": json.dumps(seen).encode()})


@pytest.fixture(scope="module")
def engine() -> Iterator[str]:
    with run_in_background(_engine) as url:
        yield url


def _call(proxy: UpstreamProxy, scope: Scope, body: bytes) -> tuple[int, dict[bytes, bytes], list[bytes]]:
    """Run one request through the proxy; returns the status, headers and body messages it sent."""
    out: list[dict[str, Any]] = []

    async def main() -> None:
        pieces = [body[i : i + 1000] for i in range(0, len(body), 1000)] or [b""]
        messages = iter(
            [
                {"type": "http.request", "body": p, "more_body": i < len(pieces) - 1}
                for i, p in enumerate(pieces)
            ]
        )

        async def receive() -> dict[str, Any]:
            return next(messages, {"type": "http.disconnect"})

        async def send(message: dict[str, Any]) -> None:
            out.append(message)

        try:
            await proxy(scope, receive, send)
        finally:
            await proxy.aclose()

    anyio.run(main)
    start = out[0]
    assert start["type"] == "http.response.start"
    assert out[-1]["type"] == "http.response.body" and not out[-1].get("more_body", False)
    return start["status"], dict(start["headers"]), [m.get("body", b"") for m in out[1:]]


def _scope(
    method: str, raw_path: bytes, query: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None
) -> Scope:
    return {
        "type": "http",
        "method": method,
        "path": raw_path.decode("latin-1"),
        "raw_path": raw_path,
        "query_string": query,
        "headers": headers or [],
    }


def test_request_reaches_the_engine_with_end_to_end_headers_only(engine: str) -> None:
    body = b'{"prompt": "' + b"x" * 5000 + b'"}'
    headers = [
        (b"host", b"gateway.example"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"keep-alive, X-Hop"),
        (b"x-hop", b"1"),
        (b"te", b"trailers"),
        (b"X-End", b"yes"),
    ]
    status, out_headers, chunks = _call(
        UpstreamProxy(engine), _scope("POST", b"/v1/completions", b"a=1&b=%2F", headers), body
    )
    assert status == 201
    assert out_headers[b"x-engine"] == b"1" and b"keep-alive" not in out_headers
    seen = json.loads(b"".join(chunks))
    names = [k for k, _ in seen["headers"]]
    assert seen["method"] == "POST" and seen["raw_path"] == "/v1/completions" and seen["query"] == "a=1&b=%2F"
    assert seen["body"] == body.decode()
    host = engine.split("://", 1)[1]
    assert (
        dict(seen["headers"])["host"] == host and names.count("host") == 1
    )  # the engine's, not the client's
    assert dict(seen["headers"])["content-length"] == str(len(body)) and names.count("content-length") == 1
    assert dict(seen["headers"])["x-end"] == "yes"
    assert not {"x-hop", "te"} & set(names)


@pytest.mark.parametrize(
    ("raw_path", "expected"),
    [
        (b"//evil.example/x", "//evil.example/x"),  # a path, never another host
        (b"/v1/a%20b", "/v1/a%20b"),
        (b"/v1/\xc3\xa9", "/v1/%C3%A9"),  # non-ASCII bytes are escaped, each once
        (b"/v1/a#b", "/v1/a%23b"),  # no fragment: the engine sees the whole target
    ],
)
def test_request_target_never_leaves_the_engine(engine: str, raw_path: bytes, expected: str) -> None:
    status, _, chunks = _call(UpstreamProxy(engine), _scope("GET", raw_path), b"")
    assert status == 201
    seen = json.loads(b"".join(chunks))
    assert seen["raw_path"] == expected and seen["body"] == ""
    assert "content-length" not in dict(seen["headers"])  # a bodyless GET stays bodyless


def test_stream_chunks_are_forwarded_one_by_one(engine: str) -> None:
    status, headers, chunks = _call(UpstreamProxy(engine), _scope("POST", b"/sse"), b"{}")
    assert status == 200 and headers[b"content-type"] == b"text/event-stream"
    assert [c for c in chunks if c] == [b"data: 0\n\n", b"data: 1\n\n", b"data: 2\n\n"]


def test_oversized_body_is_413(engine: str) -> None:
    status, _, chunks = _call(
        UpstreamProxy(engine), _scope("POST", b"/v1/completions"), b"x" * (MAX_REQUEST_BODY + 1)
    )
    assert status == 413 and json.loads(b"".join(chunks))["error"]["type"] == "invalid_request_error"


def test_unreachable_engine_is_502() -> None:
    with run_in_background(_engine) as url:
        pass  # stopped: nothing listens there any more
    status, _, chunks = _call(UpstreamProxy(url), _scope("GET", b"/v1/models"), b"")
    assert status == 502 and json.loads(b"".join(chunks))["error"]["type"] == "bad_gateway"
    assert httpx.URL(url).host == "127.0.0.1"
