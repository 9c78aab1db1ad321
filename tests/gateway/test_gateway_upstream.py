"""The gateway in front of an external engine (``--upstream-cmd``), on the virtual TDX VM with two
virtual H100s: boot to ready, the attestation document, forwarding without buffering, hop-by-hop
headers, 502 when the engine is gone, and the engine and its RAM-backed plaintext removed on exit."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ccai.evidence import load_evidence_bundle
from ccai.kbs import public_jwk  # noqa: F401  (the kbs stage is importable next to the gateway)
from ccai.sealed import Kek
from ccai.verify import Verifier
from ccai.virtual import virtual_trust_anchors

from .conftest import UPSTREAM_CMD, running_gateway

pytestmark = [pytest.mark.extra("service")]
LOOPBACK = "127.0.0.1"
ATTESTATION = "/.well-known/ccai/attestation"
SRC = Path(__file__).resolve().parents[2] / "src"


def _args(sealed: Path, kek_file: Path, *extra: str) -> list[str]:
    return [
        "--model", str(sealed), "--kek", str(kek_file), "--simulate", "tdx", "--gpus", "2",
        "--upstream-cmd", UPSTREAM_CMD, *extra,
    ]  # fmt: skip


def test_boot_document_and_forwarding(
    ccai_home: Path, tiny_sealed: tuple[Path, Path, Kek], tmp_path: Path
) -> None:
    sealed, kek_file, kek = tiny_sealed
    with running_gateway(ccai_home, *_args(sealed, kek_file, "--allow-plaintext")) as gw:
        health = httpx.get(gw.url + "/health").json()
        assert health["state"] == "ready" and health["simulated"] is True
        assert set(health["states_seconds"]) == {
            "collecting-evidence", "fetching-key", "loading-model", "starting-engine", "setting-ready",
        }  # fmt: skip

        # The engine sees the unsealed model (in RAM), and only through the gateway.
        models = httpx.get(gw.url + "/v1/models").json()["data"][0]
        assert models["files"] == ["config.json", "tokenizer.json", "weights.bin"]
        upstream_pid = models["pid"]
        # This gateway's RAM-backed directory (other gateways may run on the machine at the same time).
        shm = [Path(models["dir"]).parent]
        assert shm[0].name.startswith("ccai-gateway-") and shm[0].parent == Path("/dev/shm")

        # The attestation document verifies with the library and with `ccai verify`, bound to the nonce.
        nonce = os.urandom(32)
        r = httpx.get(gw.url + "/.well-known/ccai/attestation", params={"nonce": nonce.hex()}, timeout=30)
        assert r.status_code == 200, r.text
        bundle = load_evidence_bundle(r.content)
        assert bundle.collateral_json is not None and len(bundle.gpus) == 2
        verifier = Verifier.simulated(virtual_trust_anchors(ccai_home, gpu=True, tdx=True))
        verified = verifier.verify_bundle(bundle, expected_nonce=nonce)
        assert verified.overall_claims["x-ccai-hpke-public-key"]
        doc = tmp_path / "doc.json"
        doc.write_bytes(r.content)
        env = {**os.environ, "PYTHONPATH": str(SRC), "CCAI_HOME": str(ccai_home)}
        cli = [
            sys.executable,
            "-m",
            "ccai.cli",
            "verify",
            str(doc),
            "--offline",
            "--allow-simulated",
            "--json",
        ]
        ok = subprocess.run(
            [*cli, "--nonce", nonce.hex()], env=env, capture_output=True, text=True, check=False
        )
        assert ok.returncode == 0, ok.stdout + ok.stderr
        other = subprocess.run(
            [*cli, "--nonce", os.urandom(32).hex()], env=env, capture_output=True, check=False
        )
        assert other.returncode == 1

        # Two documents for two nonces bind the same HPKE key; a bad or missing nonce is a 400.
        again = load_evidence_bundle(
            httpx.get(
                gw.url + "/.well-known/ccai/attestation", params={"nonce": "ab" * 32}, timeout=30
            ).content
        )
        assert again.hpke_public_key == bundle.hpke_public_key and again.nonce == bytes.fromhex("ab" * 32)
        # Concurrent documents are collected one at a time and each verifies for its own nonce.
        nonces = [os.urandom(32) for _ in range(4)]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            docs = list(
                pool.map(
                    lambda n: httpx.get(gw.url + ATTESTATION, params={"nonce": n.hex()}, timeout=60), nonces
                )
            )
        for n, r in zip(nonces, docs, strict=True):
            assert r.status_code == 200 and float(r.headers["x-ccai-collect-seconds"]) > 0
            verifier.verify_bundle(load_evidence_bundle(r.content), expected_nonce=n)

        for bad in ({"nonce": "zz" * 32}, {"nonce": "ab" * 31}, {}):
            r = httpx.get(gw.url + "/.well-known/ccai/attestation", params=bad)
            assert r.status_code == 400 and "nonce" in r.json()["error"]["message"]

        # Streaming: the first event reaches the client while the engine still waits for it.
        gate = tmp_path / "gate"
        body = {"model": "upstream", "stream": True, "gate": str(gate), "messages": []}
        with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, timeout=30) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            chunks = stream.iter_raw()
            first = next(chunks)
            assert b'"first"' in first and b"released" not in first
            gate.touch()  # only now does the engine send the rest
            rest = b"".join(chunks)
        assert b'"released"' in rest and rest.endswith(b"data: [DONE]\n\n")

        # Hop-by-hop headers stay at the gateway; end-to-end ones reach the engine.
        seen = httpx.post(
            gw.url + "/v1/chat/completions",
            json={"echo_headers": True},
            headers={
                "Connection": "X-Hop",
                "X-Hop": "1",
                "Proxy-Authorization": "Basic eA==",
                "X-End": "1",
                "TE": "x",
            },
        ).json()["headers"]
        assert seen.get("x-end") == "1"
        assert not {"proxy-authorization", "te", "x-hop"} & set(seen)
        assert seen.get("connection") != "X-Hop"  # the gateway's own connection to the engine

        metrics = httpx.get(gw.url + "/metrics").text
        assert "ccai_gateway_attestation_documents_total 6.0" in metrics
        assert 'ccai_gateway_requests_total{route="attestation",status="400"} 3.0' in metrics
        assert "ccai_gateway_boot_seconds" in metrics and "ccai_gateway_ready 1.0" in metrics

        # The engine goes away: a 502 JSON answer, not a hang or a traceback.
        os.kill(upstream_pid, signal.SIGKILL)
        time.sleep(0.3)
        r = httpx.get(gw.url + "/v1/models")
        assert r.status_code == 502 and r.json()["error"]["type"] == "bad_gateway"
        code, _, err = gw.stop()
    assert code in (0, -signal.SIGTERM), err  # uvicorn re-raises SIGTERM after its clean shutdown
    for line in err.splitlines():  # JSON log lines, none of them carrying the key
        json.loads(line)
    assert kek.key.hex() not in err and base64.urlsafe_b64encode(kek.key).decode().rstrip("=") not in err
    assert not [p for p in shm if p.exists()]  # the plaintext model is gone with the gateway


def test_engine_and_plaintext_removed_on_sigterm(
    ccai_home: Path, tiny_sealed: tuple[Path, Path, Kek]
) -> None:
    sealed, kek_file, _ = tiny_sealed
    with running_gateway(ccai_home, *_args(sealed, kek_file, "--allow-plaintext")) as gw:
        models = httpx.get(gw.url + "/v1/models").json()["data"][0]
        pid, before = models["pid"], {Path(models["dir"]).parent}
        gw.process.send_signal(signal.SIGTERM)
        gw.process.wait(timeout=60)
    with pytest.raises(ProcessLookupError):
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)
    assert not [p for p in before if p.exists()]


def test_plaintext_is_refused_without_allow_plaintext(
    ccai_home: Path, tiny_sealed: tuple[Path, Path, Kek]
) -> None:
    sealed, kek_file, _ = tiny_sealed
    with running_gateway(ccai_home, *_args(sealed, kek_file)) as gw:
        r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "upstream", "messages": []})
        assert 400 <= r.status_code < 500, r.text
        assert "hello" not in r.text
        # The control routes stay open.
        assert httpx.get(gw.url + "/health").status_code == 200
        r = httpx.get(gw.url + "/.well-known/ccai/attestation", params={"nonce": "cd" * 32}, timeout=30)
        assert r.status_code == 200 and json.loads(r.content)["format"] == "ccai-evidence-bundle"


def test_tls_key_is_bound_in_the_document(
    ccai_home: Path, tiny_sealed: tuple[Path, Path, Kek], tmp_path: Path
) -> None:
    import datetime
    import hashlib
    import ipaddress
    import ssl

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]), False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_pem, key_pem = tmp_path / "gw.pem", tmp_path / "gw.key"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    trust = ssl.create_default_context(cafile=str(cert_pem))
    sealed, kek_file, _ = tiny_sealed
    args = _args(sealed, kek_file, "--tls-cert", str(cert_pem), "--tls-key", str(key_pem))
    with running_gateway(ccai_home, *args, verify=trust) as gw:
        assert gw.url.startswith("https://")
        nonce = os.urandom(32)
        r = httpx.get(gw.url + "/.well-known/ccai/attestation", params={"nonce": nonce.hex()}, verify=trust)
        assert r.status_code == 200
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    bundle = load_evidence_bundle(r.content)
    assert bundle.tls_spki_sha256 == hashlib.sha256(spki).digest()
    verified = Verifier.simulated(virtual_trust_anchors(ccai_home, gpu=True, tdx=True)).verify_bundle(
        bundle, expected_nonce=nonce
    )
    assert verified.overall_claims["x-ccai-tls-spki-sha256"] == hashlib.sha256(spki).hexdigest()


def test_document_carries_the_attestation_service_token(
    ccai_home: Path, tiny_sealed: tuple[Path, Path, Kek]
) -> None:
    from tests.service.conftest import serve_subprocess

    from ccai.virtual import open_virtual_vm

    open_virtual_vm(tee="tdx", gpus=2, home=ccai_home)  # the service reads the VM's test-PKI anchors
    sealed, kek_file, _ = tiny_sealed
    service_args = ["--allow-anonymous", "--allow-simulated", "--offline"]
    with (
        serve_subprocess(service_args, ccai_home) as (service, _),
        running_gateway(ccai_home, *_args(sealed, kek_file, "--attestation-service", service)) as gw,
    ):
        nonce = os.urandom(32)
        r = httpx.get(gw.url + ATTESTATION, params={"nonce": nonce.hex()}, timeout=60)
        assert r.status_code == 200, r.text
    bundle = load_evidence_bundle(r.content)  # the loader tolerates the token field
    Verifier.simulated(virtual_trust_anchors(ccai_home, gpu=True, tdx=True)).verify_bundle(
        bundle, expected_nonce=nonce
    )
    token = json.loads(r.content)["attestation_token"]  # the service's detached EAT: [["JWT", overall], …]
    assert token[0][0] == "JWT"
    overall = json.loads(base64.urlsafe_b64decode(token[0][1].split(".")[1] + "=="))
    assert bundle.hpke_public_key is not None
    assert overall["x-ccai-hpke-public-key"] == bundle.hpke_public_key.hex()
    assert overall["x-nvidia-overall-att-result"] is True and overall["eat_nonce"] != nonce.hex()


def test_periodic_key_rotation(ccai_home: Path, tiny_sealed: tuple[Path, Path, Kek]) -> None:
    """``--hpke-rotate-seconds``: the served key changes on its own; documents bind the current key."""
    from ccai.client import attest_gateway
    from ccai.ehbp import fetch_key_config

    sealed, kek_file, _ = tiny_sealed
    with running_gateway(ccai_home, *_args(sealed, kek_file, "--hpke-rotate-seconds", "1")) as gw:
        anchors = virtual_trust_anchors(ccai_home, gpu=True, tdx=True)  # the gateway created the VM
        first = fetch_key_config(gw.url).public_key
        deadline = time.monotonic() + 30
        while fetch_key_config(gw.url).public_key == first:
            assert time.monotonic() < deadline, "the key did not rotate"
            time.sleep(0.1)
        # The key may rotate again between the document and /.well-known/hpke-keys: compare the document only.
        attested = attest_gateway(gw.url, anchors=anchors, allow_simulated=True, check_key_endpoint=False)
        assert attested.hpke_public_key != first
    _, _, err = gw.stop()
    assert '"event": "hpke_key_rotated"' in err
