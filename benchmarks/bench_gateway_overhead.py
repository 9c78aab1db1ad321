"""Overhead of the confidential gateway: the same engine directly (arm B) vs through the gateway with EHBP
through the verifying client (arm A), A/B interleaved with paired 95 % CIs (``ccai.bench`` sweep).

Set-up (loopback, a fresh ``$CCAI_HOME``): ``ccai serve gateway --embedded --kek K --simulate tdx
--gpus 1 --upstream-cmd "ccai dev engine --engine inprocess {model_dir} --port {port} …"`` — the
gateway boots (virtual TDX VM + virtual H100 evidence, KEK, the sealed embedded SmolLM2-135M unsealed
into RAM) and starts ONE in-process engine on a loopback port. Arm B talks to that engine process
directly; arm A attests the gateway (``ccai.client.attest_gateway``, simulated hardware allowed by
name) and sends every request through ``AsyncEhbpTransport`` pinned to the attested key, so the
client's encryption and decryption are inside the measured times. Both arms therefore hit the very
same engine process, model weights and scheduler: the difference is the gateway hop plus EHBP.

Usage::

    PYTHONPATH=src python benchmarks/bench_gateway_overhead.py [--concurrency 1,2,4] [--io 128/32]
        [--repeats 3] [--prompts-per-concurrency 4] [--cpu-threads 1] [--output results.json]

Prints throughput (output tok/s), median TTFT and median TPOT per arm and the Δ% of A against B with
its 95 % CI, and the goals (throughput and median TPOT within 1 %, median TTFT + ≤ 2 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from ccai.bench import (
    Delta,
    GatewayTrust,
    SweepConfig,
    SweepResult,
    format_delta,
    load_tokenizer,
    parse_int_list,
    parse_io,
    run_sweep,
)
from ccai.virtual import virtual_trust_anchors

SRC = Path(__file__).resolve().parents[1] / "src"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gateway(
    home: Path, *, cpu_threads: int, dtype: str, log: Path
) -> tuple[subprocess.Popen[bytes], str, Path]:
    """The gateway in front of one in-process engine; returns the process, its URL and the engine's
    settings file (written by the engine once it is healthy)."""
    port = _free_port()
    settings = home / "engine.json"
    engine = (
        f"{shlex.quote(sys.executable)} -m ccai.cli dev engine --engine inprocess {{model_dir}} "
        f"--port {{port}} --dtype {dtype} --cpu-threads {cpu_threads} "
        f"--settings-file {shlex.quote(str(settings))}"
    )
    argv = [
        sys.executable, "-m", "ccai.cli", "serve", "gateway", "--embedded", "--kek", str(home / "kek.json"),
        "--simulate", "tdx", "--gpus", "1", "--port", str(port), "--upstream-cmd", engine,
        "--engine-timeout", "600", "--json",
    ]  # fmt: skip
    env = {
        **os.environ,
        "CCAI_HOME": str(home),
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}", settings


def wait_ready(process: subprocess.Popen[bytes], url: str, settings: Path, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the gateway exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200 and settings.is_file():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the gateway was not ready within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def table(result: SweepResult) -> str:
    """One row per (I/O, concurrency): per-arm means over the repeats and Δ% (95 % CI) of A vs B."""
    head = (
        f"{'I/O':>7} {'conc':>4} | {'tok/s B':>8} {'tok/s A':>8} {'Δ% [95% CI]':>22} | "
        f"{'TTFT B':>7} {'TTFT A':>7} {'Δ ms':>6} {'Δ% [95% CI]':>22} | "
        f"{'TPOT B':>7} {'TPOT A':>7} {'Δ% [95% CI]':>22}"
    )
    lines = [head, "-" * len(head)]
    for cell in result.cells:
        tput = [_mean(cell.values(arm, "output_throughput")) for arm in ("B", "A")]
        ttft = [_mean(cell.values(arm, "median_ttft_ms")) for arm in ("B", "A")]
        tpot = [_mean(cell.values(arm, "median_tpot_ms")) for arm in ("B", "A")]
        lines.append(
            f"{cell.io.label:>7} {cell.concurrency:>4} | {tput[0]:8.1f} {tput[1]:8.1f} "
            f"{format_delta(cell.deltas.get('output_throughput_per_gpu')):>22} | "
            f"{ttft[0]:7.1f} {ttft[1]:7.1f} {ttft[1] - ttft[0]:+6.1f} "
            f"{format_delta(cell.deltas.get('median_ttft_ms')):>22} | "
            f"{tpot[0]:7.2f} {tpot[1]:7.2f} {format_delta(cell.deltas.get('median_tpot_ms')):>22}"
        )
    return "\n".join(lines)


def _noise(delta: Delta | None) -> str:
    if delta is None or delta.low is None or delta.high is None:
        return ""
    if delta.low <= 0 <= delta.high:
        return "; the CI includes 0: not told apart from noise"
    return ""


def goals(result: SweepResult) -> list[str]:
    """Each cell against the goals: |Δ throughput| and |Δ median TPOT| ≤ 1 %, Δ median TTFT ≤ 2 ms."""
    out = []
    for cell in result.cells:
        tput, tpot = cell.deltas.get("output_throughput_per_gpu"), cell.deltas.get("median_tpot_ms")
        dttft = _mean(cell.values("A", "median_ttft_ms")) - _mean(cell.values("B", "median_ttft_ms"))
        checks = [
            ("throughput", tput is not None and abs(tput.pct) <= 1.0, format_delta(tput), tput),
            ("median TPOT", tpot is not None and abs(tpot.pct) <= 1.0, format_delta(tpot), tpot),
            ("median TTFT", dttft <= 2.0, f"{dttft:+.1f} ms", cell.deltas.get("median_ttft_ms")),
        ]
        verdict = ", ".join(
            f"{name} {'met' if ok else 'MISSED'} ({value}{_noise(delta) if not ok else ''})"
            for name, ok, value, delta in checks
        )
        out.append(f"{cell.io.label} c={cell.concurrency}: {verdict}")
    return out


async def sweep(args: argparse.Namespace, gateway: str, engine: dict[str, Any], home: Path) -> SweepResult:
    config = SweepConfig(
        url=gateway,
        model=engine["model"],
        baseline_url=engine["url"],
        concurrencies=parse_int_list(args.concurrency),
        ios=parse_io(args.io),
        repeats=args.repeats,
        prompts_per_concurrency=args.prompts_per_concurrency,
        warmup_requests=args.warmup_requests,
        check_prompts=2,
        check_tokens=16,
        timeout=300,
        ehbp=True,
    )
    trust = GatewayTrust(anchors=virtual_trust_anchors(home, gpu=True, tdx=True), allow_simulated=True)

    def attested(arm: str, attestation: Any) -> None:
        for label, value in attestation.summary():
            print(f"  arm {arm} {label:<13} {value}", flush=True)

    def on_run(_: SweepResult, cell: Any, run: Any) -> None:
        m = run.metrics
        print(
            f"  {cell.io.label} c={cell.concurrency} arm {run.arm} repeat {run.repeat + 1}: "
            f"{m['output_throughput']:.1f} tok/s, median TTFT {m['median_ttft_ms']:.1f} ms, "
            f"median TPOT {m['median_tpot_ms']:.2f} ms, failed {int(m['failed'])}",
            flush=True,
        )

    tokenizer = load_tokenizer(engine["model"])
    return await run_sweep(config, tokenizer=tokenizer, trust=trust, on_attested=attested, on_run=on_run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", default="1,2,4")
    parser.add_argument("--io", default="128/32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prompts-per-concurrency", type=float, default=4.0)
    parser.add_argument("--warmup-requests", type=int, default=2)
    parser.add_argument("--cpu-threads", type=int, default=1, help="torch threads of the in-process engine")
    parser.add_argument("--dtype", default="float32", help="the in-process engine's dtype")
    parser.add_argument("--output", type=Path, help="also write the cells as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ccai-gw-overhead-") as tmp:
        home = Path(tmp)
        log = home / "gateway.log"
        t0 = time.monotonic()
        process, url, settings = start_gateway(home, cpu_threads=args.cpu_threads, dtype=args.dtype, log=log)
        try:
            wait_ready(process, url, settings, log, timeout=900)
            engine = json.loads(settings.read_text())
            took = time.monotonic() - t0
            print(f"gateway {url} ready after {took:.1f} s; engine {engine['url']} (one process, both arms)")
            print(f"  engine settings {json.dumps(engine['settings'])}", flush=True)
            result = asyncio.run(sweep(args, url, engine, home))
        finally:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
    print()
    print("arm B: the in-process engine directly; arm A: the gateway (--upstream-cmd, the same engine")
    print("process) with EHBP through the verifying client. Means over repeats; Δ% = A vs B, paired 95 % CI.")
    print(table(result))
    print()
    for line in goals(result):
        print(line)
    for warning in result.warnings:
        print(f"warning: {warning}")
    if args.output is not None:
        from ccai.bench import cell_record

        args.output.write_text(json.dumps([cell_record(result, c) for c in result.cells], indent=2) + "\n")


if __name__ == "__main__":
    main()
