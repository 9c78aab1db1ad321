"""A small OpenAI-style engine for the EHBP bench tests: ``python upstream_words.py MODEL_DIR PORT``.

The gateway starts it with ``--upstream-cmd`` (it ignores the model directory). It serves ``/health``,
``/v1/models`` (one model, ``words``), and streaming or whole ``/v1/completions`` and
``/v1/chat/completions``: ``max_tokens`` words (all of them with ``ignore_eos``, else at most 5), a
few milliseconds apart, the last event carrying the usage. ``GET /seen`` lists the prompts it received,
so a test can tell whether a prompt ever reached the engine.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import uvicorn

PORT = int(sys.argv[2])
SEEN: list[str] = []


async def _body(receive: Any) -> bytes:
    data = b""
    while True:
        message = await receive()
        data += message.get("body", b"")
        if not message.get("more_body"):
            return data


async def _json(send: Any, status: int, doc: object) -> None:
    body = json.dumps(doc).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _event(chat: bool, text: str, finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
    choice.update({"delta": {"content": text}} if chat else {"text": text})
    doc: dict[str, Any] = {"choices": [choice]}
    if usage is not None:
        doc["usage"] = usage
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/health":
        await _json(send, 200, {"status": "ok"})
        return
    if path == "/v1/models":
        await _json(send, 200, {"object": "list", "data": [{"id": "words", "owned_by": "words-engine"}]})
        return
    if path == "/seen":
        await _json(send, 200, SEEN)
        return
    if path not in ("/v1/completions", "/v1/chat/completions"):
        await _json(send, 404, {"error": "not found"})
        return
    request = json.loads(await _body(receive) or b"{}")
    chat = path.endswith("chat/completions")
    prompt = request["messages"][-1]["content"] if chat else request.get("prompt")
    SEEN.append(prompt if isinstance(prompt, str) else json.dumps(prompt))
    if request.get("model") != "words":
        await _json(send, 404, {"error": f"model {request.get('model')!r} not found"})
        return
    n_in = len(prompt) if isinstance(prompt, list) else len(str(prompt).split())
    want = int(request.get("max_tokens", 16))
    n_out = want if request.get("ignore_eos") else min(want, 5)
    usage = {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out}
    words = [("w" if i == 0 else " w") + str(i) for i in range(n_out)]
    if not request.get("stream"):
        text = "".join(words)
        choice = {"message": {"content": text}} if chat else {"text": text}
        await _json(send, 200, {"choices": [choice], "usage": usage})
        return
    headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for word in words:
        await asyncio.sleep(0.003)
        await send({"type": "http.response.body", "body": _event(chat, word), "more_body": True})
    tail = _event(chat, "", "length", usage) + b"data: [DONE]\n\n"
    await send({"type": "http.response.body", "body": tail, "more_body": False})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning")
