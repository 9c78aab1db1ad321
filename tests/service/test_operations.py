"""Operations through the real CLI and a real server process: API keys (hashed, revocable), the admin
API, key rotation in the JWKS, rate limits, metrics, JSON logs without secrets, the audit log."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ccai.service import ServiceSettings, create_app

from .conftest import nras_body, serve, serve_subprocess, subprocess_env, virtual_items

pytestmark = pytest.mark.extra("service")


def _ccai(home: Path, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "ccai.cli", *args], env=subprocess_env(home), capture_output=True, check=False
    )
    assert out.returncode == 0, out.stderr.decode()
    return json.loads(out.stdout)


def test_keys_admin_rotation_metrics_logs_and_audit(dev_server, ccai_home: Path, tmp_path: Path) -> None:
    backend, url = dev_server
    db = f"sqlite+aiosqlite:///{tmp_path / 'svc.db'}"
    user = _ccai(ccai_home, "attestation", "api-key", "create", "--name", "ci", "--database-url", db)
    admin = _ccai(ccai_home, "attestation", "api-key", "create", "--admin", "--database-url", db)
    policy = tmp_path / "p.json"
    policy.write_text(json.dumps({"format": "ccai-policy/1", "allow_simulated": True}))
    assert (
        _ccai(ccai_home, "attestation", "policy", "set", "dev", str(policy), "--database-url", db)["version"]
        == 1
    )
    assert _ccai(ccai_home, "attestation", "policy", "show", "dev", "--database-url", db)["policy"][
        "allow_simulated"
    ]
    log = tmp_path / "service.log"
    args = ["--database-url", db, "--rim-service-url", url, "--ocsp-url", f"{url}/ocsp", "--allow-simulated"]
    with serve_subprocess(args, ccai_home, log=log) as (base, _):
        nonce = secrets.token_bytes(32)
        body = nras_body(virtual_items(backend, nonce), nonce)
        r = httpx.post(base + "/v4/attest/gpu", json=body)
        assert (r.status_code, r.json()["description"]) == (401, "UNAUTHORIZED")
        assert r.headers["www-authenticate"] == "Bearer"
        bad = {"Authorization": "Bearer ccai_000000000000_nope"}
        assert (
            httpx.post(base + "/v4/attest/gpu", json=body, headers=bad).json()["description"]
            == "UNAUTHORIZED"
        )
        auth = {"Authorization": f"Bearer {user['key']}"}
        r = httpx.post(base + "/v4/attest/gpu", json={**body, "policy": "dev"}, headers=auth, timeout=30)
        assert r.status_code == 200, r.text
        jti = r.headers["x-ccai-jti"]

        # Admin API: a user key is refused, the admin key rotates the signing key.
        r = httpx.post(base + "/v1/admin/keys/rotate", headers=auth)
        assert (r.status_code, r.json()["description"]) == (403, "FORBIDDEN")
        before = {k["kid"] for k in httpx.get(base + "/.well-known/jwks.json").json()["keys"]}
        kid = httpx.post(
            base + "/v1/admin/keys/rotate", headers={"Authorization": f"Bearer {admin['key']}"}
        ).json()["kid"]
        after = {k["kid"] for k in httpx.get(base + "/.well-known/jwks.json").json()["keys"]}
        assert kid in after and before <= after  # current + previous published
        # Revocation through the CLI takes effect once the replica's key cache expires (10 s);
        # checked here through a fresh key that was never cached.
        revoked = _ccai(ccai_home, "attestation", "api-key", "create", "--database-url", db)
        _ccai(ccai_home, "attestation", "api-key", "revoke", revoked["id"], "--database-url", db)
        r = httpx.post(base + "/v1/nonce", headers={"Authorization": f"Bearer {revoked['key']}"})
        assert (r.status_code, r.json()["description"]) == (401, "UNAUTHORIZED")

        metrics = httpx.get(base + "/metrics").text
        assert 'ccai_requests_total{endpoint="/v4/attest/gpu",status="200"} 1.0' in metrics
        assert 'ccai_requests_total{endpoint="/v4/attest/gpu",status="401"} 2.0' in metrics
        assert 'ccai_verdicts_total{endpoint="/v4/attest/gpu",result="pass"} 1.0' in metrics
        assert "ccai_request_seconds_bucket" in metrics
        assert 'ccai_collateral_requests_total{kind="rim",outcome="fetched"}' in metrics

    audit = _ccai(ccai_home, "attestation", "audit", "--json", "--database-url", db)
    assert audit[0]["jti"] == jti and audit[0]["verdict"] is True
    assert (
        audit[0]["policy"] == "dev"
        and audit[0]["policy_version"] == 1
        and audit[0]["api_key_id"] == user["id"]
    )
    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert any(line.get("path") == "/v4/attest/gpu" and line.get("request_id") for line in lines)
    for secret in (user["key"], admin["key"], revoked["key"], "PRIVATE KEY"):
        assert secret not in text


def test_rate_limit_per_key(dev_server, tmp_path: Path) -> None:
    settings = ServiceSettings.build(
        environ={},
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'svc.db'}",
        allow_anonymous=True,
        offline=True,
        rate_limit=1.0,
        rate_burst=3,
    )
    with serve(create_app(settings)) as base:
        codes = [httpx.post(base + "/v1/nonce").status_code for _ in range(6)]
        assert codes[:3] == [200, 200, 200] and 429 in codes[3:]
        r = httpx.get(base + "/v1/admin/policies")  # anonymous never admin
        assert (r.status_code, r.json()["description"]) == (401, "UNAUTHORIZED")


def test_startup_fails_closed(tmp_path: Path, ccai_home: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ccai.cli",
            "serve",
            "attestation",
            "--database-url",
            "postgresql+psycopg://u@127.0.0.1:1/x",
        ],
        env=subprocess_env(ccai_home),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2 and b"cannot open or migrate the attestation database" in out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "ccai.cli", "serve", "attestation", "--database-url", "mysql://x"],
        env=subprocess_env(ccai_home),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2 and b"database URL must be" in out.stderr
