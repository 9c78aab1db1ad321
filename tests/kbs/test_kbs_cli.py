"""The key broker as deployed: ``ccai serve kbs`` in a subprocess, administered with ``ccai kbs``,
a guest fetching with ``ccai kbs fetch --simulate tdx --gpus 2``; master-key rotation and a SIGKILL
in the middle of writes leave every resource readable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from ccai.virtual import open_virtual_vm

from .conftest import POLICY

pytestmark = pytest.mark.extra("service")
SRC = Path(__file__).resolve().parents[2] / "src"


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env["CCAI_HOME"] = str(home)
    env.pop("CCAI_KBS_MASTER_KEY", None)
    return env


def _ccai(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ccai.cli", *args],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@contextmanager
def _broker(home: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
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
        env=_env(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            assert proc.poll() is None, "the broker exited"
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the broker did not come up"
            time.sleep(0.1)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=15)


def test_deploy_put_policy_fetch_audit_rotate(ccai_home: Path, tmp_path: Path) -> None:
    open_virtual_vm(tee="tdx", gpus=2, home=ccai_home)
    value = tmp_path / "kek.bin"
    value.write_bytes(os.urandom(32))
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY))
    with _broker(ccai_home) as (url, _proc):
        assert (ccai_home / "kbs-admin.token").stat().st_mode & 0o777 == 0o600
        put = _ccai(ccai_home, "kbs", "put", "models/kek/m", "--from", str(value), "--url", url, "--json")
        assert put.returncode == 0, put.stderr
        assert json.loads(put.stdout)["version"] == 1
        # Default deny: no policy yet → exit 1 and no file.
        out = tmp_path / "got.bin"
        refused = _ccai(
            ccai_home, "kbs", "fetch", url, "models/kek/m", "--simulate", "tdx", "-o", str(out), "--json"
        )
        assert refused.returncode == 1 and not out.exists(), refused.stderr
        assert json.loads(refused.stdout)["result"] == "error"
        pset = _ccai(
            ccai_home,
            "kbs",
            "policy",
            "set",
            "p1",
            str(policy),
            "--resource",
            "models/kek/m",
            "--url",
            url,
            "--json",
        )
        assert pset.returncode == 0, pset.stderr
        shown = json.loads(_ccai(ccai_home, "kbs", "policy", "show", "p1", "--url", url, "--json").stdout)
        assert shown["guards"] == ["resource:models/kek/m"]
        got = _ccai(
            ccai_home, "kbs", "fetch", url, "models/kek/m", "--simulate", "tdx", "-o", str(out), "--json"
        )
        assert got.returncode == 0, got.stderr
        assert out.read_bytes() == value.read_bytes()
        assert value.read_bytes().hex() not in got.stdout + got.stderr
        rot = _ccai(ccai_home, "kbs", "rotate", "--url", url, "--json")
        assert rot.returncode == 0, rot.stderr
        assert json.loads(rot.stdout)["rewrapped"] == 1
        out.unlink()
        assert (
            _ccai(
                ccai_home, "kbs", "fetch", url, "models/kek/m", "--simulate", "tdx", "-o", str(out)
            ).returncode
            == 0
        )
        assert out.read_bytes() == value.read_bytes()
        audit = _ccai(ccai_home, "kbs", "audit", "--url", url, "--verify", "--json")
        assert audit.returncode == 0, audit.stderr
        doc = json.loads(audit.stdout)
        assert doc["verified"] is True
        assert [r["reason"].split(":")[0] for r in doc["records"] if r["verdict"] == "refused"] == [
            "no_policy"
        ]
    # Tamper with one row: --verify exits 1.
    import sqlite3

    db = sqlite3.connect(ccai_home / "kbs.db")
    db.execute("UPDATE kbs_audit SET reason='nothing to see' WHERE seq=3")
    db.commit()
    db.close()
    with _broker(ccai_home) as (url, _proc):
        bad = _ccai(ccai_home, "kbs", "audit", "--url", url, "--verify", "--json")
        assert bad.returncode == 1 and "record 3" in bad.stderr


def test_sigkill_during_put_and_rotate_leaves_a_readable_version(ccai_home: Path, tmp_path: Path) -> None:
    open_virtual_vm(tee="tdx", gpus=2, home=ccai_home)
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY))
    values = [os.urandom(32) for _ in range(200)]
    with _broker(ccai_home) as (url, proc):
        token = (ccai_home / "kbs-admin.token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        assert (
            httpx.post(f"{url}/kbs/v0/resource/models/kek/m", content=values[0], headers=headers).status_code
            == 200
        )
        assert (
            _ccai(
                ccai_home, "kbs", "policy", "set", "p", str(policy), "--repo", "models", "--url", url
            ).returncode
            == 0
        )
        import threading

        def writer() -> None:
            with httpx.Client(timeout=5) as http:
                for i, v in enumerate(values[1:], 1):
                    try:
                        http.post(f"{url}/kbs/v0/resource/models/kek/m", content=v, headers=headers)
                        if i % 20 == 0:
                            http.post(f"{url}/kbs/v0/admin/rotate", headers=headers)
                    except httpx.HTTPError:
                        return

        thread = threading.Thread(target=writer)
        thread.start()
        time.sleep(1.0)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        thread.join()
    with _broker(ccai_home) as (url, _proc):
        out = tmp_path / "got.bin"
        got = _ccai(ccai_home, "kbs", "fetch", url, "models/kek/m", "--simulate", "tdx", "-o", str(out))
        assert got.returncode == 0, got.stderr
        assert out.read_bytes() in values
