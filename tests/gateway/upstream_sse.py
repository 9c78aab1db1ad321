"""A tiny OpenAI-style upstream engine for the gateway tests: ``python upstream_sse.py MODEL_DIR PORT``.

It serves ``/health``, ``/v1/models`` (the model directory's file names, so a test sees what was
unsealed) and ``/v1/chat/completions``. A streaming request sends its first chunk at once, then
waits until the file named by the request's ``gate`` field exists (up to 20 s) before sending the
rest: a client that holds the first chunk while the upstream still waits proves that the gateway
forwards without buffering. ``echo_headers`` answers with the request headers the engine saw.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import uvicorn

MODEL_DIR = Path(sys.argv[1])
PORT = int(sys.argv[2])


async def _body(receive) -> bytes:  # type: ignore[no-untyped-def]
    data = b""
    while True:
        message = await receive()
        data += message.get("body", b"")
        if not message.get("more_body"):
            return data


async def _json(send, status: int, doc: object) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps(doc).encode()
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": body})


def _chunk(text: str) -> bytes:
    doc = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]}
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/health":
        await _json(send, 200, {"status": "ok"})
    elif path == "/v1/models":
        files = sorted(p.name for p in MODEL_DIR.iterdir())
        entry = {"id": "upstream", "files": files, "pid": os.getpid(), "dir": str(MODEL_DIR)}
        await _json(send, 200, {"object": "list", "data": [entry]})
    elif path == "/v1/chat/completions":
        request = json.loads(await _body(receive) or b"{}")
        if request.get("echo_headers"):
            await _json(send, 200, {"headers": {k.decode(): v.decode() for k, v in scope["headers"]}})
            return
        if not request.get("stream"):
            await _json(
                send, 200, {"object": "chat.completion", "choices": [{"message": {"content": "hello"}}]}
            )
            return
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": _chunk("first"), "more_body": True})
        gate = Path(str(request.get("gate", "")))
        deadline = time.monotonic() + 20
        while request.get("gate") and not gate.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        released = "released" if gate.exists() else "timed-out"
        await send({"type": "http.response.body", "body": _chunk(released), "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
    else:
        await _json(send, 404, {"error": "not found"})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning")
