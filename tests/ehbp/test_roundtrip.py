"""Round trips through the real middleware on a loopback port: sync and async transports, bodies of
every size (one frame, many frames, streamed), SSE events arriving one by one, bodyless requests,
key discovery, and the plaintext rules."""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx
import pytest

from ccai.ehbp import (
    ENCRYPTION_REQUIRED_PROBLEM_TYPE,
    AsyncEhbpTransport,
    EhbpTransport,
    KeyConfig,
    fetch_key_config,
)

from .conftest import EVENT_GAP_S, OracleRequest, Served


def _client(served: Served) -> httpx.Client:
    return httpx.Client(base_url=served.url, transport=EhbpTransport(served.key.public_key))


@pytest.mark.parametrize("size", [1, 4096, 64 * 1024, 64 * 1024 + 1, 1_000_003])
def test_sync_round_trip(served: Served, size: int) -> None:
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    with _client(served) as client:
        response = client.post("/echo", content=body, headers={"content-type": "application/x-test"})
    assert response.status_code == 200
    assert response.json() == {
        "length": size,
        "sha256": hashlib.sha256(body).hexdigest(),
        "ctype": "application/x-test",
    }
    assert response.headers["x-plain"] == "yes"  # headers stay in clear
    assert "content-length" not in response.headers
    assert len(response.headers["ehbp-response-nonce"]) == 64
    assert response.extensions["ccai.ehbp"] == "encrypted"
    assert served.seen.bodies == [body] and served.seen.encrypted == [True]


def test_wire_is_encrypted_both_ways(served: Served) -> None:
    secret = b"the prompt that must stay confidential"
    wire: dict[str, bytes] = {}

    class Tap(httpx.BaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.HTTPTransport()

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            wire["request"] = b"".join(request.stream)  # type: ignore[union-attr]
            assert "content-length" not in request.headers
            assert request.headers["transfer-encoding"] == "chunked"
            # Re-sent chunked as it came (bytes content would add a Content-Length beside
            # Transfer-Encoding, which a strict HTTP parser refuses).
            sent = httpx.Request(
                request.method, request.url, headers=request.headers, content=iter([wire["request"]])
            )
            response = self.inner.handle_request(sent)
            wire["response"] = response.read()
            return httpx.Response(response.status_code, headers=response.headers, content=wire["response"])

    with httpx.Client(
        base_url=served.url, transport=EhbpTransport(served.key.public_key, inner=Tap())
    ) as client:
        response = client.post("/raw", content=secret)
    assert response.content == secret
    assert secret not in wire["request"] and secret not in wire["response"]


def test_streamed_request_body_is_sealed_as_it_is_read(served: Served) -> None:
    pieces = [b"a" * 1000, b"b" * 100_000, b"", b"c" * 70_000]

    def body() -> Iterator[bytes]:
        yield from pieces

    with _client(served) as client:
        response = client.post("/echo", content=body())
    joined = b"".join(pieces)
    assert response.json()["sha256"] == hashlib.sha256(joined).hexdigest()


def test_bodyless_request_is_encrypted_too(served: Served) -> None:
    with _client(served) as client:
        response = client.get("/v1/models")
    assert response.status_code == 200 and response.json()["data"][0]["id"] == "m"
    assert "ehbp-response-nonce" in response.headers
    assert served.seen.encrypted == [True]


def test_sse_events_arrive_one_by_one(served: Served) -> None:
    arrivals: list[tuple[float, bytes]] = []
    with _client(served) as client, client.stream("POST", "/stream", json={"n": 4}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for chunk in response.iter_bytes():
            arrivals.append((time.monotonic(), chunk))
    assert b"".join(c for _, c in arrivals).count(b"data: ") == 5
    assert len(arrivals) == 5  # one frame per event
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(arrivals)]
    assert min(gaps[:3]) > EVENT_GAP_S * 0.5  # not buffered until the end


def test_async_round_trip_and_stream(served: Served) -> None:
    async def main() -> None:
        transport = AsyncEhbpTransport(served.key.key_config())
        async with httpx.AsyncClient(base_url=served.url, transport=transport) as client:

            async def body() -> AsyncIterator[bytes]:
                yield b"x" * 100_000
                yield b"y" * 10

            response = await client.post("/echo", content=body())
            assert response.json()["length"] == 100_010
            events = []
            async with client.stream("POST", "/stream", json={"n": 2}) as streamed:
                async for chunk in streamed.aiter_bytes():
                    events.append(chunk)
            assert events[-1] == b"data: [DONE]\n\n" and len(events) == 3

    anyio.run(main)


def test_key_discovery(served: Served) -> None:
    config = fetch_key_config(served.url)
    assert config == served.key.key_config()
    assert config.encode() == b"\x00\x00\x20" + served.key.public_key + b"\x00\x04\x00\x01\x00\x02"
    assert KeyConfig.decode(config.encode()) == config
    raw = httpx.get(served.url + "/.well-known/hpke-keys")
    assert raw.headers["content-type"] == "application/ohttp-keys"  # exact, as Tinfoil's client checks
    assert len(raw.content) == 41


def test_plaintext_refused_outside_exempt_paths(served: Served) -> None:
    response = httpx.post(served.url + "/echo", content=b"hello")
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == ENCRYPTION_REQUIRED_PROBLEM_TYPE
    assert httpx.get(served.url + "/v1/models").status_code == 400
    assert served.seen.paths == []  # the application never saw them
    assert httpx.get(served.url + "/health").json() == {"status": "ok"}  # exempt


def test_plaintext_allowed_when_asked(served_plaintext: Served) -> None:
    response = httpx.post(served_plaintext.url + "/echo", content=b"hello")
    assert response.status_code == 200 and response.json()["length"] == 5
    assert "ehbp-response-nonce" not in response.headers
    assert served_plaintext.seen.encrypted == [False]
    with _client(served_plaintext) as client:  # encrypted requests still work
        assert client.post("/echo", content=b"hi").json()["length"] == 2


def test_oracle_request_matches_the_spec(served: Served) -> None:
    """A request sealed by hand per SPEC (pyhpke alone) is accepted, and its answer opens by hand."""
    request = OracleRequest(served.key.public_key, b'{"n": 1}')
    response = httpx.post(served.url + "/stream", content=request.body, headers=request.headers)
    assert response.status_code == 200
    text = request.open_response(response.headers["ehbp-response-nonce"], response.content)
    assert text == b'data: {"i": 0}\n\ndata: [DONE]\n\n'
    assert json.loads(text.split(b"\n")[0][6:]) == {"i": 0}
