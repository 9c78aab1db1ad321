"""``ccai verify gpu`` and ``ccai attest gpu`` through the real Typer app and the real entry point."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ccai.cli.__main__ import main
from ccai.cli.app import app
from ccai.device import CcMode
from ccai.token import keys_from_jwks, parse_detached_eat, verify_es384
from ccai.virtual import VirtualFault, VirtualGpuBackend

NVT0 = "nvtrust/NVIDIA_nvtrust@0ab869a/guest_tools/gpu_verifiers/local_gpu_verifier/src/verifier/samples"
NVT = "nvtrust/NVIDIA_nvtrust@0281730/guest_tools/gpu_verifiers/local_gpu_verifier/src/verifier/samples"
POLICIES = "nvtrust/NVIDIA_nvtrust@0281730/guest_tools/attestation_sdk/tests/policies/local"
NONCE = "4cff7f5380ead8fad8ec2c531c110aca4302a88f603792801a8ca29ee151af2e"

runner = CliRunner()


def _main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["ccai", *args])
    with pytest.raises(SystemExit) as info:
        main()
    return int(info.value.code or 0)


def _vector_args(vectors: Path, vbios: str = "1010_0200_882_96005E0001_test_no_gpu.swidtag") -> list[str]:
    return [
        "verify",
        "gpu",
        "--report",
        str(vectors / NVT0 / "attestationReport.txt"),
        "--certs",
        str(vectors / NVT0 / "gpuAkCertChain.txt"),
        "--nonce",
        NONCE,
        "--driver-rim",
        str(vectors / NVT / "Driver_RIM_test_no_gpu.swidtag"),
        "--vbios-rim",
        str(vectors / NVT / vbios),
        "--offline",
        "--at",
        "2024-06-01T00:00:00Z",
    ]


def test_real_vector_passes_with_table(vectors: Path) -> None:
    result = runner.invoke(app, _vector_args(vectors))
    assert result.exit_code == 0, result.output
    assert "PASS" in result.stdout and "(9) measurements" in result.stdout and "✗" not in result.stdout


def test_real_vector_json_has_claims_and_a_signed_eat(vectors: Path, ccai_home: Path) -> None:
    result = runner.invoke(app, [*_vector_args(vectors), "--json"])
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    assert doc["result"] == "pass" and all(s["status"] == "ok" for s in doc["steps"])
    assert doc["claims"]["GPU-0"]["measres"] == "success"
    eat = parse_detached_eat(doc["detached_eat"])
    assert set(eat.submods) == {"GPU-0"}
    # Signed ES384 with the key under $CCAI_HOME.
    from ccai.token import TokenSigner, jwks

    signer = TokenSigner.load_or_create()
    keys = keys_from_jwks(jwks([signer]))
    assert verify_es384(eat.overall, keys)["x-nvidia-ver"] == "3.0"


def test_measurement_mismatch_exit_1(vectors: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = _vector_args(vectors, "1010_0200_882_96005E0001_PROD.swidtag")
    assert _main(monkeypatch, *args) == 1
    result = runner.invoke(app, [*args, "--json"])
    doc = json.loads(result.stdout)
    assert doc["result"] == "error" and doc["error"]["class"] == "MeasurementMismatch"
    assert [s["status"] for s in doc["steps"]][:9] == ["ok"] * 8 + ["failed"]


def test_expired_rim_signer_exit_1(vectors: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = [a if a != "2024-06-01T00:00:00Z" else "2026-01-01T00:00:00Z" for a in _vector_args(vectors)]
    assert _main(monkeypatch, *args) == 1


def test_missing_rim_is_collateral_unavailable_exit_3(vectors: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = [a for a in _vector_args(vectors)]
    i = args.index("--vbios-rim")
    del args[i : i + 2]
    assert _main(monkeypatch, *args) == 3


SDK = "nvtrust/NVIDIA_attestation-sdk@73c032e/nv-attestation-sdk-cpp/unit-tests/testdata"
SDK_GPU = f"{SDK}/sample_attestation_data/gpu"
NONCE_931D = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb"


def test_bad_signature_without_rims_is_evidence_failure_not_missing_collateral(
    vectors: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No RIMs offline: a report that does not verify with its chain is still "evidence invalid" (1)
    # at the signature step, never "collateral unavailable" (3).
    args = [
        "verify",
        "gpu",
        "--report",
        str(vectors / SDK_GPU / "hopperAttestationReportInvalidSignature.txt"),
        "--certs",
        str(vectors / SDK_GPU / "hopperCertChain.txt"),
        "--nonce",
        NONCE_931D,
        "--offline",
        "--at",
        "2025-06-01T00:00:00Z",
    ]
    assert _main(monkeypatch, *args) == 1
    doc = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert doc["error"]["class"] == "SignatureError" and doc["error"]["step"] == "(2) report signature"
    # The genuine report of that chain's GPU: bound to another nonce it fails at the nonce step (1);
    # with its own nonce it passes steps (1)-(5) and only then lacks its RIMs (3).
    from ccai.evidence import load_report, parse_attestation_report

    report = vectors / SDK_GPU / "hopperAttestationReport.txt"
    genuine = [str(report) if a == args[3] else a for a in args]
    assert _main(monkeypatch, *genuine) == 1
    own_nonce = parse_attestation_report(load_report(report.read_bytes())).nonce.hex()
    assert _main(monkeypatch, *[own_nonce if a == NONCE_931D else a for a in genuine]) == 3


def test_usage_errors_exit_2(vectors: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = _vector_args(vectors)
    args[args.index("--nonce") + 1] = "abc"
    assert _main(monkeypatch, *args) == 2
    assert _main(monkeypatch, "verify", "gpu", "--nonce", NONCE) == 2


def test_nvidia_policy_file(vectors: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    v2 = [
        *_vector_args(vectors),
        "--claims-version",
        "2.0",
        "--policy",
        str(vectors / POLICIES / "NVGPULocalPolicyExample.json"),
    ]
    assert _main(monkeypatch, *v2) == 0
    # The claims-3.0 example requires OCSP "good"; offline it is "not-checked".
    v4 = [*_vector_args(vectors), "--policy", str(vectors / POLICIES / "NVGPULocalv4PolicyExample.json")]
    assert _main(monkeypatch, *v4) == 1


def test_evidence_json_of_the_virtual_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ccai.attest import collect_gpu_evidence
    from ccai.evidence import dump_evidence_json

    backend = VirtualGpuBackend.create(gpus=2)
    nonce = bytes(range(32))
    path = tmp_path / "evidence.json"
    path.write_bytes(dump_evidence_json(collect_gpu_evidence(backend, nonce)))
    rim_dir = tmp_path / "rims"
    rim_dir.mkdir()
    for rim_id in backend.rim_ids(0):
        (rim_dir / f"{rim_id}.xml").write_bytes(backend.rim(rim_id))
    base = ["verify", "gpu", str(path), "--nonce", nonce.hex(), "--rim-dir", str(rim_dir), "--offline"]
    assert _main(monkeypatch, *base) == 1  # simulated evidence is rejected by default
    result = runner.invoke(app, [*base, "--allow-simulated", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["claims"]["GPU-1"]["x-ccai-simulated"] is True


def test_attest_gpu_sets_ready_only_on_success(monkeypatch: pytest.MonkeyPatch) -> None:
    VirtualGpuBackend.create()
    assert _main(monkeypatch, "attest", "gpu", "--simulate", "--set-ready") == 0
    assert VirtualGpuBackend.open().status().gpus_ready is True

    backend = VirtualGpuBackend.open()
    backend.set_cc_mode(CcMode.DEVTOOLS)
    assert _main(monkeypatch, "attest", "gpu", "--simulate", "--set-ready") == 1
    assert VirtualGpuBackend.open().status().gpus_ready is False  # never READY on failure, DevTools included


def test_attest_gpu_fault_json(monkeypatch: pytest.MonkeyPatch) -> None:
    VirtualGpuBackend.create().inject_fault(VirtualFault.CORRUPT_SIGNATURE)
    result = runner.invoke(app, ["attest", "gpu", "--simulate", "--json"])
    assert result.exit_code != 0
    doc = json.loads(result.stdout)
    assert doc["error"]["class"] == "SignatureError" and doc["error"]["step"] == "(2) report signature"
