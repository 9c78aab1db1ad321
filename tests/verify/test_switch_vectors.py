"""NVSwitch (LS10) verification on NVIDIA's real vectors, offline, at the pinned times of PROVENANCE.md."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ccai.errors import NonceMismatch, SignatureError, UnsupportedEvidence
from ccai.evidence import GpuEvidence, load_report, parse_evidence_json
from ccai.verify import SWITCH_STEPS, Appraisal, Verifier, load_nvidia_policy
from ccai.verify._gpu import STEP_NONCE, STEP_RIM_AUTH, STEP_SIGNATURE

UT = "nvtrust/NVIDIA_attestation-sdk@73c032e/nv-attestation-sdk-cpp/unit-tests/testdata"
SAD = f"{UT}/sample_attestation_data"
EVID = "nvtrust/NVIDIA_attestation-sdk@73c032e/common-test-data/serialized_test_evidence"
PPCIE = "nvtrust/NVIDIA_nvtrust@0281730/guest_tools/ppcie-verifier-sdk-cpp/tests/data"
POLICIES = "nvtrust/NVIDIA_nvtrust@0281730/guest_tools/attestation_sdk/tests/policies"
NONCE_931D = bytes.fromhex("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")
RIM_ID = "NV_SWITCH_BIOS_5612_0002_890_9610550001"
#: The genuine BIOS RIM's L4 signer is valid 2026-05-20..2028-05-19.
PIN_GENUINE = datetime(2026, 7, 1, tzinfo=UTC)
#: The broken RIMs' signers (LS10 L4 2024-05-20..2026-05-20, HCC L4 2023-12-13..2025-12-12).
PIN_BROKEN = datetime(2025, 7, 1, tzinfo=UTC)
#: Token fields NRAS adds and a local verifier does not produce.
TOKEN_FIELDS = {"iss", "iat", "nbf", "exp", "jti"}


def _switch(vectors: Path, report: str = f"{UT}/switchAttestationReport.txt") -> GpuEvidence:
    return GpuEvidence(
        arch="LS10",
        nonce=NONCE_931D,
        report=load_report((vectors / report).read_bytes()),
        certificate_chain=(vectors / f"{SAD}/switch/switchCertChain.txt").read_bytes(),
    )


def _rim(vectors: Path, name: str = f"switchVBIOSRim_{RIM_ID}.xml") -> bytes:
    return (vectors / UT / name).read_bytes()


def _nras_switch_claims(vectors: Path) -> dict[str, object]:
    eat = json.loads((vectors / f"{SAD}/switch_detached_eat.json").read_text())
    jwt = eat[1]["SWITCH-0"]
    payload = jwt.split(".")[1]
    claims: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def test_genuine_ls10_passes_every_step_with_nras_claims(vectors: Path) -> None:
    verifier = Verifier.offline(vbios_rim=_rim(vectors), at=PIN_GENUINE)
    verified = verifier.verify_switch([_switch(vectors)], nonce=NONCE_931D)
    assert [r.step for r in verified.steps] == list(SWITCH_STEPS)
    assert all(r.status == "ok" for r in verified.steps)
    assert verified.gpus == ()
    claims = dict(verified.switches[0].claims)
    nras = _nras_switch_claims(vectors)
    # The same claim names and values as NRAS gave, except the token fields, revocation (offline:
    # not-checked) and the BIOS RIM chain's expiry (NRAS used the RIM's previous signature, whose
    # L4 signer expired 2026-05-20; the vector is the re-signed RIM, earliest notAfter 2027-11-02).
    for name, value in nras.items():
        if name in TOKEN_FIELDS:
            continue
        assert name in claims, name
        if name.endswith("-cert-chain"):
            assert isinstance(value, dict)
            ours = claims[name]
            assert isinstance(ours, dict)
            assert ours["x-nvidia-cert-status"] == value["x-nvidia-cert-status"] == "valid"
            assert ours["x-nvidia-cert-ocsp-status"] == "not-checked"
            assert ours["x-nvidia-cert-revocation-reason"] is None
            continue
        assert claims[name] == value, name
    assert claims["x-nvidia-switch-attestation-report-cert-chain"]["x-nvidia-cert-expiration-date"] == (
        "9999-12-31T23:59:59Z"
    )
    assert claims["x-nvidia-switch-bios-rim-cert-chain"]["x-nvidia-cert-expiration-date"] == (
        "2027-11-02T23:59:59Z"
    )
    assert claims["x-ccai-switch-bios-rim-id"] == RIM_ID
    assert claims["x-ccai-switch-pdi"] == "203EB31AD9ED0008"
    assert len(claims["x-ccai-measurements"]["compared"]) == 31
    assert verified.overall_claims["x-nvidia-overall-att-result"] is False  # revocation not checked


def test_nvidia_switch_policies_accept_the_claims(vectors: Path) -> None:
    verifier = Verifier.offline(vbios_rim=_rim(vectors), at=PIN_GENUINE)
    verified = verifier.verify_switch([_switch(vectors)], nonce=NONCE_931D, claims_version="2.0")
    v3 = load_nvidia_policy((vectors / f"{POLICIES}/remote/v3/NVSwitchRemotePolicyExample.json").read_bytes())
    # NVIDIA's v3 (claims 2.0) switch policy over the switch claims (its overall part needs
    # x-nvidia-overall-att-result, false offline without OCSP: judged separately below).
    failures = v3.evaluate(
        Appraisal(
            overall={"x-nvidia-overall-att-result": True, "x-nvidia-ver": "2.0"},
            gpus=tuple(s.claims for s in verified.switches),
        )
    )
    assert failures == ()


def test_invalid_signature_report_fails_at_the_signature_step(vectors: Path) -> None:
    verifier = Verifier.offline(vbios_rim=_rim(vectors), at=PIN_GENUINE)
    bad = _switch(vectors, f"{SAD}/switch/switchAttestationReportInvalidSignature.txt")
    with pytest.raises(SignatureError) as info:
        verifier.verify_switch([bad], nonce=NONCE_931D)
    assert info.value.step == STEP_SIGNATURE
    assert "SWITCH-0" in info.value.message
    assert [r.status for r in info.value.steps][:2] == ["ok", "failed"]


def test_wrong_nonce_fails_at_the_nonce_step(vectors: Path) -> None:
    verifier = Verifier.offline(vbios_rim=_rim(vectors), at=PIN_GENUINE)
    with pytest.raises(NonceMismatch) as info:
        verifier.verify_switch([_switch(vectors)], nonce=bytes(32))
    assert info.value.step == STEP_NONCE


@pytest.mark.parametrize(
    "rim",
    [
        f"sample_rims/{RIM_ID}_invalid_signature.xml",  # LS10 RIM with a broken digest
        f"sample_rims/{RIM_ID}_measurement_mismatch.xml",  # GH100 VBIOS content relabelled
    ],
)
def test_broken_and_relabelled_rims_are_rejected(vectors: Path, rim: str) -> None:
    verifier = Verifier.offline(vbios_rim=_rim(vectors, rim), at=PIN_BROKEN)
    with pytest.raises(SignatureError) as info:
        verifier.verify_switch([_switch(vectors)], nonce=NONCE_931D)
    assert info.value.step == STEP_RIM_AUTH
    assert "XMLDSig" in info.value.message


def test_gpu_evidence_is_not_switch_evidence(vectors: Path) -> None:
    items = parse_evidence_json((vectors / f"{EVID}/hopper_evidence.json").read_bytes())
    verifier = Verifier.offline(at=PIN_GENUINE)
    with pytest.raises(UnsupportedEvidence):
        verifier.verify_switch(items, nonce=items[0].nonce)


@pytest.mark.parametrize(
    ("path", "count"),
    [
        (f"{EVID}/switch_evidence_ls10.json", 1),
        (f"{EVID}/multi_switch_ls10.json", 4),
        (f"{PPCIE}/switch_evidence.json", 4),
    ],
)
def test_real_multi_switch_evidence_authenticates(vectors: Path, path: str, count: int) -> None:
    items = parse_evidence_json((vectors / path).read_bytes())
    assert len(items) == count
    verifier = Verifier.offline(at=PIN_GENUINE)
    authenticated = verifier.authenticate_switch(items, nonce=items[0].nonce)
    assert len(authenticated) == count
    assert all(a.report.opaque_data.device_pdi is not None for a in authenticated)


@pytest.mark.parametrize(
    ("path", "count"), [(f"{EVID}/multi_gpu_hopper.json", 4), (f"{PPCIE}/gpu_evidence.json", 8)]
)
def test_real_ppcie_gpu_evidence_authenticates(vectors: Path, path: str, count: int) -> None:
    items = parse_evidence_json((vectors / path).read_bytes())
    authenticated = Verifier.offline(at=PIN_GENUINE).authenticate_gpu(items, nonce=items[0].nonce)
    assert len(authenticated) == count
    for a in authenticated:
        assert a.report.opaque_data.feature_flag == 2
        assert a.report.opaque_data.protected_pcie_status == 0xAA


def test_real_hgx_topology_is_consistent(vectors: Path) -> None:
    """The 8 GPUs and 4 switches of NVIDIA's PPCIe test HGX: every GPU links to the 4 switches."""
    from ccai.verify import PpcieTopology

    gpus = parse_evidence_json((vectors / f"{PPCIE}/gpu_evidence.json").read_bytes())
    switches = parse_evidence_json((vectors / f"{PPCIE}/switch_evidence.json").read_bytes())
    verifier = Verifier.offline(at=PIN_GENUINE)
    authenticated_gpus = verifier.authenticate_gpu(gpus, nonce=gpus[0].nonce)
    authenticated_switches = verifier.authenticate_switch(switches, nonce=switches[0].nonce)
    gpu_claims = tuple(
        {
            "x-nvidia-gpu-switch-pdis": sorted(
                {p[::-1].hex().upper() for p in a.report.opaque_data.switch_pdis or ()}
            )
        }
        for a in authenticated_gpus
    )
    switch_claims = tuple(
        {
            "x-ccai-switch-pdi": (a.report.opaque_data.device_pdi or b"").hex().upper(),
            "x-ccai-switch-gpu-pdis": sorted(
                {p.hex().upper() for p in a.report.opaque_data.switch_gpu_pdis or ()}
            ),
        }
        for a in authenticated_switches
    )
    appraisal = Appraisal(overall={}, gpus=gpu_claims, switches=switch_claims)
    assert PpcieTopology(gpus=8, switches=4).evaluate(appraisal) == ()
    assert PpcieTopology(gpus=8, switches=4).evaluate(
        Appraisal(overall={}, gpus=gpu_claims, switches=switch_claims[:3])
    )
