"""Cost of EHBP: round trips per second with a 4 KiB JSON body, EHBP vs plaintext, through the same
ASGI app, and the latency EHBP adds per streamed SSE event.

Two transports, each measured in the same run with A/B rounds interleaved (plaintext, EHBP,
plaintext, EHBP, …) so machine noise hits both arms alike:

* in process: ``httpx.AsyncClient`` → (``AsyncEhbpTransport`` →) ``httpx.ASGITransport`` → the app
  (→ ``EhbpMiddleware`` for the EHBP arm), no sockets: the protocol's CPU cost in isolation;
* loopback: the same over uvicorn on 127.0.0.1, each app in a server process of its own (one
  client, sequential requests). A uvicorn thread inside the client's process adds ~45 ms per request
  here (thread hand-offs), which would hide everything else.

The app is a FastAPI app with ``POST /echo`` (returns the JSON body's size and a field) and
``POST /stream`` (N SSE events of ~150 bytes, like OpenAI chat-completion chunks, sent as fast as
possible). Per-event latency = (stream time / N) EHBP − plaintext. Prints numbers; asserts nothing.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_ehbp.py [--rounds 7] [--requests 300] [--events 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from ccai.ehbp import AsyncEhbpTransport, EhbpMiddleware, ServerKey

EVENT = "data: " + json.dumps(
    {
        "id": "chatcmpl-0",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": "token"}, "finish_reason": None}],
    }
)


def build_app() -> FastAPI:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, Any]:
        body = await request.json()
        return {"bytes": len(body["messages"][0]["content"]), "model": body["model"]}

    @app.post("/stream")
    async def stream(request: Request) -> StreamingResponse:
        count = (await request.json())["n"]

        async def events() -> AsyncIterator[bytes]:
            for _ in range(count):
                yield (EVENT + "\n\n").encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def body_4k() -> dict[str, Any]:
    base = {"model": "m", "messages": [{"role": "user", "content": ""}], "max_tokens": 16}
    pad = 4096 - len(json.dumps(base))
    base["messages"][0]["content"] = "x" * pad
    assert len(json.dumps(base)) == 4096
    return base


async def round_trips(client: httpx.AsyncClient, count: int, body: dict[str, Any]) -> float:
    start = time.perf_counter()
    for _ in range(count):
        response = await client.post("/echo", json=body)
        response.raise_for_status()
    return count / (time.perf_counter() - start)


async def per_event(client: httpx.AsyncClient, events: int) -> float:
    start = time.perf_counter()
    seen = 0
    async with client.stream("POST", "/stream", json={"n": events}) as response:
        async for chunk in response.aiter_bytes():
            seen += chunk.count(b"data: ")
    assert seen == events + 1
    return (time.perf_counter() - start) / events


def interleave(
    rounds: int, plain: Callable[[], float], ehbp: Callable[[], float]
) -> tuple[list[float], list[float]]:
    a: list[float] = []
    b: list[float] = []
    for _ in range(rounds):
        a.append(plain())
        b.append(ehbp())
    return a, b


@contextlib.contextmanager
def _server(key: ServerKey | None) -> Iterator[str]:
    """The app (behind EhbpMiddleware when ``key`` is given) under uvicorn in a child process."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "BENCH_EHBP_KEY": key.private_bytes().hex() if key else ""}
    child = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/.well-known/hpke-keys", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or child.poll() is not None:
                    raise RuntimeError("the benchmark server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        child.terminate()
        child.wait(timeout=10)


def _serve(port: int) -> None:
    import uvicorn

    private = os.environ.get("BENCH_EHBP_KEY", "")
    app: Any = build_app()
    if private:
        app = EhbpMiddleware(app, key=ServerKey.from_private_bytes(bytes.fromhex(private)))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve)
        return
    key = ServerKey.generate()
    app = build_app()
    protected = EhbpMiddleware(app, key=key)
    body = body_4k()
    loop = asyncio.new_event_loop()
    print(f"python {platform.python_version()} on {platform.machine()}, {args.rounds} interleaved rounds")
    print(f"{'arm':<34}{'plaintext':>14}{'EHBP':>14}{'EHBP/plain':>12}")

    def report(name: str, unit: str, plain: list[float], ehbp: list[float], scale: float = 1.0) -> None:
        p, e = statistics.median(plain) * scale, statistics.median(ehbp) * scale
        print(f"{name:<34}{p:>10.1f} {unit:<3}{e:>10.1f} {unit:<3}{e / p:>11.3f}")

    def clients(
        base: str, plain_transport: Any, ehbp_inner: Any
    ) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
        plain = httpx.AsyncClient(base_url=base, transport=plain_transport, timeout=60)
        ehbp = httpx.AsyncClient(
            base_url=base, transport=AsyncEhbpTransport(key.public_key, inner=ehbp_inner), timeout=60
        )
        return plain, ehbp

    # In process.
    plain_c, ehbp_c = clients(
        "http://bench", httpx.ASGITransport(app=app), httpx.ASGITransport(app=protected)
    )
    loop.run_until_complete(round_trips(ehbp_c, 20, body))  # warm up both
    loop.run_until_complete(round_trips(plain_c, 20, body))
    a, b = interleave(
        args.rounds,
        lambda: loop.run_until_complete(round_trips(plain_c, args.requests, body)),
        lambda: loop.run_until_complete(round_trips(ehbp_c, args.requests, body)),
    )
    report("in process: 4 KiB round trips", "/s", a, b)
    a, b = interleave(
        args.rounds,
        lambda: loop.run_until_complete(per_event(plain_c, args.events)),
        lambda: loop.run_until_complete(per_event(ehbp_c, args.events)),
    )
    report("in process: time per SSE event", "us", a, b, scale=1e6)
    print(
        f"{'  added per event (median)':<34}{(statistics.median(b) - statistics.median(a)) * 1e6:>10.1f} us"
    )

    # Loopback (uvicorn, one server process per arm).
    with _server(None) as plain_url, _server(key) as ehbp_url:
        plain_c = httpx.AsyncClient(base_url=plain_url, timeout=60)
        ehbp_c = httpx.AsyncClient(
            base_url=ehbp_url, transport=AsyncEhbpTransport(key.public_key), timeout=60
        )
        loop.run_until_complete(round_trips(ehbp_c, 20, body))
        loop.run_until_complete(round_trips(plain_c, 20, body))
        a, b = interleave(
            args.rounds,
            lambda: loop.run_until_complete(round_trips(plain_c, args.requests, body)),
            lambda: loop.run_until_complete(round_trips(ehbp_c, args.requests, body)),
        )
        report("loopback: 4 KiB round trips", "/s", a, b)
        a, b = interleave(
            args.rounds,
            lambda: loop.run_until_complete(per_event(plain_c, args.events)),
            lambda: loop.run_until_complete(per_event(ehbp_c, args.events)),
        )
        report("loopback: time per SSE event", "us", a, b, scale=1e6)
        added = (statistics.median(b) - statistics.median(a)) * 1e6
        print(f"{'  added per event (median)':<34}{added:>10.1f} us")
        loop.run_until_complete(plain_c.aclose())
        loop.run_until_complete(ehbp_c.aclose())
    loop.close()


if __name__ == "__main__":
    main()
