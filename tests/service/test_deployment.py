"""Deployment options through the real CLI and a real server process: HTTPS (``--tls-cert``/``--tls-key``),
several uvicorn workers on one database (``--workers``), and CPU collateral fetched for bundles that
embed none (``--pcs-url``, here from the dev collateral server)."""

from __future__ import annotations

import ipaddress
import ssl
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ccai._time import utcnow
from ccai.attest import collect_composite
from ccai.evidence import dump_evidence_bundle
from ccai.service import ServiceSettings, create_app
from ccai.virtual import virtual_trust_anchors

from .conftest import serve, serve_subprocess, subprocess_env
from .test_composite_api import make_bundle

pytestmark = pytest.mark.extra("service")


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A self-signed server certificate for 127.0.0.1 (SAN IP) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = utcnow()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "tls.crt", folder / "tls.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


def _serve_fails(home: Path, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "ccai.cli", "serve", "attestation", "--port", "0", *args],
        env=subprocess_env(home),
        capture_output=True,
        timeout=60,
        check=False,
    )
    stderr = out.stderr.decode()
    assert out.returncode == 2, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    return stderr


def test_tls_serves_https_only(ccai_home: Path, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    db = f"sqlite+aiosqlite:///{tmp_path / 'svc.db'}"
    args = [
        "--database-url",
        db,
        "--allow-anonymous",
        "--offline",
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
    ]
    trust = ssl.create_default_context(cafile=str(cert))
    with serve_subprocess(args, ccai_home, verify=trust) as (base, _):
        assert base.startswith("https://")
        r = httpx.get(base + "/health", verify=trust, timeout=5)
        assert r.status_code == 200, r.text
        # Plain HTTP to the TLS port gets no answer.
        with pytest.raises(httpx.TransportError):
            httpx.get(base.replace("https://", "http://") + "/health", timeout=5)
        # The certificate is not trusted without being pinned.
        with pytest.raises(httpx.ConnectError):
            httpx.get(base + "/health", timeout=5)

    # Unusable TLS files stop the start with one line and exit 2, before anything is served.
    assert "cannot load the TLS certificate" in _serve_fails(
        ccai_home, "--database-url", db, "--tls-cert", str(tmp_path / "missing.crt"), "--tls-key", str(key)
    )
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    assert "cannot load the TLS certificate" in _serve_fails(
        ccai_home, "--database-url", db, "--tls-cert", str(garbage), "--tls-key", str(key)
    )
    (tmp_path / "other").mkdir()
    _, other_key = _self_signed(tmp_path / "other")  # a key that is not the certificate's
    assert "cannot load the TLS certificate" in _serve_fails(
        ccai_home, "--database-url", db, "--tls-cert", str(cert), "--tls-key", str(other_key)
    )
    assert "both --tls-cert and --tls-key" in _serve_fails(
        ccai_home, "--database-url", db, "--tls-cert", str(cert)
    )


def _worker_pids(parent: int) -> set[int]:
    """The live child processes of ``parent`` (uvicorn's workers), from /proc."""
    children = Path(f"/proc/{parent}/task/{parent}/children")
    return {int(pid) for pid in children.read_text().split()} if children.exists() else set()


def test_workers_share_nonces_and_keys(ccai_home: Path, tmp_path: Path) -> None:
    from ccai.virtual import open_virtual_vm

    cpu, gpu = open_virtual_vm(tee="tdx", gpus=1, home=ccai_home)
    db = f"sqlite+aiosqlite:///{tmp_path / 'svc.db'}"
    args = ["--database-url", db, "--allow-anonymous", "--allow-simulated", "--offline", "--workers", "2"]
    with serve_subprocess(args, ccai_home) as (base, proc):
        if Path("/proc").is_dir():
            assert len(_worker_pids(proc.pid)) >= 2

        # Every answer, on fresh connections spread over the workers, publishes the same keys.
        jwks = {
            tuple(k["kid"] for k in httpx.get(base + "/.well-known/jwks.json", timeout=10).json()["keys"])
            for _ in range(12)
        }
        assert len(jwks) == 1 and len(next(iter(jwks))) == 2  # one production + one development key

        # One nonce, the same bundle posted twice at once: exactly one pass, one replay refusal.
        nonce = bytes.fromhex(httpx.post(base + "/v1/nonce", timeout=10).json()["nonce"])
        bundle = make_bundle(cpu, gpu, nonce)
        answers: list[dict] = []
        start = threading.Barrier(2)

        def post() -> None:
            with httpx.Client(timeout=30) as client:  # a connection of its own
                start.wait()
                r = client.post(
                    base + "/v1/attest", content=bundle, headers={"content-type": "application/json"}
                )
                assert r.status_code == 200, r.text
                answers.append(r.json())

        threads = [threading.Thread(target=post) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sorted(a["result"] for a in answers) == [False, True], answers
        refused = next(a for a in answers if not a["result"])
        assert refused["error"]["error"] == "NonceMismatch", refused["error"]


def test_simulated_bundle_without_collateral_fetches_cpu_collateral(
    vm_server, ccai_home: Path, tmp_path: Path
) -> None:
    cpu, gpu, url = vm_server
    db = f"sqlite+aiosqlite:///{tmp_path / 'svc.db'}"
    args = [
        "--database-url", db, "--allow-anonymous", "--allow-simulated",
        "--pcs-url", url, "--rim-service-url", url, "--ocsp-url", f"{url}/ocsp",
    ]  # fmt: skip
    with serve_subprocess(args, ccai_home) as (base, _):
        nonce = bytes.fromhex(httpx.post(base + "/v1/nonce", timeout=10).json()["nonce"])
        bundle = collect_composite(nonce=nonce, cpu=cpu, gpu=gpu)
        assert bundle.collateral_json is None  # nothing embedded
        r = httpx.post(
            base + "/v1/attest",
            content=dump_evidence_bundle(bundle),
            headers={"content-type": "application/json"},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["result"] is True and answer["error"] is None, answer["error"]

    # Without --pcs-url a simulated service has nowhere to fetch CPU collateral from: the answer
    # says so (503), never "invalid evidence".
    settings = ServiceSettings.build(
        environ={},
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'other.db'}",
        allow_anonymous=True,
        allow_simulated=True,
        rim_service_url=url,
        ocsp_url=f"{url}/ocsp",
    )
    with serve(create_app(settings, anchors=virtual_trust_anchors(gpu=True, tdx=True))) as base:
        nonce = bytes.fromhex(httpx.post(base + "/v1/nonce", timeout=10).json()["nonce"])
        body = dump_evidence_bundle(collect_composite(nonce=nonce, cpu=cpu, gpu=gpu))
        r = httpx.post(
            base + "/v1/attest", content=body, headers={"content-type": "application/json"}, timeout=30
        )
        assert r.status_code == 503 and r.json()["description"] == "COLLATERAL_UNAVAILABLE", r.text
