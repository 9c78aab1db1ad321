"""Gateway fixtures: ``ccai serve gateway`` as a real process on a loopback port, a tiny sealed model,
and the key broker of tests/kbs (real uvicorn, SQLite) with the virtual TDX guest and two virtual H100s."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="needs the [service] extra")

import httpx
from tests.kbs.conftest import POLICY, Admin, broker, vm  # noqa: F401  (fixture re-export)
from tests.service.conftest import free_port, subprocess_env

from ccai.sealed import Kek, new_kek, seal, write_kek

HERE = Path(__file__).resolve().parent
UPSTREAM = HERE / "upstream_sse.py"
#: The upstream command of most tests: the streaming test engine of upstream_sse.py.
UPSTREAM_CMD = f"{sys.executable} {UPSTREAM} {{model_dir}} {{port}}"


@dataclasses.dataclass
class GatewayRun:
    """A finished gateway process: its exit code, stdout and stderr, and what inference answered."""

    returncode: int
    stdout: str
    stderr: str
    inference_statuses: list[int]

    @property
    def document(self) -> dict[str, Any]:
        return dict(json.loads(self.stdout))


@dataclasses.dataclass
class Gateway:
    """A running gateway."""

    url: str
    process: subprocess.Popen[str]
    home: Path

    def stop(self) -> tuple[int, str, str]:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            out, err = self.process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, err = self.process.communicate()
        return self.process.returncode, out, err


def start_gateway(home: Path, *args: str) -> tuple[int, subprocess.Popen[str]]:
    """``ccai serve gateway --port P --json ARGS`` on a free port P, through the real entry point."""
    port = free_port()
    argv = [sys.executable, "-m", "ccai.cli", "serve", "gateway", "--port", str(port), "--json", *args]
    process = subprocess.Popen(
        argv, env=subprocess_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return port, process


@contextmanager
def running_gateway(home: Path, *args: str, timeout: float = 240.0, verify: Any = True) -> Iterator[Gateway]:
    """``ccai serve gateway ARGS`` until ``/health`` says ready; stopped (SIGTERM) on exit.

    With ``verify`` an ``ssl.SSLContext`` trusting the gateway's certificate, it is reached over HTTPS.
    """
    port, process = start_gateway(home, *args)
    scheme = "http" if verify is True else "https"
    gateway = Gateway(f"{scheme}://127.0.0.1:{port}", process, home)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if process.poll() is not None:
                code, _, err = gateway.stop()
                raise AssertionError(f"the gateway exited with {code}: {err[-3000:]}")
            try:
                if httpx.get(gateway.url + "/health", timeout=2, verify=verify).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the gateway did not become ready")
            time.sleep(0.1)
        yield gateway
    finally:
        gateway.stop()


def failing_gateway(home: Path, *args: str, timeout: float = 240.0) -> GatewayRun:
    """Run a gateway that must not boot: poll its inference route until it exits, and record every status."""
    port, process = start_gateway(home, *args)
    statuses: list[int] = []
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2) as http:
        while process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                statuses.append(http.get(f"http://127.0.0.1:{port}/v1/models").status_code)
            time.sleep(0.05)
    if process.poll() is None:
        process.kill()
    out, err = process.communicate(timeout=30)
    return GatewayRun(process.returncode, out, err, statuses)


@pytest.fixture
def tiny_sealed(tmp_path: Path) -> tuple[Path, Path, Kek]:
    """A small sealed model (config, tokenizer file, a weights-like blob), its KEK file and KEK."""
    plain = tmp_path / "tiny"
    plain.mkdir()
    (plain / "config.json").write_text('{"model_type": "llama"}')
    (plain / "tokenizer.json").write_text('{"version": "1.0"}')
    (plain / "weights.bin").write_bytes(os.urandom(300_000))
    kek = new_kek()
    kek_file = tmp_path / "kek.json"
    write_kek(kek, kek_file)
    sealed = tmp_path / "tiny.sealed"
    seal(plain, sealed, kek)
    return sealed, kek_file, kek
