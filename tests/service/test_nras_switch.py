"""The NRAS-compatible NVSwitch API (``POST /v3|v4/attest/switch``) over a real socket: the virtual
HGX system's switches, a drifted switch, NVIDIA's genuine LS10 vector offline at its pinned time,
failed tokens with HTTP 200 and one ``SWITCH-<i>`` submodule per switch, named policies."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from ccai._time import utcnow
from ccai.attest import collect_gpu_evidence, collect_switch_evidence
from ccai.device import MultiGpuMode
from ccai.evidence import GpuEvidence, load_report
from ccai.service import ServiceSettings, create_app
from ccai.token import parse_detached_eat, verify_token
from ccai.verify import Verifier
from ccai.virtual import (
    VirtualFault,
    VirtualGpuBackend,
    create_dev_collateral_app,
    run_in_background,
    settings_for_virtual_gpu,
    virtual_trust_anchors,
)

from .conftest import nras_body, serve

pytestmark = pytest.mark.extra("service")

UT = "nvtrust/NVIDIA_attestation-sdk@73c032e/nv-attestation-sdk-cpp/unit-tests/testdata"
SAD = f"{UT}/sample_attestation_data"
RIM_ID = "NV_SWITCH_BIOS_5612_0002_890_9610550001"
NONCE_931D = bytes.fromhex("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")
#: The genuine BIOS RIM's L4 signer is valid 2026-05-20..2028-05-19.
PIN_GENUINE = datetime(2026, 7, 1, tzinfo=UTC)


def _claims(jwt: str) -> dict:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@pytest.fixture
def hgx_server(ccai_home: Path) -> Iterator[tuple[VirtualGpuBackend, str]]:
    """The virtual HGX system (8 GPUs, 4 NVSwitches) and the dev collateral server for it."""
    backend = VirtualGpuBackend.create(
        home=ccai_home, gpus=8, multi_gpu_mode=MultiGpuMode.PROTECTED_PCIE, switches=4
    )
    with run_in_background(create_dev_collateral_app(settings_for_virtual_gpu(backend))) as url:
        yield backend, url


def _settings(url: str, tmp_path: Path, **extra: object) -> ServiceSettings:
    return ServiceSettings.build(
        environ={},
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'svc.db'}",
        rim_service_url=url,
        ocsp_url=f"{url}/ocsp",
        allow_simulated=True,
        allow_anonymous=True,
        **extra,
    )


def _switch_body(backend: VirtualGpuBackend, nonce: bytes, *, claims_version: str = "3.0") -> dict:
    body = nras_body(collect_switch_evidence(backend, nonce), nonce, arch="LS10")
    body["claims_version"] = claims_version
    return body


def test_virtual_switches_pass_and_a_drifted_switch_fails_with_http_200(hgx_server, tmp_path: Path) -> None:
    backend, url = hgx_server
    with serve(create_app(_settings(url, tmp_path), anchors=virtual_trust_anchors(gpu=True))) as base:
        nonce = secrets.token_bytes(32)
        r = httpx.post(base + "/v4/attest/switch", json=_switch_body(backend, nonce), timeout=60)
        assert r.status_code == 200, r.text
        eat = r.json()
        assert eat[0][0] == "JWT" and set(eat[1]) == {f"SWITCH-{i}" for i in range(4)}
        overall = _claims(eat[0][1])
        assert overall["x-nvidia-overall-att-result"] is True, overall.get("x-ccai-reason")
        assert overall["x-nvidia-ver"] == "3.0"
        jwks = httpx.get(base + "/.well-known/jwks.json").json()
        verified = verify_token(eat, jwks=jwks, nonce=nonce, now=utcnow(), allow_simulated=True)
        assert verified.simulated
        pdis = set()
        for i in range(4):
            switch = verified.submods[f"SWITCH-{i}"]
            assert switch["measres"] == "success"
            assert switch["x-nvidia-switch-bios-version"] == "96.10.55.00.01"
            assert (
                switch["x-nvidia-switch-attestation-report-cert-chain"]["x-nvidia-cert-ocsp-status"] == "good"
            )
            assert switch["x-nvidia-switch-bios-rim-cert-chain"]["x-nvidia-cert-status"] == "valid"
            assert switch["eat_nonce"] == nonce.hex()
            pdis.add(switch["x-ccai-switch-pdi"])
        assert pdis == {backend.switch_pdi(i).hex().upper() for i in range(4)}

        # v3: claims 2.0 (flat booleans), as NRAS /v3/attest/switch.
        nonce = secrets.token_bytes(32)
        body = _switch_body(backend, nonce)
        del body["claims_version"]
        r = httpx.post(base + "/v3/attest/switch", json=body, timeout=60)
        assert r.status_code == 200, r.text
        assert _claims(r.json()[0][1])["x-nvidia-ver"] == "2.0"
        v3 = _claims(r.json()[1]["SWITCH-0"])
        assert v3["x-nvidia-switch-attestation-report-cert-chain-validated"] is True

        backend.inject_fault(VirtualFault.SWITCH_MEASUREMENT_DRIFT)
        nonce = secrets.token_bytes(32)
        r = httpx.post(base + "/v4/attest/switch", json=_switch_body(backend, nonce), timeout=60)
        assert r.status_code == 200, r.text
        overall = _claims(r.json()[0][1])
        assert overall["x-nvidia-overall-att-result"] is False
        assert overall["x-ccai-error"] == "MeasurementMismatch"
        assert "SWITCH-1" in overall["x-ccai-reason"]
        assert set(r.json()[1]) == {f"SWITCH-{i}" for i in range(4)}
        failed = verify_token(r.json(), jwks=jwks, nonce=nonce, now=utcnow(), allow_simulated=True)
        assert all(failed.submods[f"SWITCH-{i}"]["measres"] == "fail" for i in range(4))
        assert all(failed.submods[f"SWITCH-{i}"]["secboot"] is None for i in range(4))

        # GPU evidence is not switch evidence: a failed token (the signed report says so).
        nonce = secrets.token_bytes(32)
        gpu_body = nras_body(collect_gpu_evidence(backend, nonce)[:1], nonce)
        del gpu_body["arch"]
        r = httpx.post(base + "/v4/attest/switch", json=gpu_body, timeout=60)
        assert r.status_code == 200, r.text
        overall = _claims(r.json()[0][1])
        assert (overall["x-nvidia-overall-att-result"], overall["x-ccai-error"]) == (
            False,
            "UnsupportedEvidence",
        )
        assert set(r.json()[1]) == {"SWITCH-0"}

        # NRAS-style errors.
        r = httpx.post(base + "/v4/attest/switch", json={**gpu_body, "arch": "HOPPER"}, timeout=30)
        assert (r.status_code, r.json()["description"]) == (400, "UNSUPPORTED_ARCH")
        r = httpx.post(base + "/v4/attest/gpu", json={**gpu_body, "arch": "LS10"}, timeout=30)
        assert (r.status_code, r.json()["description"]) == (400, "UNSUPPORTED_ARCH")
        r = httpx.post(base + "/v4/attest/switch", json={**gpu_body, "nonce": "00"}, timeout=30)
        assert (r.status_code, r.json()["description"]) == (400, "INVALID_NONCE")
        metrics = httpx.get(base + "/metrics").text
        assert 'endpoint="/v4/attest/switch"' in metrics


def test_named_policies_judge_switches_by_their_ppcie_section(hgx_server, tmp_path: Path) -> None:
    backend, url = hgx_server
    strict = tmp_path / "strict.json"
    # Accepts simulation but no mismatching measurement (the defaults of the ppcie section).
    strict.write_text(json.dumps({"format": "ccai-policy/1", "allow_simulated": True, "ppcie": {}}))
    lenient = tmp_path / "lenient.json"
    lenient.write_text(
        json.dumps(
            {"format": "ccai-policy/1", "allow_simulated": True, "ppcie": {"allowed_mismatch_indices": [9]}}
        )
    )
    gpu_only = tmp_path / "gpu-only.json"
    gpu_only.write_text(json.dumps({"format": "ccai-policy/1", "allow_simulated": True}))
    settings = _settings(url, tmp_path, policies={"strict": strict, "lenient": lenient, "gpu-only": gpu_only})
    backend.inject_fault(VirtualFault.SWITCH_MEASUREMENT_DRIFT)
    with serve(create_app(settings, anchors=virtual_trust_anchors(gpu=True))) as base:
        nonce = secrets.token_bytes(32)
        body = {**_switch_body(backend, nonce), "policy": "strict"}
        r = httpx.post(base + "/v4/attest/switch", json=body, timeout=60)
        assert r.status_code == 200, r.text
        assert _claims(r.json()[0][1])["x-ccai-error"] == "MeasurementMismatch"
        # The lenient policy accepts the drift at index 9: a passing appraisal (no x-ccai-error),
        # whose claims still say what NVIDIA's rule says of it (measres fail, overall false).
        nonce = secrets.token_bytes(32)
        body = {**_switch_body(backend, nonce), "policy": "lenient"}
        r = httpx.post(base + "/v4/attest/switch", json=body, timeout=60)
        assert r.status_code == 200, r.text
        overall = _claims(r.json()[0][1])
        assert "x-ccai-error" not in overall
        assert [s["status"] for s in overall["x-ccai-steps"]] == ["ok"] * 11
        assert _claims(r.json()[1]["SWITCH-1"])["x-nvidia-mismatch-measurement-records"][0]["index"] == 9
        assert _claims(r.json()[1]["SWITCH-0"])["measres"] == "success"
        nonce = secrets.token_bytes(32)
        r = httpx.post(
            base + "/v4/attest/switch",
            json={**_switch_body(backend, nonce), "policy": "gpu-only"},
            timeout=60,
        )
        assert r.status_code == 400 and "NVSwitch rules" in r.json()["message"], r.text
        r = httpx.post(
            base + "/v4/attest/switch", json={**_switch_body(backend, nonce), "policy": "nope"}, timeout=60
        )
        assert (r.status_code, r.json()["description"]) == (404, "POLICY_NOT_FOUND")


def test_genuine_ls10_vector_offline_matches_the_library(vectors: Path, tmp_path: Path) -> None:
    rims = tmp_path / "rims"
    rims.mkdir()
    (rims / f"{RIM_ID}.xml").write_bytes((vectors / UT / f"switchVBIOSRim_{RIM_ID}.xml").read_bytes())
    chain = (vectors / f"{SAD}/switch/switchCertChain.txt").read_bytes()
    item = GpuEvidence(
        arch="LS10",
        nonce=NONCE_931D,
        report=load_report((vectors / UT / "switchAttestationReport.txt").read_bytes()),
        certificate_chain=chain,
    )
    library = Verifier.offline(rim_dir=rims, at=PIN_GENUINE).verify_switch([item], nonce=NONCE_931D)
    settings = ServiceSettings.build(
        environ={},
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'svc.db'}",
        rim_dir=rims,
        offline=True,
        at=PIN_GENUINE,
        allow_anonymous=True,
    )
    with serve(create_app(settings)) as base:
        r = httpx.post(
            base + "/v4/attest/switch", json=nras_body([item], NONCE_931D, arch="LS10"), timeout=30
        )
        assert r.status_code == 200, r.text
        eat = parse_detached_eat(r.json())
        overall = _claims(eat.overall)
        assert "x-ccai-error" not in overall, overall.get("x-ccai-reason")
        # Offline, revocation is not checked: NVIDIA's overall rule then says false, as the library.
        assert overall["x-nvidia-overall-att-result"] is library.overall_claims["x-nvidia-overall-att-result"]
        switch = _claims(eat.submods["SWITCH-0"])
        for claim, value in library.switches[0].claims.items():
            assert switch[claim] == value, claim
        assert switch["hwmodel"] == "LS_10 A01 FSP BROM"
        jwks = httpx.get(base + "/.well-known/jwks.json").json()
        assert verify_token(r.json(), jwks=jwks, nonce=NONCE_931D, now=utcnow()).simulated is False

        # NVIDIA's report of another switch against this chain: a failed token at the signature step.
        bad = GpuEvidence(
            arch="LS10",
            nonce=NONCE_931D,
            report=load_report(
                (vectors / f"{SAD}/switch/switchAttestationReportInvalidSignature.txt").read_bytes()
            ),
            certificate_chain=chain,
        )
        r = httpx.post(base + "/v4/attest/switch", json=nras_body([bad], NONCE_931D, arch="LS10"), timeout=30)
        assert r.status_code == 200, r.text
        overall = _claims(r.json()[0][1])
        assert (
            overall["x-nvidia-overall-att-result"],
            overall["x-ccai-error"],
            overall["x-ccai-failed-step"],
        ) == (
            False,
            "SignatureError",
            "(2) report signature",
        )
        assert _claims(r.json()[1]["SWITCH-0"])["measres"] == "not-run"
