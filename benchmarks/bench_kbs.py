"""RCAR release latency and throughput of the key broker vs in-process composite verification.

Starts ``ccai serve kbs --offline --allow-simulated`` (uvicorn, SQLite under a temp ``$CCAI_HOME``)
with a virtual TDX guest and two virtual H100s, stores one 32-byte key and a policy, then at each
concurrency level (closed loop, httpx async clients):

* attestation step: ``POST /kbs/v0/attest`` with a bundle bound to its own challenge (sessions and
  bundles are made before the clock starts);
* resource step: ``GET /kbs/v0/resource/…`` with a valid bearer token (policy + envelope + JWE);
* full release = attest + resource, per guest.

Baseline, same run and machine: ``Verifier.verify_bundle`` of the same kind of bundle in a loop on
one thread (what the broker runs per attest). Prints numbers; asserts nothing.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_kbs.py [--clients 1,8,32,64] [--requests 64]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
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
sys.path.insert(0, str(SRC))

POLICY = {"format": "ccai-policy/1", "allow_simulated": True, "gpus": {"count": 2}}


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000


def _evidence(cpu: Any, gpu: Any) -> Any:
    from ccai._time import utcnow
    from ccai.attest import collect_composite, gather_composite_collateral
    from ccai.collateral import cpu_collateral_section, embed_collateral
    from ccai.evidence import dump_evidence_bundle
    from ccai.virtual import create_dev_collateral_app, run_in_background, settings_for_virtual_gpu

    def make(nonce: bytes, bound: bytes) -> bytes:
        bundle = collect_composite(nonce=nonce, cpu=cpu, gpu=gpu, hpke_public_key=bound)
        now = utcnow()
        with run_in_background(create_dev_collateral_app(settings_for_virtual_gpu(gpu, tee=cpu))) as url:
            from ccai.cli._options import network_sources

            src = network_sources(pcs_url=url, kds_url=url, rim_service_url=url, ocsp_url=f"{url}/ocsp")
            coll = gather_composite_collateral(bundle, now=now, **src)
        coll = dataclasses.replace(coll, cpu=cpu_collateral_section(cpu.collateral(now)))
        return dump_evidence_bundle(embed_collateral(bundle, coll))

    return make


def _level(url: str, clients: int, n: int, make: Any) -> tuple[list[float], list[float], float, float]:
    """One concurrency level: n attests, then 4n resource fetches with the tokens."""
    from ccai.kbs import runtime_data_hash
    from ccai.kbs._jose import private_jwk_pair

    prepared = []  # sessions and bundles before the clock
    for _ in range(n):
        with httpx.Client(base_url=url) as http:
            r = http.post("/kbs/v0/auth", json={"version": "0.4.0", "tee": "tdx", "extra-params": {}})
        nonce = r.json()["nonce"]
        _k, jwk = private_jwk_pair()
        runtime = {"nonce": nonce, "tee-pubkey": jwk}
        evidence = json.loads(make(base64.b64decode(nonce), runtime_data_hash(runtime)))
        # Encoded before the clock too: the timings are the broker's, not the client's JSON encoder.
        body = json.dumps({"runtime-data": runtime, "tee-evidence": evidence}).encode()
        prepared.append((r.cookies.get("kbs-session-id"), body))
    attest_t: list[float] = []
    resource_t: list[float] = []
    tokens: list[str] = []
    limits = httpx.Limits(max_connections=clients)

    async def run_attest() -> float:
        queue = list(prepared)
        async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

            async def worker() -> None:
                while queue:
                    sid, body = queue.pop()
                    t = time.perf_counter()
                    r = await client.post(
                        "/kbs/v0/attest",
                        content=body,
                        headers={"content-type": "application/json"},
                        cookies={"kbs-session-id": sid},
                    )
                    attest_t.append(time.perf_counter() - t)
                    r.raise_for_status()
                    tokens.append(r.json()["token"])

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(clients)))
            return time.perf_counter() - start

    async def run_resource() -> float:
        queue = list(tokens) * 4
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

            async def worker() -> None:
                while queue:
                    headers = {"Authorization": f"Bearer {queue.pop()}"}
                    t = time.perf_counter()
                    r = await client.get("/kbs/v0/resource/bench/kek/m", headers=headers)
                    resource_t.append(time.perf_counter() - t)
                    r.raise_for_status()

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(clients)))
            return time.perf_counter() - start

    wall_a = asyncio.run(run_attest())
    wall_r = asyncio.run(run_resource())
    return attest_t, resource_t, wall_a, wall_r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,8,32,64")
    parser.add_argument("--requests", type=int, default=64)
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    home = Path(tempfile.mkdtemp(prefix="ccai-bench-kbs-"))
    os.environ["CCAI_HOME"] = str(home)
    from ccai.evidence import load_evidence_bundle
    from ccai.kbs import runtime_data_hash
    from ccai.kbs._jose import private_jwk_pair
    from ccai.verify import Verifier
    from ccai.virtual import open_virtual_vm, virtual_trust_anchors

    cpu, gpu = open_virtual_vm(tee="tdx", gpus=2, home=home)
    make = _evidence(cpu, gpu)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ccai.cli",
            "serve",
            "kbs",
            "--port",
            str(port),
            "--offline",
            "--allow-simulated",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        admin = {"Authorization": "Bearer " + (home / "kbs-admin.token").read_text().strip()}
        httpx.post(
            f"{url}/kbs/v0/resource/bench/kek/m", content=os.urandom(32), headers=admin
        ).raise_for_status()
        httpx.put(
            f"{url}/kbs/v0/admin/policy/bench",
            json={"document": json.dumps(POLICY), "repo": "bench"},
            headers=admin,
        ).raise_for_status()

        # Baseline: in-process composite verification, one thread.
        verifier = Verifier(
            anchors=virtual_trust_anchors(gpu=True, tdx=True), allow_simulated=True, check_revocation=False
        )
        base_bundles = []
        for _ in range(args.requests):
            nonce = os.urandom(32)
            _k, jwk = private_jwk_pair()
            base_bundles.append(
                (
                    nonce,
                    load_evidence_bundle(make(nonce, runtime_data_hash({"nonce": "x", "tee-pubkey": jwk}))),
                )
            )
        verifier.verify_bundle(base_bundles[0][1], expected_nonce=base_bundles[0][0])  # warm caches
        base: list[float] = []
        for nonce, bundle in base_bundles:
            t = time.perf_counter()
            verifier.verify_bundle(bundle, expected_nonce=nonce)
            base.append(time.perf_counter() - t)
        base_p50 = statistics.median(base) * 1000
        print(
            f"# host: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
            f"python {platform.python_version()}"
        )
        print(
            f"in-process verify_bundle (TDX + 2 GPUs): p50 {base_p50:.2f} ms  p99 {_pct(base, 0.99):.2f} ms  "
            f"{1 / statistics.mean(base):.1f}/s (1 thread)"
        )
        print(
            "clients | attest p50/p99 ms | attest/s | resource p50/p99 ms | resource/s "
            "| release p50 ms | release/verify"
        )
        for clients in levels:
            attest_t, resource_t, wall_a, wall_r = _level(url, clients, max(args.requests, clients), make)
            release = statistics.median(attest_t) * 1000 + statistics.median(resource_t) * 1000
            print(
                f"{clients:>7} | {_pct(attest_t, 0.5):7.2f} / {_pct(attest_t, 0.99):7.2f} | "
                f"{len(attest_t) / wall_a:8.1f} | "
                f"{_pct(resource_t, 0.5):7.2f} / {_pct(resource_t, 0.99):7.2f} | "
                f"{len(resource_t) / wall_r:10.1f} | {release:14.2f} | {release / base_p50:5.2f}x"
            )
    finally:
        proc.terminate()
        proc.wait(timeout=15)


if __name__ == "__main__":
    main()
