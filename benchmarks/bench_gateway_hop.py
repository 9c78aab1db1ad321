"""What one request pays for the gateway hop: a trivial engine directly vs the gateway in front of it,
in plaintext and with EHBP, so the gateway's own per-request cost is all that differs.

The engine (written to a temporary directory and started by the gateway with ``--upstream-cmd``) is a
bare ASGI app on uvicorn: a streaming chat completion sends ``--events`` SSE chunks ``--gap-ms``
apart, a non-streaming one answers a ~1 KB completion at once. The gateway runs as its own process
(``ccai serve gateway --kek K --simulate tdx --gpus 1 --allow-plaintext --upstream-cmd …``) and is
attested once (virtual hardware); then three arms hit the **same engine process**:

* ``direct`` — an ``httpx.AsyncClient`` to the engine's loopback port;
* ``plain`` — the same to the gateway, plaintext (``--allow-plaintext``);
* ``ehbp`` — the same through ``ccai.ehbp.AsyncEhbpTransport`` to the attested key: the request is
  sealed and the response opened inside the measured time.

Three variants, each a ``--body-kb`` chat request (default 8 KiB of prompt):

* ``stream`` — sequential streaming requests: time to the first response chunk (TTFT) and to the
  end of the stream;
* ``nonstream`` — sequential non-streaming requests: time to the complete answer;
* ``c8`` — ``--concurrency`` (8) clients streaming at once: TTFT and stream time per request.

Rounds are interleaved (every round runs every arm, in a rotating order, on warm keep-alive
connections) so machine noise hits the arms alike. Printed: each round's medians, then the median
over all requests per arm and the milliseconds the gateway adds (arm − direct), and the gateway
event loop's CPU milliseconds per request (``/proc/PID/schedstat``, over all rounds). Asserts nothing.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_gateway_hop.py [--rounds 5] [--requests 30]

``--profile FILE`` runs the gateway process under cProfile and writes its stats to ``FILE`` when it
stops (``python -m pstats FILE``; the boot is in another thread, so only the serving loop shows).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

SRC = Path(__file__).resolve().parents[1] / "src"
ARMS = ("direct", "plain", "ehbp")

#: The engine: ``python engine.py MODEL_DIR PORT``; writes its port to $HOP_ENGINE_PORT_FILE.
ENGINE = r"""
import asyncio, json, os, sys
import uvicorn

PORT = int(sys.argv[2])
EVENTS = int(os.environ.get("HOP_EVENTS", "10"))
GAP = float(os.environ.get("HOP_GAP_MS", "5")) / 1000
JSON = [(b"content-type", b"application/json")]


def chunk(i):
    doc = {"id": "chatcmpl-0", "object": "chat.completion.chunk", "model": "m",
           "choices": [{"index": 0, "delta": {"content": f"t{i} "}, "finish_reason": None}]}
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


