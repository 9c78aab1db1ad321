"""The client side of the attestation service over a real socket: ``JwksClient`` (fetch, TTL cache,
one refetch on an unknown kid after a key rotation), ``verify_token(jwks=URL)``, and the CLI's
``--service`` paths (``ccai verify gpu``, ``ccai attest`` + ``ccai verify BUNDLE``) with their exit
codes: 0 pass, 1 failed appraisal or token, 2 refused request, 3 service unavailable."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ccai._time import utcnow
from ccai.cli.__main__ import main
from ccai.errors import CollateralUnavailable, SimulatedEvidenceRejected, TokenError
from ccai.evidence import dump_evidence_json
from ccai.service import ServiceSettings, create_app
from ccai.token import JWKS_PATH, AttestationServiceClient, JwksClient, unverified_header, verify_token
from ccai.virtual import VirtualGpuBackend, virtual_trust_anchors

from .conftest import serve, subprocess_env, virtual_items

pytestmark = pytest.mark.extra("service")


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _settings(tmp_path: Path, url: str | None, **kw: Any) -> ServiceSettings:
    online: dict[str, Any] = (
        {"rim_service_url": url, "ocsp_url": f"{url}/ocsp"} if url is not None else {"offline": True}
    )
    kw.setdefault("allow_anonymous", True)
    return ServiceSettings.build(
        environ={},
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'svc.db'}",
        key_refresh_seconds=0.05,
        **online,
        **kw,
    )


@pytest.fixture
def service(
    dev_server: tuple[VirtualGpuBackend, str], tmp_path: Path
) -> Iterator[tuple[VirtualGpuBackend, str]]:
    """A simulated-evidence service (online collateral from the dev server) on loopback."""
    backend, url = dev_server
    app = create_app(_settings(tmp_path, url, allow_simulated=True), anchors=virtual_trust_anchors(gpu=True))
    with serve(app) as base:
        yield backend, base


def _rotate_development_key(home: Path, tmp_path: Path) -> str:
    db = f"sqlite+aiosqlite:///{tmp_path / 'svc.db'}"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ccai.cli",
            "attestation",
            "rotate-key",
            "--development",
            "--database-url",
            db,
        ],
        env=subprocess_env(home),
        capture_output=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr.decode()
    return str(json.loads(out.stdout)["kid"])


def test_jwks_client_caches_and_picks_up_a_rotated_key(service, ccai_home: Path, tmp_path: Path) -> None:
    backend, base = service
    clock = _Clock()
    keys = JwksClient(
        base + JWKS_PATH, ttl=timedelta(minutes=5), min_refresh=timedelta(seconds=10), clock=clock
    )
    client = AttestationServiceClient(base)

    def attest() -> tuple[bytes, Any]:
        nonce = secrets.token_bytes(32)
        return nonce, client.attest_gpu(virtual_items(backend, nonce), nonce=nonce).eat

    nonce, eat = attest()
    first = verify_token(eat, jwks=keys, nonce=nonce, now=utcnow(), allow_simulated=True)
    assert first.overall["x-nvidia-overall-att-result"] is True and keys.fetches == 1
    nonce, eat = attest()
    verify_token(eat, jwks=keys, nonce=nonce, now=utcnow(), allow_simulated=True)
    assert keys.fetches == 1  # served from the cache within its TTL

    new_kid = _rotate_development_key(ccai_home, tmp_path)
    for _ in range(100):  # the replica re-reads its keys every 50 ms
        nonce, eat = attest()
        if unverified_header(eat.overall)["kid"] == new_kid:
            break
    assert unverified_header(eat.overall)["kid"] == new_kid
    # Within min_refresh of the last fetch an unknown kid does not trigger a fetch: refused.
    with pytest.raises(TokenError, match="unknown key"):
        verify_token(eat, jwks=keys, nonce=nonce, now=utcnow(), allow_simulated=True)
    assert keys.fetches == 1
    clock.now += 11  # past min_refresh, still inside the TTL: the unknown kid forces one refetch
    rotated = verify_token(eat, jwks=keys, nonce=nonce, now=utcnow(), allow_simulated=True)
    assert rotated.simulated and keys.fetches == 2
    clock.now += 301  # past the TTL: fetched again
    keys.keys()
    assert keys.fetches == 3

    # A URL is fetched once per call; the development key still needs allow_simulated.
    with pytest.raises(SimulatedEvidenceRejected):
        verify_token(eat, jwks=base + JWKS_PATH, nonce=nonce, now=utcnow())
    client.close()


def test_jwks_fetch_failures_are_collateral_unavailable(service) -> None:
    _, base = service
    with pytest.raises(CollateralUnavailable):
        JwksClient(base + "/no-such-jwks").keys()  # 404
    with pytest.raises(CollateralUnavailable):
        JwksClient(base + "/health").keys()  # JSON, not a JWKS


def _main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    monkeypatch.setattr(sys, "argv", ["ccai", *args])
    with pytest.raises(SystemExit) as info:
        main()
    out = capsys.readouterr().out
    return int(info.value.code or 0), json.loads(out) if "--json" in args else out


def test_verify_gpu_with_service(service, tmp_path: Path, monkeypatch, capsys) -> None:
    backend, base = service
    nonce = secrets.token_bytes(32)
    evidence = tmp_path / "evidence.json"
    evidence.write_bytes(dump_evidence_json(virtual_items(backend, nonce)))
    args = ["verify", "gpu", str(evidence), "--nonce", nonce.hex(), "--service", base]

    code, doc = _main(monkeypatch, capsys, *args, "--allow-simulated", "--json")
    assert code == 0, doc
    assert doc["result"] == "pass" and doc["simulated"] is True and doc["service"] == base
    steps = [s["step"] for s in doc["steps"]]
    assert steps[0] == "service token" and "measurements" in " ".join(steps)
    assert all(s["status"] in ("ok", "skipped") for s in doc["steps"])
    assert doc["claims"]["GPU-0"]["x-nvidia-gpu-attestation-report-signature-verified"] is True

    code, text = _main(monkeypatch, capsys, *args, "--allow-simulated")
    assert code == 0 and "PASS" in text and "SIMULATED" in text

    # Claims 2.0 goes to /v3.
    code, doc = _main(monkeypatch, capsys, *args, "--allow-simulated", "--claims-version", "2.0", "--json")
    assert code == 0 and doc["claims"]["overall"]["x-nvidia-ver"] == "2.0"

    # A development-key token without --allow-simulated: the token check fails here (exit 1).
    code, doc = _main(monkeypatch, capsys, *args, "--json")
    assert code == 1 and doc["error"]["class"] == "SimulatedEvidenceRejected"
    assert doc["steps"][0] == {
        "step": "service token",
        "status": "failed",
        "detail": doc["steps"][0]["detail"],
    }

    # Evidence for another nonce: the service's failed token names the reason and the step.
    other = secrets.token_bytes(32)
    evidence.write_bytes(dump_evidence_json(virtual_items(backend, other)))
    code, doc = _main(monkeypatch, capsys, *args, "--allow-simulated", "--json")
    assert code == 1 and doc["error"]["class"] == "NonceMismatch"
    failed = [s for s in doc["steps"] if s["status"] == "failed"]
    assert [s["step"] for s in failed] == [doc["claims"]["overall"]["x-ccai-failed-step"]]

    # A policy applied here to the token's claims.
    evidence.write_bytes(dump_evidence_json(virtual_items(backend, nonce)))
    policy = tmp_path / "p.json"
    policy.write_text(
        json.dumps(
            {"format": "ccai-policy/1", "allow_simulated": True, "gpu": {"min_driver_version": "999.0"}}
        )
    )
    code, doc = _main(monkeypatch, capsys, *args, "--allow-simulated", "--policy", str(policy), "--json")
    assert code == 1 and doc["error"]["class"] == "PolicyViolation", doc["error"]
    assert doc["steps"][-1]["step"] == "policy (here)" and doc["steps"][-1]["status"] == "failed"

    # Options that choose local collateral are refused with --service.
    code, _ = _main(monkeypatch, capsys, *args, "--offline")
    assert code == 2


def test_verify_gpu_service_errors_map_to_exit_codes(dev_server, tmp_path: Path, monkeypatch, capsys) -> None:
    backend, url = dev_server
    nonce = secrets.token_bytes(32)
    evidence = tmp_path / "evidence.json"
    evidence.write_bytes(dump_evidence_json(virtual_items(backend, nonce)))
    args = ["verify", "gpu", str(evidence), "--nonce", nonce.hex(), "--allow-simulated", "--json"]
    anchors = virtual_trust_anchors(gpu=True)
    # Offline without collateral: the service answers 503 → exit 3.
    app = create_app(_settings(tmp_path / "a", None, allow_simulated=True), anchors=anchors)
    with serve(app) as base:
        code, doc = _main(monkeypatch, capsys, *args, "--service", base)
        assert (
            code == 3
            and doc["error"]["class"] == "CollateralUnavailable"
            and "503" in doc["error"]["message"]
        )
    # A service that wants an API key: 401 → exit 2.
    (tmp_path / "b").mkdir()
    app = create_app(
        _settings(tmp_path / "b", url, allow_simulated=True, allow_anonymous=False), anchors=anchors
    )
    with serve(app) as base:
        code, doc = _main(
            monkeypatch, capsys, *args, "--service", base, "--api-key", "ccai_000000000000_nope"
        )
        assert code == 2 and "401" in doc["error"]["message"]
    # Nothing listening: exit 3.
    with serve(create_app(_settings(tmp_path / "a", None))) as base:
        pass
    code, doc = _main(monkeypatch, capsys, *args, "--service", base)
    assert code == 3 and doc["error"]["class"] == "CollateralUnavailable"


def test_attest_and_verify_bundle_with_service(vm_server, tmp_path: Path, monkeypatch, capsys) -> None:
    _, _, url = vm_server
    anchors = virtual_trust_anchors(gpu=True, tdx=True)
    app = create_app(_settings(tmp_path, url, allow_simulated=True), anchors=anchors)
    bundle = tmp_path / "b.json"
    with serve(app) as base:
        code, summary = _main(
            monkeypatch, capsys, "attest", "--simulate", "tdx", "--service", base, "-o", str(bundle),
            "--with-collateral", "--json",
        )  # fmt: skip
        assert code == 0, summary
        code, doc = _main(
            monkeypatch, capsys, "verify", str(bundle), "--service", base, "--allow-simulated", "--json"
        )
        assert code == 0, doc
        assert doc["result"] == "pass" and set(doc["claims"]) == {"overall", "GPU-0", "CPU-0"}
        assert doc["claims"]["overall"]["eat_nonce"] == summary["nonce"]
        # The service consumed the nonce: the same bundle again is a replay (exit 1, the reason named).
        code, doc = _main(
            monkeypatch, capsys, "verify", str(bundle), "--service", base, "--allow-simulated", "--json"
        )
        assert code == 1 and doc["error"]["class"] == "NonceMismatch"
        assert "already used" in doc["error"]["message"]
        # A nonce the service never issued.
        code, _ = _main(
            monkeypatch,
            capsys,
            "attest",
            "--simulate",
            "tdx",
            "--nonce",
            "ab" * 32,
            "-o",
            str(bundle),
            "--json",
        )
        assert code == 0
        code, doc = _main(
            monkeypatch, capsys, "verify", str(bundle), "--service", base, "--allow-simulated", "--json"
        )
        assert code == 1 and doc["error"]["class"] == "NonceMismatch"
        # --nonce and --service together are refused.
        code, _ = _main(
            monkeypatch,
            capsys,
            "attest",
            "--simulate",
            "tdx",
            "--nonce",
            "ab" * 32,
            "--service",
            base,
            "-o",
            str(bundle),
        )
        assert code == 2
