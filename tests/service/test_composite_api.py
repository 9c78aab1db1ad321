"""The composite API over a real socket: a virtual TDX + GPU bundle bound to a service nonce passes;
a replay, swapped GPU evidence, an expired nonce and simulated evidence on a production service
each fail with the named reason."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from ccai._time import utcnow
from ccai.attest import collect_composite, gather_composite_collateral
from ccai.collateral import cpu_collateral_section, embed_collateral
from ccai.evidence import EvidenceBundle, dump_evidence_bundle
from ccai.service import ServiceSettings, create_app
from ccai.token import verify_token
from ccai.virtual import (
    VirtualCpuTee,
    VirtualGpuBackend,
    open_virtual_vm,
    settings_for_virtual_gpu,
    virtual_trust_anchors,
)

from .conftest import serve

pytestmark = pytest.mark.extra("service")


class _InProcessSource:
    def __init__(self, backend: VirtualGpuBackend) -> None:
        self.backend = backend
        self.responder = settings_for_virtual_gpu(backend).responder

    def rim(self, rim_id: str) -> bytes:
        return self.backend.rim(rim_id)

    def ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, *, nonce: bytes | None) -> bytes:
        builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA384())
        if nonce:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        return self.responder.respond(builder.build().public_bytes(Encoding.DER))


def make_bundle(
    cpu: VirtualCpuTee, gpu: VirtualGpuBackend, nonce: bytes, *, gpus_from: EvidenceBundle | None = None
) -> bytes:
    """A virtual TDX + GPU bundle for ``nonce`` with its collateral embedded."""
    bundle = collect_composite(
        nonce=nonce, cpu=cpu, gpu=gpu, tls_spki_sha256=b"\x01" * 32, hpke_public_key=b"\x07" * 32
    )
    if gpus_from is not None:
        bundle = dataclasses.replace(bundle, gpus=gpus_from.gpus)
    now = utcnow()
    coll = gather_composite_collateral(bundle, now=now, gpu_source=_InProcessSource(gpu))
    coll = dataclasses.replace(coll, cpu=cpu_collateral_section(cpu.collateral(now)))
    return dump_evidence_bundle(embed_collateral(bundle, coll))


def _settings(tmp_path: Path, **kw: object) -> ServiceSettings:
    return ServiceSettings.build(
        environ={},
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'svc.db'}",
        offline=True,
        allow_anonymous=True,
        **kw,
    )


def _nonce(base: str, **body: object) -> bytes:
    r = httpx.post(base + "/v1/nonce", json=body or None, timeout=10)
    assert r.status_code == 200, r.text
    return bytes.fromhex(r.json()["nonce"])


def _attest(base: str, bundle: bytes, policy: str | None = None) -> dict:
    content = (
        bundle if policy is None else json.dumps({"bundle": json.loads(bundle), "policy": policy}).encode()
    )
    r = httpx.post(
        base + "/v1/attest", content=content, timeout=30, headers={"content-type": "application/json"}
    )
    assert r.status_code == 200, r.text
    return r.json()


def test_composite_bundle_passes_once_and_every_forgery_fails(ccai_home: Path, tmp_path: Path) -> None:
    cpu, gpu = open_virtual_vm(tee="tdx", gpus=1, home=ccai_home)
    anchors = virtual_trust_anchors(gpu=True, tdx=True)
    with serve(create_app(_settings(tmp_path, allow_simulated=True), anchors=anchors)) as base:
        nonce = _nonce(base)
        bundle = make_bundle(cpu, gpu, nonce)
        answer = _attest(base, bundle)
        assert answer["result"] is True and answer["error"] is None, answer["error"]
        assert all(s["status"] in ("ok", "skipped") for s in answer["steps"])
        jwks = httpx.get(base + "/.well-known/jwks.json").json()
        token = verify_token(answer["token"], jwks=jwks, nonce=nonce, now=utcnow(), allow_simulated=True)
        assert set(token.submods) == {"GPU-0", "CPU-0"}
        assert token.overall["x-ccai-binding"] == "ccai/composite/v1"
        assert token.overall["x-ccai-tls-spki-sha256"] == "01" * 32
        assert token.overall["x-ccai-hpke-public-key"] == "07" * 32

        # (a) the same bundle replayed: its nonce was consumed.
        replay = _attest(base, bundle)
        assert replay["result"] is False and replay["error"]["error"] == "NonceMismatch"
        assert "already used" in replay["error"]["message"]

        # (b) GPU evidence swapped in from a collection for another nonce: the GPU reports answer
        # the GPU nonce derived from nonce3, not from the bundle's nonce2, and the binding step
        # compares those nonces before it hashes the evidence into report_data.
        nonce2, nonce3 = _nonce(base), _nonce(base)
        other = collect_composite(nonce=nonce3, cpu=cpu, gpu=gpu)
        swapped = make_bundle(cpu, gpu, nonce2, gpus_from=other)
        result = _attest(base, swapped)
        assert result["result"] is False
        assert result["error"]["error"] == "NonceMismatch", result["error"]
        assert result["error"]["step"] == "(3) binding" and result["error"]["index"] == "GPU-0"
        assert "another GPU nonce" in result["error"]["message"]
        failed = [s for s in result["steps"] if s["status"] == "failed"]
        assert [s["step"] for s in failed] == ["(3) binding"]
        assert failed[0]["detail"].startswith("NonceMismatch")
        from ccai.token import parse_detached_eat

        overall = parse_detached_eat(result["token"]).overall
        claims = verify_token(
            result["token"], jwks=jwks, nonce=nonce2, now=utcnow(), allow_simulated=True
        ).overall
        assert overall and claims["x-nvidia-overall-att-result"] is False
        assert claims["x-ccai-error"] == result["error"]["error"]

        # (b2) GPU evidence from a second collection for the *same* nonce: the GPU nonce matches,
        # but report_data commits to the digest of the first collection's reports.
        nonce4 = _nonce(base)
        again = collect_composite(nonce=nonce4, cpu=cpu, gpu=gpu)
        rebound = _attest(base, make_bundle(cpu, gpu, nonce4, gpus_from=again))
        assert rebound["result"] is False
        assert rebound["error"]["error"] == "BindingError", rebound["error"]
        assert rebound["error"]["step"] == "(3) binding"

        # (c) an expired nonce.
        short = _nonce(base, ttl_seconds=1)
        late = make_bundle(cpu, gpu, short)
        time.sleep(1.2)
        expired = _attest(base, late)
        assert expired["result"] is False and expired["error"]["error"] == "NonceMismatch"
        assert expired["error"]["step"] == "nonce" and "not a live nonce" in expired["error"]["message"]

        audit = httpx.get(base + "/metrics").text
        assert 'ccai_verdicts_total{endpoint="/v1/attest",result="pass"} 1.0' in audit

    # (d) simulated evidence on a service started without --allow-simulated.
    with serve(create_app(_settings(tmp_path / "prod"))) as base:
        nonce = _nonce(base)
        answer = _attest(base, make_bundle(cpu, gpu, nonce))
        assert answer["result"] is False
        assert answer["error"]["error"] == "SimulatedEvidenceRejected"


def test_named_policy_is_applied_and_recorded(ccai_home: Path, tmp_path: Path) -> None:
    cpu, gpu = open_virtual_vm(tee="tdx", gpus=1, home=ccai_home)
    strict = tmp_path / "two-gpus.json"
    strict.write_text(json.dumps({"format": "ccai-policy/1", "allow_simulated": True, "gpus": {"count": 2}}))
    settings = _settings(tmp_path, allow_simulated=True, policies={"two-gpus": strict})
    with serve(create_app(settings, anchors=virtual_trust_anchors(gpu=True, tdx=True))) as base:
        answer = _attest(base, make_bundle(cpu, gpu, _nonce(base)), policy="two-gpus")
        assert answer["policy"] == {"name": "two-gpus", "version": 1}
        assert answer["result"] is False and answer["error"]["error"] == "PolicyViolation", answer["error"]