COMPLETION = json.dumps({"id": "chatcmpl-0", "object": "chat.completion", "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "word " * 150},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 2000, "completion_tokens": 150, "total_tokens": 2150}}).encode()


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/health":
        await send({"type": "http.response.start", "status": 200, "headers": JSON})
        await send({"type": "http.response.body", "body": b'{"status":"ok"}'})
        return
    if scope["path"] == "/v1/models":
        await send({"type": "http.response.start", "status": 200, "headers": JSON})
        await send({"type": "http.response.body", "body": b'{"object":"list","data":[{"id":"m"}]}'})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if not json.loads(body).get("stream"):
        await send({"type": "http.response.start", "status": 200, "headers": JSON})
        await send({"type": "http.response.body", "body": COMPLETION})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream")]})
    for i in range(EVENTS):
        await send({"type": "http.response.body", "body": chunk(i), "more_body": True})
        await asyncio.sleep(GAP)
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


if os.environ.get("HOP_ENGINE_PORT_FILE"):
    with open(os.environ["HOP_ENGINE_PORT_FILE"], "w") as f:
        f.write(str(PORT))
uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning")
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _request(body_kb: int, *, stream: bool) -> dict[str, Any]:
    return {
        "model": "m",
        "messages": [{"role": "user", "content": "x " * (body_kb * 512)}],
        "max_tokens": 16,
        "stream": stream,
    }


async def _stream_once(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> tuple[float, float]:
    """(ms to the first response chunk, ms to the end of the stream)."""
    t0 = time.perf_counter()
    first = 0.0
    async with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for _ in response.aiter_bytes():
            if not first:
                first = (time.perf_counter() - t0) * 1000
    return first, (time.perf_counter() - t0) * 1000


async def _complete_once(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> float:
    t0 = time.perf_counter()
    response = await client.post(url + "/v1/chat/completions", json=body)
    response.raise_for_status()
    response.json()
    return (time.perf_counter() - t0) * 1000


Samples = dict[str, list[float]]


async def _variant_stream(client: httpx.AsyncClient, url: str, args: argparse.Namespace) -> Samples:
    body = _request(args.body_kb, stream=True)
    ttft, total = [], []
    for _ in range(args.requests):
        first, end = await _stream_once(client, url, body)
        ttft.append(first)
        total.append(end)
    return {"ttft": ttft, "stream": total}


async def _variant_nonstream(client: httpx.AsyncClient, url: str, args: argparse.Namespace) -> Samples:
    body = _request(args.body_kb, stream=False)
    return {"latency": [await _complete_once(client, url, body) for _ in range(args.requests)]}


async def _variant_concurrent(client: httpx.AsyncClient, url: str, args: argparse.Namespace) -> Samples:
    body = _request(args.body_kb, stream=True)
    per_worker = max(1, args.requests // args.concurrency)

    async def worker() -> list[tuple[float, float]]:
        return [await _stream_once(client, url, body) for _ in range(per_worker)]

    results = await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    pairs = [pair for result in results for pair in result]
    return {"ttft": [p[0] for p in pairs], "stream": [p[1] for p in pairs]}


Variant = Callable[[httpx.AsyncClient, str, argparse.Namespace], Awaitable[Samples]]


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited with {process.returncode}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the gateway did not become ready")
        time.sleep(0.1)


def _cpu_seconds(pid: int) -> float:
    """CPU seconds the main thread of process ``pid`` (the gateway's event loop) ran so far, from
    the scheduler's nanosecond count (Linux ``/proc/PID/schedstat``; 0 elsewhere)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


async def _measure(urls: dict[str, str], hpke_key: bytes, args: argparse.Namespace, gateway_pid: int) -> None:
    from ccai.ehbp import AsyncEhbpTransport

    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    clients = {
        "direct": httpx.AsyncClient(limits=limits, timeout=60, trust_env=False),
        "plain": httpx.AsyncClient(limits=limits, timeout=60, trust_env=False),
        "ehbp": httpx.AsyncClient(
            transport=AsyncEhbpTransport(hpke_key, inner=httpx.AsyncHTTPTransport(limits=limits)),
            timeout=60,
            trust_env=False,
        ),
    }
    variants: dict[str, Variant] = {
        "stream": _variant_stream,
        "nonstream": _variant_nonstream,
        f"c{args.concurrency}": _variant_concurrent,
    }
    pooled: dict[tuple[str, str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}  # (variant, arm) -> [gateway CPU s, requests]
    try:
        # Warm every connection pool and the gateway's path to the engine.
        for arm in ARMS:
            for run in variants.values():
                await run(clients[arm], urls[arm], argparse.Namespace(**{**vars(args), "requests": 8}))
        for round_ in range(args.rounds):
            order = ARMS[round_ % 3 :] + ARMS[: round_ % 3]
            line: list[str] = []
            for name, run in variants.items():
                medians: dict[str, str] = {}
                for arm in order:
                    cpu_before = _cpu_seconds(gateway_pid)
                    samples = await run(clients[arm], urls[arm], args)
                    spent = cpu.setdefault((name, arm), [0.0, 0.0])
                    spent[0] += _cpu_seconds(gateway_pid) - cpu_before
                    spent[1] += len(next(iter(samples.values())))
                    for metric, values in samples.items():
                        pooled.setdefault((name, metric, arm), []).extend(values)
                    first_metric = next(iter(samples))
                    medians[arm] = f"{statistics.median(samples[first_metric]):.2f}"
                line.append(f"{name} " + "/".join(medians[a] for a in ARMS))
            print(f"round {round_ + 1}: median ms direct/plain/ehbp  " + "  ".join(line), flush=True)
    finally:
        for client in clients.values():
            await client.aclose()
    print()
    print(f"{'variant':<10} {'metric':<8} {'direct':>8} {'plain':>8} {'ehbp':>8} {'+plain':>8} {'+ehbp':>8}")
    for name in variants:
        metrics = sorted({m for (v, m, _) in pooled if v == name}, key=["ttft", "latency", "stream"].index)
        for metric in metrics:
            med = {arm: statistics.median(pooled[(name, metric, arm)]) for arm in ARMS}
            print(
                f"{name:<10} {metric:<8} {med['direct']:8.2f} {med['plain']:8.2f} {med['ehbp']:8.2f} "
                f"{med['plain'] - med['direct']:+8.2f} {med['ehbp'] - med['direct']:+8.2f}"
            )
    print("(median ms over all requests of all rounds; +plain/+ehbp: what the gateway adds to direct)")
    line = "  ".join(
        f"{name} " + "/".join(f"{1000 * cpu[(name, arm)][0] / cpu[(name, arm)][1]:.2f}" for arm in ARMS[1:])
        for name in variants
    )
    print(f"gateway CPU ms per request, plain/ehbp: {line}")


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--requests", type=int, default=30, help="requests per arm, variant and round")
    parser.add_argument("--concurrency", type=int, default=8, help="clients of the concurrent variant")
    parser.add_argument("--body-kb", type=int, default=8, help="KiB of prompt per request (default 8)")
    parser.add_argument("--events", type=int, default=10, help="SSE chunks per streamed answer")
    parser.add_argument("--gap-ms", type=float, default=5.0, help="ms between the engine's chunks")
    parser.add_argument("--profile", type=Path, help="run the gateway under cProfile, stats to this file")
    args = parser.parse_args()

    sys.path.insert(0, str(SRC))
    from ccai.client import attest_gateway
    from ccai.sealed import new_kek, seal, write_kek
    from ccai.virtual import virtual_trust_anchors

    print(f"# {platform.node()} · {os.cpu_count()} CPUs · Python {platform.python_version()}")
    print(
        f"# {args.rounds} rounds × {args.requests} requests per arm and variant; {args.body_kb} KiB prompt; "
        f"{args.events} events {args.gap_ms:g} ms apart; concurrency {args.concurrency}"
    )
    with tempfile.TemporaryDirectory(prefix="ccai-hop-") as tmp_name:
        tmp = Path(tmp_name)
        home = tmp / "home"
        home.mkdir()
        plain = tmp / "model"
        plain.mkdir()
        (plain / "config.json").write_text("{}")
        kek = new_kek()
        write_kek(kek, tmp / "kek.json")
        seal(plain, tmp / "m.sealed", kek)
        engine = tmp / "engine.py"
        engine.write_text(ENGINE)
        port_file = tmp / "engine.port"
        env = {
            **os.environ,
            "PYTHONPATH": str(SRC),
            "CCAI_HOME": str(home),
            "HOP_ENGINE_PORT_FILE": str(port_file),
            "HOP_EVENTS": str(args.events),
            "HOP_GAP_MS": str(args.gap_ms),
        }
        port = _free_port()
        profile = ["-m", "cProfile", "-o", str(args.profile.resolve())] if args.profile else []
        argv = [
            sys.executable, *profile, "-m", "ccai.cli", "serve", "gateway", "--port", str(port),
            "--model", str(tmp / "m.sealed"), "--kek", str(tmp / "kek.json"),
            "--simulate", "tdx", "--gpus", "1", "--allow-plaintext",
            "--upstream-cmd", f"{sys.executable} {engine} {{model_dir}} {{port}}",
        ]  # fmt: skip
        gateway = f"http://127.0.0.1:{port}"
        process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_ready(gateway, process)
            os.environ["CCAI_HOME"] = str(home)
            attestation = attest_gateway(
                gateway, anchors=virtual_trust_anchors(home, gpu=True, tdx=True), allow_simulated=True
            )
            urls = {"direct": f"http://127.0.0.1:{port_file.read_text()}", "plain": gateway, "ehbp": gateway}
            asyncio.run(_measure(urls, attestation.hpke_public_key, args, process.pid))
        finally:
            # SIGINT under cProfile: its dump runs on KeyboardInterrupt, not on a re-raised SIGTERM.
            process.send_signal(signal.SIGINT if args.profile else signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    if args.profile:
        print(f"# gateway profile: {args.profile}")


if __name__ == "__main__":
    main()
