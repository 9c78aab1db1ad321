"""Boot-to-first-token of ``ccai serve gateway --embedded`` on the virtual TDX VM with two virtual H100s.

Each run starts the gateway as a fresh process (``--embedded --kek FILE --simulate tdx --gpus 2
--allow-plaintext``, the model sealed once before the first run and reused), waits for ``/health`` →
ready, then sends one streaming chat completion and times the first content event. Printed per run:
process start → ready, ready → first token, process start → first token, and the gateway's own
per-state seconds (``/health``'s ``states_seconds``); then the median. It also times attestation
documents (``GET /.well-known/ccai/attestation``) on the ready gateway. Asserts nothing; the goal
(boot-to-first-token ≤ 15 s on the 2-vCPU development VM) is compared in the summary line.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_gateway_boot.py [--runs 3] [--documents 10]

The ``--kbs`` flow adds one RCAR exchange (about 0.1–0.3 s with the local broker, docs/key-broker.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

SRC = Path(__file__).resolve().parents[1] / "src"
GOAL_SECONDS = 15.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC), "CCAI_HOME": str(home)}


def _first_token(url: str) -> float:
    body = {
        "model": "SmolLM2-135M-Instruct",
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 8,
        "temperature": 0,
        "stream": True,
    }
    start = time.perf_counter()
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=300) as stream:
        stream.raise_for_status()
        for line in stream.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                choices = json.loads(line[6:]).get("choices") or []
                if choices and choices[0].get("delta", {}).get("content"):
                    return time.perf_counter() - start
    raise RuntimeError("no content event in the stream")


def one_run(home: Path, kek: Path, *, documents: int) -> dict[str, Any]:
    """Start a gateway, time it to ready and to the first token, then time documents; stop it."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        sys.executable, "-m", "ccai.cli", "serve", "gateway", "--embedded", "--kek", str(kek),
        "--simulate", "tdx", "--gpus", "2", "--allow-plaintext", "--port", str(port),
    ]  # fmt: skip
    t0 = time.perf_counter()
    process = subprocess.Popen(argv, env=_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the gateway exited: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            try:
                r = httpx.get(url + "/health", timeout=2)
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        ready = time.perf_counter() - t0
        health = r.json()
        first = _first_token(url)
        total = time.perf_counter() - t0
        doc_seconds = []
        for _ in range(documents):
            start = time.perf_counter()
            d = httpx.get(
                url + "/.well-known/ccai/attestation", params={"nonce": os.urandom(32).hex()}, timeout=60
            )
            d.raise_for_status()
            doc_seconds.append(time.perf_counter() - start)
    finally:
        process.terminate()
        process.wait(timeout=60)
    return {
        "ready_s": ready,
        "first_token_after_ready_s": first,
        "boot_to_first_token_s": total,
        "states": health["states_seconds"],
        "documents_s": doc_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--documents", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ccai-bench-gateway-") as tmp:
        home, kek = Path(tmp) / "home", Path(tmp) / "kek.json"
        home.mkdir()
        # Seal the embedded model once (not timed): the first --embedded start makes the KEK file.
        sys.path.insert(0, str(SRC))
        from ccai.cli.serve_gateway import prepare_embedded

        os.environ["CCAI_HOME"] = str(home)
        start = time.perf_counter()
        prepare_embedded(kbs=None, resource=None, kek_file=kek)
        print(f"sealed the embedded model once in {time.perf_counter() - start:.2f} s (not in the runs)")
        print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load average {os.getloadavg()}")
        runs = []
        for i in range(args.runs):
            run = one_run(home, kek, documents=args.documents if i == 0 else 0)
            runs.append(run)
            states = ", ".join(f"{k} {v:.2f}" for k, v in run["states"].items())
            print(
                f"run {i + 1}: ready {run['ready_s']:.2f} s, "
                f"first token +{run['first_token_after_ready_s']:.2f} s, "
                f"boot-to-first-token {run['boot_to_first_token_s']:.2f} s  [{states}]"
            )
            if run["documents_s"]:
                docs = run["documents_s"]
                print(
                    f"  attestation document (TDX + 2 GPUs, collateral embedded): median "
                    f"{statistics.median(docs) * 1000:.0f} ms, min {min(docs) * 1000:.0f} ms, "
                    f"max {max(docs) * 1000:.0f} ms over {len(docs)}"
                )
        median = statistics.median(r["boot_to_first_token_s"] for r in runs)
        verdict = "meets" if median <= GOAL_SECONDS else "MISSES"
        print(
            f"median boot-to-first-token {median:.2f} s over {len(runs)} runs: "
            f"{verdict} the {GOAL_SECONDS:g} s goal"
        )
        print(f"load average after the runs {os.getloadavg()}")


if __name__ == "__main__":
    main()
