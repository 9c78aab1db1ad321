"""A real OpenAI-compatible server on loopback with controllable behaviour, and a word tokenizer.

The server is raw asyncio over a real TCP socket (HTTP/1.1, keep-alive, chunked SSE), running in a
thread with its own event loop so both async tests and CliRunner tests can use it. The request's
``model`` field selects the behaviour:

``ok``            streams ``max_tokens`` words (``min_new_tokens``/``ignore_eos`` honoured), usage at the end
``other``         like ``ok`` but different text (a "wrong" engine for the correctness check)
``short``         stops after 2 tokens whatever was asked (output shortfall)
``http500``       HTTP 500 with a JSON body
``hang``          accepts and never answers
``stream-error``  one token, then an ``{"error": …}`` event
``bad-json``      a non-JSON event
``hf``            rejects ``ignore_eos`` with 422 (like transformers serve) but accepts ``generation_config``
anything else     HTTP 400 "Server is pinned to 'ok'"
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

TOKEN_DELAY = 0.01


@dataclass
class FakeServer:
    """Handle on the running fake server."""

    url: str
    port: int
    requests: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    token_delay: float = TOKEN_DELAY


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes] | None:
    line = await reader.readline()
    if not line:
        return None
    method, path, _ = line.decode().split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        h = await reader.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.decode().partition(":")
        headers[k.strip().lower()] = v.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return method, path, headers, body


def _json_response(status: int, obj: Any) -> bytes:
    data = json.dumps(obj).encode()
    reason = {
        200: "OK",
        400: "Bad Request",
        404: "Not Found",
        422: "Unprocessable",
        500: "Internal Server Error",
    }
    head = f"HTTP/1.1 {status} {reason.get(status, 'X')}\r\ncontent-type: application/json\r\n"
    return head.encode() + f"content-length: {len(data)}\r\n\r\n".encode() + data


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def _handle(state: FakeServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            req = await _read_request(reader)
            if req is None:
                return
            method, path, _, raw = req
            if method == "GET":
                if path == "/v1/models":
                    writer.write(_json_response(200, {"data": [{"id": "ok", "owned_by": "fake-engine"}]}))
                elif path == "/version":
                    writer.write(_json_response(200, {"version": "9.9.9"}))
                else:
                    writer.write(_json_response(404, {"detail": "not found"}))
                await writer.drain()
                continue
            body = json.loads(raw)
            state.requests.append(body)
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
            try:
                await _complete(body, path, writer)
            finally:
                state.in_flight -= 1
    except (ConnectionError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


async def _complete(body: dict[str, Any], path: str, writer: asyncio.StreamWriter) -> None:
    model = body.get("model")
    if model == "hf" and "ignore_eos" in body:
        writer.write(_json_response(422, {"detail": "Unexpected fields in the request: {'ignore_eos'}"}))
        await writer.drain()
        return
    if model not in {"ok", "other", "short", "http500", "hang", "stream-error", "bad-json", "hf"}:
        writer.write(_json_response(400, {"detail": f"Server is pinned to 'ok'; requested '{model}'."}))
        await writer.drain()
        return
    if model == "http500":
        writer.write(_json_response(500, {"detail": "engine exploded"}))
        await writer.drain()
        return
    if model == "hang":
        await asyncio.sleep(3600)
    # Count input tokens as a BOS-adding word tokenizer (and, for chat, its template) would.
    if "prompt" in body:
        prompt = body["prompt"]
        n_in = len(prompt) if isinstance(prompt, list) else len(str(prompt).split()) + 1
    else:
        n_in = len(f"user : {body['messages'][-1]['content']} assistant :".split()) + 1
    want = int(body.get("max_tokens", 16))
    fixed = body.get("ignore_eos") or "min_new_tokens" in body.get("generation_config", "")
    n_out = 2 if model == "short" else (want if fixed else min(want, 5))
    word = "zz" if model == "other" else "ab"
    chat = path.endswith("chat/completions")

    def event(text: str, finish: str | None = None, usage: dict[str, int] | None = None) -> bytes:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
        if chat:
            choice["delta"] = {"content": text}
        else:
            choice["text"] = text
        obj: dict[str, Any] = {"choices": [choice]}
        if usage:
            obj["usage"] = usage
        return f"data: {json.dumps(obj)}\n\n".encode()

    if not body.get("stream"):
        text = " ".join([word] * n_out)
        choice = {"message": {"content": text}} if chat else {"text": text}
        writer.write(_json_response(200, {"choices": [choice], "usage": {"completion_tokens": n_out}}))
        await writer.drain()
        return
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
    for i in range(n_out):
        await asyncio.sleep(TOKEN_DELAY)
        if model == "stream-error" and i == 1:
            writer.write(_chunk(b'data: {"error": "CUDA out of memory"}\n\n'))
            break
        if model == "bad-json" and i == 1:
            writer.write(_chunk(b"data: {not json\n\n"))
            break
        writer.write(_chunk(event(f" {word}" if i else word)))
        await writer.drain()
    else:
        usage = {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out}
        writer.write(_chunk(event("", "length", usage) + b"data: [DONE]\n\n"))
    writer.write(b"0\r\n\r\n")
    await writer.drain()


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    """Start the fake server on 127.0.0.1 (an ephemeral port) in a background thread."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        state = FakeServer(url="", port=0)

        async def start() -> None:
            server = await asyncio.start_server(lambda r, w: _handle(state, r, w), "127.0.0.1", 0)
            state.port = server.sockets[0].getsockname()[1]
            state.url = f"http://127.0.0.1:{state.port}"
            holder["server"], holder["state"] = server, state
            ready.set()

        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield holder["state"]

    async def stop() -> None:
        holder["server"].close()
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()

    asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


class WordTokenizer:
    """A word-level tokenizer over 676 two-letter words plus a BOS token (id 0) that encode adds."""

    chat_template = "user: {content} assistant:"

    def __init__(self) -> None:
        letters = "abcdefghijklmnopqrstuvwxyz"
        self.words = ["<s>"] + [a + b for a in letters for b in letters]
        self.ids = {w: i for i, w in enumerate(self.words)}
        self.all_special_ids = [0]

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = [self.ids.get(w, 1) for w in text.split()]
        return ([0] if add_special_tokens else []) + ids

    def decode(self, token_ids: Any) -> str:
        return " ".join(self.words[i] for i in token_ids)

    def __len__(self) -> int:
        return len(self.words)

    def apply_chat_template(self, messages: list[dict[str, str]], **_: Any) -> list[int]:
        return self.encode(f"user : {messages[-1]['content']} assistant :", add_special_tokens=True)


@pytest.fixture
def word_tokenizer() -> WordTokenizer:
    """The test tokenizer."""
    return WordTokenizer()


@pytest.fixture
def free_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
