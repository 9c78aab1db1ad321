"""Attestation-service fixtures: real uvicorn servers on loopback, the dev collateral server, and a
real PostgreSQL started by the tests (``initdb``/``pg_ctl``, skipped with a reason when absent)."""

from __future__ import annotations

import base64
import glob
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="needs the [service] extra: pip install 'ccai[service]'")
pytest.importorskip("sqlalchemy", reason="needs the [service] extra: pip install 'ccai[service]'")

import httpx
import uvicorn

from ccai.evidence import GpuEvidence
from ccai.virtual import (
    VirtualGpuBackend,
    create_dev_collateral_app,
    run_in_background,
    settings_for_virtual_gpu,
)

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run an ASGI app (lifespan on) under uvicorn in a thread; yield its base URL once it is up."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the service did not start")
        if time.monotonic() > deadline:
            raise RuntimeError("the service did not start in 30 s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def nras_body(items: list[GpuEvidence], nonce: bytes, *, arch: str = "HOPPER") -> dict[str, Any]:
    """An NRAS request body for ``items``."""
    return {
        "nonce": nonce.hex(),
        "arch": arch,
        "claims_version": "3.0",
        "evidence_list": [
            {
                "evidence": base64.b64encode(i.report).decode(),
                "certificate": base64.b64encode(i.certificate_chain).decode(),
            }
            for i in items
        ],
    }


def virtual_items(backend: VirtualGpuBackend, nonce: bytes) -> list[GpuEvidence]:
    return [
        GpuEvidence(
            arch="HOPPER",
            nonce=nonce,
            report=backend.attestation_report(i, nonce),
            certificate_chain=backend.certificate_chain(i),
        )
        for i in range(backend.gpu_count)
    ]


@pytest.fixture
def dev_server(ccai_home: Path) -> Iterator[tuple[VirtualGpuBackend, str]]:
    """The virtual GPU under $CCAI_HOME and the dev collateral server for it."""
    backend = VirtualGpuBackend.create(home=ccai_home)
    with run_in_background(create_dev_collateral_app(settings_for_virtual_gpu(backend))) as url:
        yield backend, url


@pytest.fixture
def vm_server(ccai_home: Path) -> Iterator[tuple[Any, VirtualGpuBackend, str]]:
    """The virtual TDX VM (CPU TEE + 1 GPU) under $CCAI_HOME and the dev collateral server for its GPU."""
    from ccai.virtual import open_virtual_vm

    cpu, gpu = open_virtual_vm(tee="tdx", gpus=1, home=ccai_home)
    with run_in_background(create_dev_collateral_app(settings_for_virtual_gpu(gpu, tee=cpu))) as url:
        yield cpu, gpu, url


def subprocess_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["CCAI_HOME"] = str(home)
    return env


@contextmanager
def serve_subprocess(
    args: list[str], home: Path, *, log: Path | None = None, verify: ssl.SSLContext | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``ccai serve attestation ARGS`` in a subprocess on a free port; yields (url, process).

    With ``verify`` (trusting the service's certificate) it is reached over HTTPS (ARGS carry
    ``--tls-cert``/``--tls-key``).
    """
    port = free_port()
    out = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "ccai.cli", "serve", "attestation", "--port", str(port), *args],
        env=subprocess_env(home),
        stdout=out,
        stderr=subprocess.STDOUT if log is not None else subprocess.DEVNULL,
    )
    url = f"{'http' if verify is None else 'https'}://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"service exited with {proc.returncode}" + (f": {log.read_text()[-2000:]}" if log else "")
                )
            try:
                if httpx.get(url + "/health", timeout=1, verify=verify or True).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("service did not come up")
            time.sleep(0.1)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if log is not None:
            out.close()  # type: ignore[union-attr]


# -- PostgreSQL ------------------------------------------------------------------------------------


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL on a free loopback port in a temp dir (run as ``postgres`` when root)."""
    pytest.importorskip("psycopg", reason="needs the [postgres] extra: pip install 'ccai[postgres]'")
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin "
            "(apt-get install postgresql)"
        )
    root = os.geteuid() == 0
    prefix: list[str] = []
    if root:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot run initdb as another user")
        prefix = ["runuser", "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="ccai-pg-"))
    data = base / "data"
    if root:
        shutil.chown(base, "postgres", "postgres")
    base.chmod(0o700)
    port = free_port()
    user = "postgres" if root else os.environ.get("USER", "postgres")
    subprocess.run(
        [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *prefix,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(base / "log"),
            "-w",
            "-o",
            f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://{user}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def fresh_pg_database(postgres_url: str) -> str:
    """A new empty database in the session's PostgreSQL."""
    import psycopg

    name = f"ccai_{os.urandom(4).hex()}"
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_url.rsplit("/", 1)[0] + "/" + name
