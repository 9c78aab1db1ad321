"""CLI round trip: ccai attest --simulate … -o b.json, then ccai verify b.json (exit codes 0/1/2/3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from typer.testing import CliRunner

from ccai.cli.app import app

NONCE = "5a" * 32
runner = CliRunner()


def _run(*args: str) -> tuple[int, str]:
    from ccai.cli._errors import exit_code_for
    from ccai.errors import Error

    result = runner.invoke(app, list(args))
    if isinstance(result.exception, Error):
        return int(exit_code_for(result.exception)), result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def attested(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("attest")


def _keys(folder: Path) -> list[str]:
    tls = ec.generate_private_key(ec.SECP256R1()).public_key()
    hpke = x25519.X25519PrivateKey.generate().public_key()
    pem = serialization.Encoding.PEM
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    (folder / "tls.pem").write_bytes(tls.public_bytes(pem, spki))
    (folder / "hpke.pem").write_bytes(hpke.public_bytes(pem, spki))
    return ["--bind-key", str(folder / "tls.pem"), "--bind-key", str(folder / "hpke.pem")]


@pytest.mark.extra("service")  # --with-collateral runs the dev collateral server
def test_attest_then_verify_round_trip(tmp_path: Path) -> None:
    bundle = tmp_path / "b.json"
    code, out = _run(
        "attest",
        "--simulate",
        "tdx",
        "--gpus",
        "2",
        "--nonce",
        NONCE,
        "-o",
        str(bundle),
        "--with-collateral",
        *_keys(tmp_path),
        "--json",
    )
    assert code == 0, out
    summary = json.loads(out)
    assert summary["gpus"] == 2 and summary["cpu"] == "tdx" and summary["collateral"]
    assert summary["tls_spki_sha256"] and summary["hpke_public_key"]

    code, out = _run("verify", str(bundle), "--offline", "--allow-simulated", "--nonce", NONCE, "--json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["result"] == "pass" and doc["simulated"] is True
    assert set(doc["claims"]) == {"overall", "cpu", "GPU-0", "GPU-1"}
    code, out = _run("verify", "bundle", str(bundle), "--nonce", NONCE, "--offline", "--allow-simulated")
    assert code == 0 and "PASS" in out

    # Without --allow-simulated the test PKI is not trusted.
    code, _ = _run("verify", str(bundle), "--nonce", NONCE, "--offline")
    assert code == 1

    # Tampered: another TLS key claimed in the bundle → binding error, exit 1.
    raw = json.loads(bundle.read_text())
    raw["keys"]["tls_spki_sha256"] = "00" * 32
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(raw))
    code, out = _run("verify", str(tampered), "--nonce", NONCE, "--offline", "--allow-simulated", "--json")
    assert code == 1 and json.loads(out)["error"]["class"] == "BindingError"

    # Offline with no collateral anywhere → collateral unavailable, exit 3.
    del raw["collateral"]
    raw["keys"]["tls_spki_sha256"] = json.loads(bundle.read_text())["keys"]["tls_spki_sha256"]
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(raw))
    code, _ = _run("verify", str(bare), "--nonce", NONCE, "--offline", "--allow-simulated")
    assert code == 3
    # … and the collateral can come from a separate file instead.
    code, out = _run(
        "verify", str(bare), "--nonce", NONCE, "--offline", "--allow-simulated", "--collateral", str(bundle)
    )
    assert code == 0, out


@pytest.mark.extra("service")
def test_attest_snp_single_gpu(tmp_path: Path) -> None:
    bundle = tmp_path / "s.json"
    code, out = _run(
        "attest", "--simulate", "snp", "--gpus", "1", "--nonce", NONCE, "-o", str(bundle), "--with-collateral"
    )
    assert code == 0, out
    code, out = _run("verify", str(bundle), "--nonce", NONCE, "--offline", "--allow-simulated")
    assert code == 0, out


def test_collateral_fetch_failure_is_exit_3_and_marks_no_step_failed(tmp_path: Path) -> None:
    # Fetching collateral happens before step (1); its failure must not show as "(1) bundle and nonce ✗".
    bundle = tmp_path / "bare.json"
    code, out = _run("attest", "--simulate", "snp", "--gpus", "1", "--nonce", NONCE, "-o", str(bundle))
    assert code == 0, out
    dead = ["--rim-service-url", "http://127.0.0.1:1", "--ocsp-url", "http://127.0.0.1:1/ocsp"]
    code, out = _run("verify", str(bundle), "--nonce", NONCE, "--allow-simulated", *dead)
    assert code == 3, out
    assert "✗" not in out and "(1) bundle and nonce" not in out
    code, out = _run("verify", str(bundle), "--nonce", NONCE, "--allow-simulated", *dead, "--json")
    assert code == 3, out
    doc, _ = json.JSONDecoder().raw_decode(out[out.index("{") :])  # the error message follows on stderr
    assert {row["status"] for row in doc["steps"]} == {"not run"}
    assert doc["result"] == "error"


@pytest.mark.extra("service")
def test_cpu_only_bundle_with_collateral_marks_gpu_step_skipped(tmp_path: Path) -> None:
    # Regression: --gpus 0 --with-collateral crashed (the dev collateral server was given no GPU).
    bundle = tmp_path / "cpu.json"
    code, out = _run(
        "attest", "--simulate", "tdx", "--gpus", "0", "--nonce", NONCE, "-o", str(bundle), "--with-collateral"
    )
    assert code == 0, out
    # Zero GPUs fail the default policy: a CPU-only deployment must say so in its policy.
    code, out = _run("verify", str(bundle), "--offline", "--allow-simulated", "--nonce", NONCE, "--json")
    assert code == 1, out
    assert "CPU-only deployment must say so" in out
    cpu_only = tmp_path / "cpu-only.json"
    cpu_only.write_text(json.dumps({"format": "ccai-policy/1", "gpus": {"count": 0}, "gpu": None}))
    code, out = _run(
        "verify",
        str(bundle),
        "--offline",
        "--allow-simulated",
        "--nonce",
        NONCE,
        "--policy",
        str(cpu_only),
        "--json",
    )
    assert code == 0, out
    statuses = {row["step"]: row["status"] for row in json.loads(out)["steps"]}
    assert statuses["(4) GPU evidence"] == "skipped"
    assert [s for s in statuses.values() if s != "skipped"] == ["ok"] * 5


def test_verify_rejects_a_nonce_that_is_not_32_bytes(tmp_path: Path) -> None:
    bundle = tmp_path / "b.json"
    code, out = _run("attest", "--simulate", "tdx", "--gpus", "0", "--nonce", NONCE, "-o", str(bundle))
    assert code == 0, out
    code, _ = _run("verify", str(bundle), "--offline", "--allow-simulated", "--nonce", NONCE[:-2])
    assert code == 2


@pytest.mark.parametrize(
    "args",
    [
        ["attest", "--simulate", "tdx", "-o", "x.json"],
        ["attest", "--simulate", "tdx", "--nonce", "abcd", "-o", "x.json"],
        ["attest", "--simulate", "sgx", "--nonce", NONCE, "-o", "x.json"],
    ],
)
def test_attest_usage_errors(args: list[str]) -> None:
    code, _ = _run(*args)
    assert code == 2
