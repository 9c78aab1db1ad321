"""The NRAS-compatible API over a real socket: virtual-GPU evidence, the real 2023 H100 vector,
failed tokens with HTTP 200, NRAS-style errors, JWKS with x5c, collateral unavailable → 503."""

from __future__ import annotations

import base64
import json
import secrets
import shutil
from pathlib import Path

import httpx
import pytest

from ccai._time import utcnow
from ccai.evidence import GpuEvidence, load_report
from ccai.service import ServiceSettings, create_app
from ccai.token import parse_detached_eat, verify_token
from ccai.verify import Verifier
from ccai.virtual import VirtualFault, virtual_trust_anchors

from .conftest import nras_body, serve, virtual_items

pytestmark = pytest.mark.extra("service")

NVT0 = "nvtrust/NVIDIA_nvtrust@0ab869a/guest_tools/gpu_verifiers/local_gpu_verifier/src/verifier/samples"
NVT = "nvtrust/NVIDIA_nvtrust@0281730/guest_tools/gpu_verifiers/local_gpu_verifier/src/verifier/samples"
NONCE_4CFF = bytes.fromhex("4cff7f5380ead8fad8ec2c531c110aca4302a88f603792801a8ca29ee151af2e")
PIN_2024 = "2024-06-01T00:00:00Z"


def _claims(jwt: str) -> dict:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _simulated_settings(url: str, tmp_path: Path, **extra: object) -> ServiceSettings:
    return ServiceSettings.build(
        environ={},
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'svc.db'}",
        rim_service_url=url,
        ocsp_url=f"{url}/ocsp",
        allow_simulated=True,
        allow_anonymous=True,
        **extra,
    )


def test_virtual_gpu_passes_and_drift_fails_with_http_200(dev_server, tmp_path: Path) -> None:
    backend, url = dev_server
    settings = _simulated_settings(url, tmp_path)
    with serve(create_app(settings, anchors=virtual_trust_anchors(gpu=True))) as base:
        nonce = secrets.token_bytes(32)
        r = httpx.post(
            base + "/v4/attest/gpu", json=nras_body(virtual_items(backend, nonce), nonce), timeout=30
        )
        assert r.status_code == 200, r.text
        eat = r.json()
        assert eat[0][0] == "JWT" and set(eat[1]) == {"GPU-0"}
        overall = _claims(eat[0][1])
        assert overall["x-nvidia-overall-att-result"] is True
        assert overall["x-nvidia-ver"] == "3.0"
        jwks = httpx.get(base + "/.well-known/jwks.json").json()
        assert all("x5c" in k for k in jwks["keys"])
        verified = verify_token(eat, jwks=jwks, nonce=nonce, now=utcnow(), allow_simulated=True)
        assert verified.simulated and verified.submods["GPU-0"]["measres"] == "success"

        backend.inject_fault(VirtualFault.MEASUREMENT_DRIFT)
        nonce = secrets.token_bytes(32)
        r = httpx.post(
            base + "/v4/attest/gpu", json=nras_body(virtual_items(backend, nonce), nonce), timeout=30
        )
        assert r.status_code == 200, r.text
        overall = _claims(r.json()[0][1])
        assert overall["x-nvidia-overall-att-result"] is False
        assert overall["x-ccai-error"] == "MeasurementMismatch"
        assert "measurement" in overall["x-ccai-failed-step"]
        gpu = _claims(r.json()[1]["GPU-0"])
        assert gpu["measres"] == "fail"
        # The failed token verifies as a token (it is signed), and says false.
        failed = verify_token(r.json(), jwks=jwks, nonce=nonce, now=utcnow(), allow_simulated=True)
        assert failed.overall["x-nvidia-overall-att-result"] is False

        # v3 answers claims 2.0.
        backend.inject_fault(None)
        nonce = secrets.token_bytes(32)
        body = nras_body(virtual_items(backend, nonce), nonce)
        del body["claims_version"]
        r = httpx.post(base + "/v3/attest/gpu", json=body, timeout=30)
        assert _claims(r.json()[0][1])["x-nvidia-ver"] == "2.0"


