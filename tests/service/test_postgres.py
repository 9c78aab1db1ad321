"""The service on a real PostgreSQL started by the tests: the core flows, two replicas racing for
nonces under concurrent load, and a replica killed with SIGKILL mid-load losing no audit record."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from ccai.service import ServiceSettings, create_app
from ccai.virtual import virtual_trust_anchors

from .conftest import nras_body, serve, serve_subprocess, virtual_items
from .test_composite_api import make_bundle

pytestmark = [pytest.mark.extra("service"), pytest.mark.extra("postgres"), pytest.mark.postgres]


def _jtis(url: str) -> set[str]:
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return {row[0] for row in conn.execute("SELECT jti FROM audit")}


def test_core_flows_on_postgres(vm_server, ccai_home: Path, fresh_pg_database: str) -> None:
    cpu, gpu, url = vm_server
    settings = ServiceSettings.build(
        environ={},
        database_url=fresh_pg_database,
        rim_service_url=url,
        ocsp_url=f"{url}/ocsp",
        allow_simulated=True,
        allow_anonymous=True,
    )
    with serve(create_app(settings, anchors=virtual_trust_anchors(gpu=True, tdx=True))) as base:
        nonce = secrets.token_bytes(32)
        r = httpx.post(base + "/v4/attest/gpu", json=nras_body(virtual_items(gpu, nonce), nonce), timeout=30)
        assert r.status_code == 200 and r.headers["x-ccai-jti"]
        n = bytes.fromhex(httpx.post(base + "/v1/nonce").json()["nonce"])
        bundle = make_bundle(cpu, gpu, n)
        first = httpx.post(base + "/v1/attest", content=bundle, timeout=30).json()
        again = httpx.post(base + "/v1/attest", content=bundle, timeout=30).json()
        assert first["result"] is True, first["error"]
        assert again["result"] is False and again["error"]["error"] == "NonceMismatch"
    assert len(_jtis(fresh_pg_database)) == 3


def _replica_args(db: str, url: str) -> list[str]:
    return [
        "--database-url",
        db,
        "--rim-service-url",
        url,
        "--ocsp-url",
        f"{url}/ocsp",
        "--allow-simulated",
        "--allow-anonymous",
    ]


def test_two_replicas_never_accept_one_nonce_twice(
    vm_server, ccai_home: Path, fresh_pg_database: str, tmp_path: Path
) -> None:
    cpu, gpu, url = vm_server
    args = _replica_args(fresh_pg_database, url)
    with (
        serve_subprocess(args, ccai_home, log=tmp_path / "a.log") as (a, _),
        serve_subprocess(args, ccai_home, log=tmp_path / "b.log") as (b, _),
    ):
        nonces = [bytes.fromhex(httpx.post((a, b)[i % 2] + "/v1/nonce").json()["nonce"]) for i in range(12)]
        bundles = [make_bundle(cpu, gpu, n) for n in nonces]

        async def race() -> list[tuple[int, bool]]:
            async with httpx.AsyncClient(timeout=60) as client:

                async def post(i: int, base: str) -> tuple[int, bool]:
                    r = await client.post(base + "/v1/attest", content=bundles[i])
                    assert r.status_code == 200, r.text
                    return i, bool(r.json()["result"])

                jobs = [post(i, base) for i in range(len(bundles)) for base in (a, b, a, b)]
                return await asyncio.gather(*jobs)

        results = asyncio.run(race())
    accepted = [sum(ok for j, ok in results if j == i) for i in range(len(bundles))]
    assert accepted == [1] * len(bundles)  # each nonce accepted exactly once across both replicas


def test_sigkilled_replica_loses_no_completed_audit_record(
    dev_server, ccai_home: Path, fresh_pg_database: str, tmp_path: Path
) -> None:
    backend, url = dev_server
    args = _replica_args(fresh_pg_database, url)
    nonce = secrets.token_bytes(32)
    body = json.dumps(nras_body(virtual_items(backend, nonce), nonce)).encode()
    answered: list[str] = []
    with serve_subprocess(args, ccai_home, log=tmp_path / "k.log") as (base, proc):
        stop = threading.Event()

        async def load() -> None:
            async with httpx.AsyncClient(timeout=30) as client:

                async def worker() -> None:
                    while not stop.is_set():
                        try:
                            r = await client.post(base + "/v4/attest/gpu", content=body)
                        except httpx.HTTPError:
                            return  # the replica is gone
                        if r.status_code == 200:
                            answered.append(r.headers["x-ccai-jti"])

                await asyncio.gather(*(worker() for _ in range(8)))

        thread = threading.Thread(target=lambda: asyncio.run(load()))
        thread.start()
        deadline = time.monotonic() + 30
        while len(answered) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # mid-load
        proc.wait()
        thread.join(timeout=30)
        stop.set()
    assert len(answered) >= 20
    missing = set(answered) - _jtis(fresh_pg_database)
    assert not missing, f"{len(missing)} answered appraisals have no audit record"
