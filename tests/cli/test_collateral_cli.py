"""``ccai collateral fetch/inspect`` and ``ccai dev collateral-server``, run as the real command."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ccai.evidence import GpuEvidence, dump_evidence_json
from ccai.virtual import VirtualGpuBackend


def _ccai(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ccai.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def evidence_file(tmp_path: Path) -> Path:
    backend = VirtualGpuBackend.create()
    nonce = secrets.token_bytes(32)
    item = GpuEvidence(
        arch="HOPPER",
        nonce=nonce,
        report=backend.attestation_report(0, nonce),
        certificate_chain=backend.certificate_chain(0),
    )
    path = tmp_path / "evidence.json"
    path.write_bytes(dump_evidence_json([item]))
    return path


@pytest.fixture
def dev_server(evidence_file: Path) -> Iterator[str]:
    """``ccai dev collateral-server`` as a real process on a free loopback port."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ccai.cli", "dev", "collateral-server", "--port", str(port), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(os.environ),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            pytest.fail("dev collateral server did not start")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.extra("service")
def test_fetch_then_inspect(dev_server: str, evidence_file: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.json"
    done = _ccai(
        "collateral",
        "fetch",
        str(evidence_file),
        "-o",
        str(bundle),
        "--rim-service-url",
        dev_server,
        "--ocsp-url",
        f"{dev_server}/ocsp",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert len(summary["gpu"]["rims"]) == 2
    assert len(summary["gpu"]["ocsp"]) == 6  # BROM, Provisioner, Identity + L4, L3, CA
    assert all(entry["status"] == "good" for entry in summary["gpu"]["ocsp"])
    assert {rim["version"] for rim in summary["gpu"]["rims"]} >= {"570.124.06"}
    shown = _ccai("collateral", "inspect", str(bundle), "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["gpu"]["usable_until"] == summary["gpu"]["usable_until"]
    human = _ccai("collateral", "inspect", str(bundle))
    assert human.returncode == 0 and "OCSP responses" in human.stdout


def test_fetch_with_nothing_reachable_exits_3(evidence_file: Path, tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{_free_port()}"
    done = _ccai(
        "collateral",
        "fetch",
        str(evidence_file),
        "-o",
        str(tmp_path / "b.json"),
        "--rim-service",  # the deprecated spelling of --rim-service-url still works, with a warning
        closed,
        "--ocsp-url",
        closed,
    )
    assert done.returncode == 3, done.stderr
    assert "--rim-service is deprecated" in done.stderr
    assert "CollateralUnavailable" in done.stderr
    assert not (tmp_path / "b.json").exists()


def test_inspect_bad_bundles(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{nope")
    done = _ccai("collateral", "inspect", str(corrupt))
    assert done.returncode == 1 and "not JSON" in done.stderr
    future = tmp_path / "v9.json"
    future.write_text('{"version": 9}')
    done = _ccai("collateral", "inspect", str(future))
    assert done.returncode == 1 and "version not supported" in done.stderr
    done = _ccai("collateral", "inspect", str(tmp_path / "missing.json"))
    assert done.returncode == 2