def test_nras_errors(dev_server, tmp_path: Path) -> None:
    backend, url = dev_server
    settings = _simulated_settings(url, tmp_path, max_body_bytes=64 * 1024, max_gpus=2)
    with serve(create_app(settings, anchors=virtual_trust_anchors(gpu=True))) as base:
        nonce = secrets.token_bytes(32)
        good = nras_body(virtual_items(backend, nonce), nonce)

        def post(body: object, path: str = "/v4/attest/gpu", **kw: object) -> httpx.Response:
            if isinstance(body, bytes):
                return httpx.post(base + path, content=body, timeout=30, **kw)  # type: ignore[arg-type]
            return httpx.post(base + path, json=body, timeout=30, **kw)  # type: ignore[arg-type]

        cases = [
            (b"not json", 400, "INVALID_REQUEST"),
            ({"nonce": nonce.hex()}, 400, "INVALID_REQUEST"),
            ({**good, "nonce": "zz"}, 400, "INVALID_NONCE"),
            ({**good, "arch": "VOLTA"}, 400, "UNSUPPORTED_ARCH"),
            ({**good, "evidence_list": good["evidence_list"] * 3}, 400, "TOO_MANY_DEVICES"),
            (b'{"nonce": "' + b"a" * 70000 + b'"}', 413, "REQUEST_TOO_LARGE"),
            ({**good, "policy": "nope"}, 404, "POLICY_NOT_FOUND"),
        ]
        for body, status, description in cases:
            r = post(body)
            assert r.status_code == status, (description, r.text)
            detail = r.json()
            assert set(detail) == {"code", "httpStatus", "description", "message"}
            assert detail["httpStatus"] == status and detail["description"] == description
        r = post(good, "/v4/attest/switch")
        assert r.status_code == 400 and r.json()["description"] == "UNSUPPORTED_ARCH"
        assert httpx.get(base + "/health").json() == {"status": "ok"}


def test_collateral_unavailable_is_503(dev_server, tmp_path: Path) -> None:
    backend, _url = dev_server
    # A RIM service and OCSP responder that do not answer.
    settings = _simulated_settings("http://127.0.0.1:9", tmp_path)
    with serve(create_app(settings, anchors=virtual_trust_anchors(gpu=True))) as base:
        nonce = secrets.token_bytes(32)
        r = httpx.post(
            base + "/v4/attest/gpu", json=nras_body(virtual_items(backend, nonce), nonce), timeout=60
        )
        assert r.status_code == 503, r.text
        assert r.json()["description"] == "COLLATERAL_UNAVAILABLE" and r.json()["code"] == 5030
        metrics = httpx.get(base + "/metrics").text
        assert 'ccai_collateral_requests_total{kind="rim",outcome="error"}' in metrics


def test_genuine_h100_vector_offline_matches_the_library(vectors: Path, tmp_path: Path) -> None:
    rims = tmp_path / "rims"
    rims.mkdir()
    shutil.copy(vectors / NVT / "Driver_RIM_test_no_gpu.swidtag", rims / "NV_GPU_DRIVER_GH100_545.00.xml")
    shutil.copy(
        vectors / NVT / "1010_0200_882_96005E0001_test_no_gpu.swidtag",
        rims / "NV_GPU_VBIOS_1010_0200_882_96005E0001.xml",
    )
    report = load_report((vectors / NVT0 / "attestationReport.txt").read_bytes())
    chain = (vectors / NVT0 / "gpuAkCertChain.txt").read_bytes()
    item = GpuEvidence(arch="HOPPER", nonce=NONCE_4CFF, report=report, certificate_chain=chain)
    from ccai._time import parse_instant

    library = Verifier.offline(rim_dir=rims, at=parse_instant(PIN_2024)).verify_gpu([item], nonce=NONCE_4CFF)
    settings = ServiceSettings.build(
        environ={},
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'svc.db'}",
        rim_dir=rims,
        offline=True,
        at=parse_instant(PIN_2024),
        allow_anonymous=True,
    )
    with serve(create_app(settings)) as base:
        r = httpx.post(base + "/v4/attest/gpu", json=nras_body([item], NONCE_4CFF), timeout=30)
        assert r.status_code == 200, r.text
        eat = parse_detached_eat(r.json())
        overall = _claims(eat.overall)
        # Consistent with the library Verifier on the same input (revocation is not checked
        # offline, so NVIDIA's own overall rule says false even though every step passed).
        assert "x-ccai-error" not in overall
        expected = library.overall_claims.get("x-nvidia-overall-att-result", True)
        assert overall["x-nvidia-overall-att-result"] is expected
        gpu = _claims(eat.submods["GPU-0"])
        for claim, value in library.gpus[0].claims.items():
            assert gpu[claim] == value, claim
        jwks = httpx.get(base + "/.well-known/jwks.json").json()
        assert verify_token(r.json(), jwks=jwks, nonce=NONCE_4CFF, now=utcnow()).simulated is False

        # A flipped byte in the signed region: a failed token, not an HTTP error.
        flipped = bytearray(report)
        flipped[40] ^= 0x01
        bad = GpuEvidence(arch="HOPPER", nonce=NONCE_4CFF, report=bytes(flipped), certificate_chain=chain)
        r = httpx.post(base + "/v4/attest/gpu", json=nras_body([bad], NONCE_4CFF), timeout=30)
        assert r.status_code == 200, r.text
        overall = _claims(r.json()[0][1])
        assert overall["x-nvidia-overall-att-result"] is False
        # Byte 40 lies in the signed SPDM response: the report signature no longer verifies (the
        # report is parsed only after its signature checks out, so no parse error can come first).
        assert (overall["x-ccai-error"], overall["x-ccai-failed-step"]) == (
            "SignatureError",
            "(2) report signature",
        )
