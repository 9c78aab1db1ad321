"""Throughput and latency of the attestation service against the in-process Verifier + token signing.

Starts ``ccai serve attestation`` (uvicorn, SQLite under a temp ``$CCAI_HOME``, ``--allow-simulated``,
``--allow-anonymous``) with ccai's dev collateral server as RIM service and OCSP responder, and drives it
with httpx async clients (closed loop, 1–64 concurrent clients):

* ``/v4/attest/gpu`` with 1-GPU and 8-GPU virtual-GPU evidence (one evidence body reused: the service
  has no nonce state on this API, exactly like NRAS);
* ``/v1/attest`` with a virtual TDX + 1 GPU bundle, collateral embedded, each bound to its own fresh
  service nonce (the bundles are collected before the clock starts).

The in-process baseline, measured in the same run on the same machine: ``Verifier.verify_gpu`` (with
the same shared collateral cache the service uses) /
``Verifier.verify_bundle`` + ``issue_token`` in a loop, one thread. The table prints each arm's
throughput, p50/p99 latency and the ratio service / in-process. Prints numbers; asserts nothing.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_attestation_service.py \
        [--clients 1,8,32,64] [--workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from ccai._time import utcnow
from ccai.attest import collect_composite, gather_composite_collateral
from ccai.collateral import CollateralCache, cpu_collateral_section, default_gpu_source, embed_collateral
from ccai.evidence import GpuEvidence, dump_evidence_bundle, load_evidence_bundle
from ccai.token import TokenSigner, issue_token
from ccai.verify import Verifier
from ccai.virtual import (
    VirtualGpuBackend,
    create_dev_collateral_app,
    open_virtual_vm,
    run_in_background,
    settings_for_virtual_gpu,
    virtual_trust_anchors,
)

SEED = "bench-attestation-service"


class _Source:
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


def _items(backend: VirtualGpuBackend, nonce: bytes, count: int) -> list[GpuEvidence]:
    return [
        GpuEvidence(
            arch="HOPPER",
            nonce=nonce,
            report=backend.attestation_report(i, nonce),
            certificate_chain=backend.certificate_chain(i),
        )
        for i in range(count)
    ]


def _body(items: list[GpuEvidence], nonce: bytes) -> bytes:
    import base64

    return json.dumps(
        {
            "nonce": nonce.hex(),
            "arch": "HOPPER",
            "evidence_list": [
                {
                    "evidence": base64.b64encode(i.report).decode(),
                    "certificate": base64.b64encode(i.certificate_chain).decode(),
                }
                for i in items
            ],
        }
    ).encode()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _drive(url: str, bodies: list[bytes], clients: int) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    failures = 0
    index = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def worker() -> None:
            nonlocal index, failures
            while index < len(bodies):
                body = bodies[index]
                index += 1
                t0 = time.perf_counter()
                r = await client.post(url, content=body, headers={"content-type": "application/json"})
                latencies.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    failures += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - t0
    return len(bodies) / elapsed, latencies, failures


def _in_process(call, runs: int) -> tuple[float, list[float]]:
    call()  # warm caches
    times = []
    t0 = time.perf_counter()
    for _ in range(runs):
        s = time.perf_counter()
        call()
        times.append(time.perf_counter() - s)
    return runs / (time.perf_counter() - t0), times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", default="1,8,32,64")
    parser.add_argument(
        "--requests", type=int, default=200, help="requests per concurrency level (at least 4 per client)"
    )
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    home = Path(tempfile.mkdtemp(prefix="ccai-bench-svc-"))
    os.environ["CCAI_HOME"] = str(home)
    cpu, gpu1 = open_virtual_vm(tee="tdx", gpus=1, home=home, seed=SEED)
    gpu8 = VirtualGpuBackend.create(home=home / "gpu8", gpus=8, seed=cpu.seed)
    anchors = virtual_trust_anchors(gpu=True, tdx=True)
    signer, dev = TokenSigner.generate(), TokenSigner.generate(development=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    rows = []
    with run_in_background(create_dev_collateral_app(settings_for_virtual_gpu(gpu1, tee=cpu))) as dev_url:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ccai.cli",
                "serve",
                "attestation",
                "--port",
                str(port),
                "--allow-simulated",
                "--allow-anonymous",
                "--rim-service-url",
                dev_url,
                "--ocsp-url",
                f"{dev_url}/ocsp",
                "--workers",
                str(args.workers),
            ],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(300):
                try:
                    if httpx.get(base + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            verifier = Verifier(
                anchors=anchors,
                allow_simulated=True,
                gpu_source=default_gpu_source(
                    rim_service_url=dev_url, ocsp_url=f"{dev_url}/ocsp", cache=CollateralCache()
                ),
            )
            for name, backend, count in (("v4 1-GPU", gpu1, 1), ("v4 8-GPU", gpu8, 8)):
                nonce = secrets.token_bytes(32)
                items = _items(backend, nonce, count)
                body = _body(items, nonce)
                assert (
                    json.loads(httpx.post(base + "/v4/attest/gpu", content=body, timeout=60).text)[0][0]
                    == "JWT"
                )
                ops, lat = _in_process(
                    lambda items=items, nonce=nonce: issue_token(
                        verifier.verify_gpu(items, nonce=nonce),
                        signing_key=signer,
                        development_key=dev,
                        now=utcnow(),
                    ),
                    runs=100,
                )
                rows.append((name, "in-process", 1, ops, statistics.median(lat), _pct(lat, 0.99), ops, 0))
                for clients in levels:
                    n = max(args.requests, 4 * clients)
                    svc, lat, failed = asyncio.run(_drive(base + "/v4/attest/gpu", [body] * n, clients))
                    rows.append(
                        (name, "service", clients, svc, statistics.median(lat), _pct(lat, 0.99), ops, failed)
                    )
            # Composite: TDX + 1 GPU, one fresh nonce and bundle per request.
            source = _Source(gpu1)

            def bundle(nonce: bytes) -> bytes:
                b = collect_composite(nonce=nonce, cpu=cpu, gpu=gpu1)
                now = utcnow()
                coll = gather_composite_collateral(b, now=now, gpu_source=source)
                coll = dataclasses.replace(coll, cpu=cpu_collateral_section(cpu.collateral(now)))
                return dump_evidence_bundle(embed_collateral(b, coll))

            sample = load_evidence_bundle(bundle(secrets.token_bytes(32)))
            ops, lat = _in_process(
                lambda: issue_token(
                    verifier.verify_bundle(sample, expected_nonce=sample.nonce),
                    signing_key=signer,
                    development_key=dev,
                    now=utcnow(),
                ),
                runs=100,
            )
            rows.append(
                ("v1 TDX+1GPU", "in-process", 1, ops, statistics.median(lat), _pct(lat, 0.99), ops, 0)
            )
            for clients in levels:
                n = max(args.requests // 2, 4 * clients)
                nonces = [bytes.fromhex(httpx.post(base + "/v1/nonce").json()["nonce"]) for _ in range(n)]
                bodies = [bundle(x) for x in nonces]
                svc, lat, failed = asyncio.run(_drive(base + "/v1/attest", bodies, clients))
                rows.append(
                    (
                        "v1 TDX+1GPU",
                        "service",
                        clients,
                        svc,
                        statistics.median(lat),
                        _pct(lat, 0.99),
                        ops,
                        failed,
                    )
                )
        finally:
            proc.terminate()
            proc.wait()
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, "
        f"service workers={args.workers}, SQLite"
    )
    print(
        f"{'evidence':<13} {'arm':<11} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'ratio':>6} {'errors':>6}"
    )
    for name, arm, clients, rps, p50, p99, base_ops, failed in rows:
        print(
            f"{name:<13} {arm:<11} {clients:>7} {rps:>8.1f} {p50 * 1000:>8.2f} {p99 * 1000:>8.2f} "
            f"{rps / base_ops:>6.2f} {failed:>6}"
        )


if __name__ == "__main__":
    main()
