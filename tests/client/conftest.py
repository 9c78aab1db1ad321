"""A small stand-in gateway for the client tests: a FastAPI app behind :class:`EhbpMiddleware`
serving the composite evidence of a virtual TDX VM with 2 virtual H100s (collateral embedded, bound
to the caller's nonce and the middleware's HPKE key) and a fake OpenAI endpoint answering
deterministic chunks. Knobs let a test make it lie (another nonce, swapped GPU evidence, another
key at /.well-known/hpke-keys)."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("openai", reason="needs the [gateway] extra: pip install 'ccai[gateway]'")
pytest.importorskip("fastapi", reason="needs the [service] extra: pip install 'ccai[service]'")

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ccai._time import utcnow
from ccai.attest import collect_composite, gather_composite_collateral
from ccai.collateral import cpu_collateral_section, embed_collateral
from ccai.ehbp import EhbpMiddleware, ServerKey
from ccai.evidence import dump_evidence_bundle
from ccai.virtual import VirtualGpuBackend, open_virtual_vm, run_in_background, settings_for_virtual_gpu

WORDS = ["Attested", " hello", " from", " the", " gateway"]


class _InProcessSource:
    def __init__(self, backend: VirtualGpuBackend) -> None:
        self.backend = backend
        self.responder = settings_for_virtual_gpu(backend).responder

    def rim(self, rim_id: str) -> bytes:
        return self.backend.rim(rim_id)

    def ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, *, nonce: bytes | None) -> bytes:
        builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA384())
        if nonce:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        return self.responder.respond(builder.build().public_bytes(Encoding.DER))


@dataclass
class FakeGateway:
    url: str
    middleware: EhbpMiddleware
    home: Path
    api_requests: list[dict[str, Any]] = field(default_factory=list)
    attestations: int = 0
    wrong_nonce: bool = False
    swap_gpus_from: Any = None
    served_key: ServerKey | None = None  # a key other than the bound one at /.well-known/hpke-keys

    def rotate(self) -> ServerKey:
        key = ServerKey.generate()
        self.middleware.rotate(key)
        return key


def _chunk(i: int, word: str | None) -> bytes:
    delta = {"content": word} if word is not None else {}
    doc = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": None if word is not None else "stop"}],
    }
    return f"data: {json.dumps(doc)}\n\n".encode()


def build_gateway(state: dict[str, Any]) -> FastAPI:
    app = FastAPI()
    cpu, gpu = state["cpu"], state["gpu"]

    @app.get("/.well-known/ccai/attestation")
    async def attestation(nonce: str) -> Response:
        gw: FakeGateway = state["gateway"]
        gw.attestations += 1
        raw = bytes.fromhex(nonce)
        if gw.wrong_nonce:
            raw = bytes(32)
        key = gw.middleware.key.public_key
        bundle = collect_composite(nonce=raw, cpu=cpu, gpu=gpu, hpke_public_key=key)
        if gw.swap_gpus_from is not None:
            bundle = dataclasses.replace(bundle, gpus=gw.swap_gpus_from.gpus)
        now = utcnow()
        coll = gather_composite_collateral(bundle, now=now, gpu_source=_InProcessSource(gpu))
        coll = dataclasses.replace(coll, cpu=cpu_collateral_section(cpu.collateral(now)))
        return Response(dump_evidence_bundle(embed_collateral(bundle, coll)), media_type="application/json")

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        state["gateway"].api_requests.append(body)
        if body.get("stream"):

            async def events() -> AsyncIterator[bytes]:
                for i, word in enumerate(WORDS):
                    yield _chunk(i, word)
                yield _chunk(len(WORDS), None)
                yield b"data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        prompt = body["messages"][-1]["content"]
        return JSONResponse(
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"echo: {prompt}"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
            }
        )

    return app


@pytest.fixture
def gateway(ccai_home: Path) -> Iterator[FakeGateway]:
    cpu, gpu = open_virtual_vm(tee="tdx", gpus=2, home=ccai_home)
    state: dict[str, Any] = {"cpu": cpu, "gpu": gpu}
    middleware = EhbpMiddleware(build_gateway(state), key=ServerKey.generate())
    inner_keys = middleware._serve_key_config

    async def keys(scope: Any, receive: Any, send: Any) -> None:
        gw: FakeGateway = state["gateway"]
        if gw.served_key is None:
            await inner_keys(scope, receive, send)
            return
        body = gw.served_key.key_config().encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/ohttp-keys")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    middleware._serve_key_config = keys  # type: ignore[method-assign]
    with run_in_background(middleware) as url:
        gw = FakeGateway(url=url, middleware=middleware, home=ccai_home)
        state["gateway"] = gw
        yield gw
