"""EHBP fixtures: a small FastAPI app (echo, SSE stream, GET) behind :class:`EhbpMiddleware`, served
by uvicorn on a loopback port, and a tiny pyhpke-only reference client that builds requests by hand
(to send what a well-behaved transport never would)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac as _hmac
import json
import struct as _struct
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

pytest.importorskip("pyhpke", reason="needs the [gateway] extra: pip install 'ccai[gateway]'")
pytest.importorskip("fastapi", reason="needs the [service] extra: pip install 'ccai[service]'")

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pyhpke import AEADId, CipherSuite, KDFId, KEMId

from ccai.ehbp import EhbpMiddleware, ServerKey
from ccai.virtual import run_in_background

#: Delay between SSE events of /stream, so a test can see events arrive one by one.
EVENT_GAP_S = 0.15


@dataclass
class Seen:
    """What the application behind the middleware received."""

    bodies: list[bytes] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    encrypted: list[bool] = field(default_factory=list)


def build_app(seen: Seen) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def record(request: Request, call_next: Any) -> Any:
        seen.paths.append(request.url.path)
        seen.encrypted.append(bool(request.scope.get("extensions", {}).get("ccai.ehbp")))
        return await call_next(request)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "m", "object": "model"}]}

    @app.post("/echo")
    async def echo(request: Request) -> JSONResponse:
        body = await request.body()
        seen.bodies.append(body)
        return JSONResponse(
            {
                "length": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
                "ctype": request.headers.get("content-type"),
            },
            headers={"x-plain": "yes"},
        )

    @app.post("/raw")
    async def raw(request: Request) -> Any:
        body = await request.body()
        seen.bodies.append(body)
        return StreamingResponse(iter([body]), media_type="application/octet-stream")

    @app.post("/stream")
    async def stream(request: Request) -> StreamingResponse:
        count = int((await request.json()).get("n", 3))

        async def events() -> AsyncIterator[bytes]:
            for i in range(count):
                yield f"data: {json.dumps({'i': i})}\n\n".encode()
                await asyncio.sleep(EVENT_GAP_S)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/boom")
    async def boom() -> None:
        raise RuntimeError("application failure")

    return app


@pytest.fixture
def server_key() -> ServerKey:
    return ServerKey.generate()


@dataclass
class Served:
    url: str
    key: ServerKey
    seen: Seen
    middleware: EhbpMiddleware


@pytest.fixture
def served(server_key: ServerKey) -> Iterator[Served]:
    """The app behind the middleware (plaintext refused), on a loopback port."""
    seen = Seen()
    middleware = EhbpMiddleware(build_app(seen), key=server_key)
    with run_in_background(middleware) as url:
        yield Served(url, server_key, seen, middleware)


@pytest.fixture
def served_plaintext(server_key: ServerKey) -> Iterator[Served]:
    """The same, started with allow_plaintext=True."""
    seen = Seen()
    middleware = EhbpMiddleware(build_app(seen), key=server_key, allow_plaintext=True)
    with run_in_background(middleware) as url:
        yield Served(url, server_key, seen, middleware)


# -- an independent reference of the wire format, straight from the spec (pyhpke + cryptography) ----

SUITE = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.AES256_GCM)


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    # RFC 5869 HKDF-Expand for length <= 32: T(1) = HMAC(PRK, info || 0x01).
    return _hmac.new(prk, info + b"\x01", hashlib.sha256).digest()[:length]


def response_keys(secret: bytes, enc: bytes, nonce: bytes) -> tuple[bytes, bytes]:
    prk = _hmac.new(enc + nonce, secret, hashlib.sha256).digest()
    return _expand(prk, b"key", 32), _expand(prk, b"nonce", 12)


def split_frames(body: bytes) -> list[bytes]:
    out, offset = [], 0
    while offset < len(body):
        (length,) = _struct.unpack_from(">I", body, offset)
        out.append(body[offset + 4 : offset + 4 + length])
        offset += 4 + length
    return out


def frames_of(*ciphertexts: bytes) -> bytes:
    return b"".join(_struct.pack(">I", len(c)) + c for c in ciphertexts)


class OracleRequest:
    """One request sealed by hand to ``public_key``: ``enc``, ``frames`` and response decryption."""

    def __init__(self, public_key: bytes, *chunks: bytes) -> None:
        pk = SUITE.kem.deserialize_public_key(public_key)
        enc, self.ctx = SUITE.create_sender_context(pk, info=b"ehbp request")
        self.enc = bytes(enc)
        self.secret = bytes(self.ctx.export(b"ehbp response", 32))
        self.ciphertexts = [bytes(self.ctx.seal(c, b"")) for c in chunks]

    @property
    def headers(self) -> dict[str, str]:
        return {"Ehbp-Encapsulated-Key": self.enc.hex()}

    @property
    def body(self) -> bytes:
        return frames_of(*self.ciphertexts)

    def open_response(self, nonce_hex: str, body: bytes) -> bytes:
        key, base = response_keys(self.secret, self.enc, bytes.fromhex(nonce_hex))
        aead, base_int, out = AESGCM(key), int.from_bytes(base, "big"), []
        for i, ciphertext in enumerate(c for c in split_frames(body) if c):
            out.append(aead.decrypt((base_int ^ i).to_bytes(12, "big"), ciphertext, None))
        return b"".join(out)


class OracleServer:
    """The server side by hand, for a transport under test (``httpx.MockTransport`` handler parts)."""

    def __init__(self) -> None:
        self.key = ServerKey.generate()
        self.sk = SUITE.kem.deserialize_private_key(self.key.private_bytes())

    def open_request(self, enc_hex: str, body: bytes) -> tuple[bytes, Any]:
        ctx = SUITE.create_recipient_context(bytes.fromhex(enc_hex), self.sk, info=b"ehbp request")
        plaintext = b"".join(bytes(ctx.open(c, b"")) for c in split_frames(body) if c)
        return plaintext, ctx

    @staticmethod
    def seal_response(ctx: Any, enc_hex: str, nonce: bytes, *chunks: bytes) -> bytes:
        secret = bytes(ctx.export(b"ehbp response", 32))
        key, base = response_keys(secret, bytes.fromhex(enc_hex), nonce)
        aead, base_int = AESGCM(key), int.from_bytes(base, "big")
        return frames_of(
            *(aead.encrypt((base_int ^ i).to_bytes(12, "big"), c, None) for i, c in enumerate(chunks))
        )
