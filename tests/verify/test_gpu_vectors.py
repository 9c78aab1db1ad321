"""GPU verification on NVIDIA's real vectors, offline, at the pinned times of PROVENANCE.md."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccai.collateral import GpuCollateral
from ccai.errors import (
    CertificateExpired,
    ChainError,
    CollateralUnavailable,
    EvidenceError,
    MeasurementMismatch,
    NonceMismatch,
    PolicyViolation,
    RimMismatch,
    SignatureError,
    VerificationError,
)
from ccai.evidence import GpuEvidence, load_report, parse_attestation_report, parse_rim
from ccai.verify import (
    GPU_STEPS,
    UnsafeAcceptAnything,
    default_policy,
    nvidia_gpu_anchors,
    verify_gpu_evidence,
)
from ccai.verify._gpu import STEP_CHAIN, STEP_NONCE, STEP_RIM_AUTH, STEP_RIM_SELECT, STEP_SIGNATURE
from ccai.verify._measurements import compare_measurements
from ccai.verify._rim_check import check_rim

NVT0 = "nvtrust/NVIDIA_nvtrust@0ab869a/guest_tools/gpu_verifiers/local_gpu_verifier/src/verifier/samples"
NVT = "nvtrust/NVIDIA_nvtrust@0281730/guest_tools/gpu_verifiers/local_gpu_verifier/src/verifier/samples"
UT = "nvtrust/NVIDIA_attestation-sdk@73c032e/nv-attestation-sdk-cpp/unit-tests/testdata"
SAD = f"{UT}/sample_attestation_data"
TRU = "nvtrust/confidential-containers_trustee@b28d3fe/deps/verifier/test_data/nvidia"

NONCE_4CFF = bytes.fromhex("4cff7f5380ead8fad8ec2c531c110aca4302a88f603792801a8ca29ee151af2e")
NONCE_931D = bytes.fromhex("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")
PIN_2024 = datetime(2024, 6, 1, tzinfo=UTC)
PIN_2025 = datetime(2025, 6, 1, tzinfo=UTC)
DRIVER_545 = "NV_GPU_DRIVER_GH100_545.00"
VBIOS_5E01 = "NV_GPU_VBIOS_1010_0200_882_96005E0001"
OFFLINE = default_policy(allow_unchecked_revocation=True)


def _evidence(vectors: Path, report: str, chain: str, *, arch: str = "HOPPER", nonce: bytes) -> GpuEvidence:
    return GpuEvidence(
        arch=arch,
        nonce=nonce,
        report=load_report((vectors / report).read_bytes()),
        certificate_chain=(vectors / chain).read_bytes(),
    )


@pytest.fixture
def h100_2023(vectors: Path) -> GpuEvidence:
    return _evidence(vectors, f"{NVT0}/attestationReport.txt", f"{NVT0}/gpuAkCertChain.txt", nonce=NONCE_4CFF)


@pytest.fixture
def test_rims(vectors: Path) -> GpuCollateral:
    return GpuCollateral(
        rims={
            DRIVER_545: (vectors / NVT / "Driver_RIM_test_no_gpu.swidtag").read_bytes(),
            VBIOS_5E01: (vectors / NVT / "1010_0200_882_96005E0001_test_no_gpu.swidtag").read_bytes(),
        },
        ocsp_checked=False,
    )


def test_h100_2023_with_its_test_rims_passes_every_step(
    h100_2023: GpuEvidence, test_rims: GpuCollateral
) -> None:
    verified = verify_gpu_evidence(
        [h100_2023], nonce=NONCE_4CFF, collateral=test_rims, now=PIN_2024, policy=OFFLINE
    )
    claims = verified.gpus[0].claims
    assert claims["measres"] == "success"
    assert claims["x-nvidia-mismatch-measurement-records"] is None
    assert claims["secboot"] is True and claims["dbgstat"] == "disabled"
    assert claims["x-nvidia-gpu-driver-version"] == "545.00"
    assert claims["x-nvidia-gpu-vbios-version"] == "96.00.5E.00.01"
    assert claims["hwmodel"] == "GH100 A01 GSP BROM"
    assert claims["oemid"] == "5703"
    assert claims["eat_nonce"] == NONCE_4CFF.hex()
    assert claims["x-nvidia-gpu-attestation-report-cert-chain"]["x-nvidia-cert-expiration-date"] == (
        "9999-12-31T23:59:59Z"
    )
    assert (
        claims["x-nvidia-gpu-driver-rim-cert-chain"]["x-nvidia-cert-expiration-date"]
        == "2025-06-26T06:10:12Z"
    )
    # Revocation was not fetched: said so, never "good".
    assert claims["x-nvidia-gpu-driver-rim-cert-chain"]["x-nvidia-cert-ocsp-status"] == "not-checked"
    assert claims["x-ccai-measurements"]["skipped"] == [35]  # NVDEC0 disabled (0x55)
    assert claims["x-ccai-simulated"] is False and verified.simulated is False
    assert verified.overall_claims["x-nvidia-overall-att-result"] is False  # OCSP not good
    assert verified.verified_at == PIN_2024


def test_claims_2_0(h100_2023: GpuEvidence, test_rims: GpuCollateral) -> None:
    verified = verify_gpu_evidence(
        [h100_2023],
        nonce=NONCE_4CFF,
        collateral=test_rims,
        now=PIN_2024,
        policy=OFFLINE,
        claims_version="2.0",
    )
    claims = verified.gpus[0].claims
    assert claims["x-nvidia-gpu-attestation-report-cert-chain-validated"] is True
    assert "x-nvidia-gpu-attestation-report-cert-chain" not in claims
    assert verified.overall_claims["x-nvidia-ver"] == "2.0"


def test_revocation_not_checked_fails_the_default_policy(
    h100_2023: GpuEvidence, test_rims: GpuCollateral
) -> None:
    with pytest.raises(CollateralUnavailable, match="OCSP status is 'not-checked'"):
        verify_gpu_evidence([h100_2023], nonce=NONCE_4CFF, collateral=test_rims, now=PIN_2024)


def test_rim_signer_expired_after_pinned_window(h100_2023: GpuEvidence, test_rims: GpuCollateral) -> None:
    with pytest.raises(CertificateExpired, match="expired") as info:
        verify_gpu_evidence(
            [h100_2023],
            nonce=NONCE_4CFF,
            collateral=test_rims,
            now=datetime(2025, 7, 1, tzinfo=UTC),
            policy=OFFLINE,
        )
    assert info.value.step == STEP_RIM_AUTH and info.value.index == 0
    assert "HCC RIM L4 Signer" in info.value.message


def test_different_nonce_is_a_nonce_mismatch(h100_2023: GpuEvidence, test_rims: GpuCollateral) -> None:
    other = bytes(32)
    with pytest.raises(NonceMismatch) as info:
        verify_gpu_evidence([h100_2023], nonce=other, collateral=test_rims, now=PIN_2024, policy=OFFLINE)
    assert info.value.step == STEP_NONCE
    assert info.value.expected == other.hex() and info.value.actual == NONCE_4CFF.hex()


def test_flipped_byte_anywhere_in_signed_region_is_a_signature_error(
    h100_2023: GpuEvidence, test_rims: GpuCollateral
) -> None:
    raw = h100_2023.report
    offsets = [*range(0, len(raw) - 96, 3), len(raw) - 97, *range(len(raw) - 96, len(raw), 5)]
    for offset in offsets:
        mutated = bytearray(raw)
        mutated[offset] ^= 0x01
        item = GpuEvidence(
            arch="HOPPER",
            nonce=NONCE_4CFF,
            report=bytes(mutated),
            certificate_chain=h100_2023.certificate_chain,
        )
        with pytest.raises(SignatureError) as info:
            verify_gpu_evidence([item], nonce=NONCE_4CFF, collateral=test_rims, now=PIN_2024, policy=OFFLINE)
        assert info.value.step == STEP_SIGNATURE, offset


def test_prod_vbios_rim_yields_mismatch_records(vectors: Path, h100_2023: GpuEvidence) -> None:
    collateral = GpuCollateral(
        rims={
            DRIVER_545: (vectors / NVT / "Driver_RIM_test_no_gpu.swidtag").read_bytes(),
            VBIOS_5E01: (vectors / NVT / "1010_0200_882_96005E0001_PROD.swidtag").read_bytes(),
        },
        ocsp_checked=False,
    )
    with pytest.raises(MeasurementMismatch, match=r"indices \[1, 2, 3, 9\]") as info:
        verify_gpu_evidence(
            [h100_2023], nonce=NONCE_4CFF, collateral=collateral, now=PIN_2024, policy=OFFLINE
        )
    assert info.value.step == "(9) measurements"
    # The error names the first mismatching index with its golden and runtime values.
    assert info.value.index == "GPU-0 measurement index 1"
    assert info.value.expected and info.value.actual and info.value.expected != info.value.actual

    # Allowing exactly those indices (and stating the CC mode) accepts it, with the records kept.
    relaxed = default_policy(allow_unchecked_revocation=True, allowed_mismatch_indices=[1, 2, 3, 9])
    verified = verify_gpu_evidence(
        [h100_2023],
        nonce=NONCE_4CFF,
        collateral=collateral,
        now=PIN_2024,
        policy=relaxed,
        reported_cc_mode="on",
    )
    claims = verified.gpus[0].claims
    records = claims["x-nvidia-mismatch-measurement-records"]
    assert [r["index"] for r in records] == [1, 2, 3, 9]
    assert {r["measurementSource"] for r in records} == {"Firmware"}
    assert all(r["goldenSize"] == 48 == r["runtimeSize"] for r in records)
    assert claims["measres"] == "fail" and claims["secboot"] is None and claims["dbgstat"] is None

    # Without a reported CC mode, mismatching measurements cannot rule DevTools out.
    with pytest.raises(PolicyViolation, match="CC mode was not reported"):
        verify_gpu_evidence(
            [h100_2023], nonce=NONCE_4CFF, collateral=collateral, now=PIN_2024, policy=relaxed
        )


def test_invalid_signature_report_fails_at_the_signature_step(vectors: Path) -> None:
    item = _evidence(
        vectors,
        f"{SAD}/gpu/hopperAttestationReportInvalidSignature.txt",
        f"{SAD}/gpu/hopperCertChain.txt",
        nonce=NONCE_931D,
    )
    with pytest.raises(SignatureError) as info:
        verify_gpu_evidence([item], nonce=NONCE_931D, collateral=GpuCollateral(), now=PIN_2025)
    assert info.value.step == STEP_SIGNATURE
    assert info.value.message.startswith("GPU-0: ")


def test_trailing_byte_report_is_rejected(vectors: Path) -> None:
    raw = load_report((vectors / TRU / "hopper_coco_report1.txt").read_bytes())
    item = GpuEvidence(
        arch="HOPPER",
        nonce=raw[4:36],
        report=raw,
        certificate_chain=(vectors / TRU / "hopper_coco_certs1.txt").read_bytes(),
    )
    with pytest.raises(SignatureError):
        verify_gpu_evidence([item], nonce=raw[4:36], collateral=GpuCollateral(), now=PIN_2025)


def _passes_chain_fwid_signature(item: GpuEvidence, nonce: bytes, expected_driver_rim: str) -> None:
    """Steps 1–5 pass; the vectors hold no RIMs, so step 6 stops with 'collateral unavailable'."""
    with pytest.raises(CollateralUnavailable) as info:
        verify_gpu_evidence([item], nonce=nonce, collateral=GpuCollateral(ocsp_checked=False), now=PIN_2025)
    assert info.value.step == STEP_RIM_SELECT
    assert info.value.expected == expected_driver_rim
    assert GPU_STEPS.index(STEP_RIM_SELECT) == 5


def test_hopper_2026_passes_chain_fwid_signature(vectors: Path) -> None:
    nonce = bytes.fromhex(json.loads((vectors / UT / "spdm_req_parsed_output.json").read_text())["Nonce"][2:])
    item = _evidence(vectors, f"{UT}/hopperAttestationReport.txt", f"{UT}/hopperCertChain.txt", nonce=nonce)
    assert parse_attestation_report(item.report).opaque_data.fwid is not None
    _passes_chain_fwid_signature(item, nonce, "NV_GPU_DRIVER_GH100_580.159.03")


def test_blackwell_gb100_passes_chain_fwid_signature(vectors: Path) -> None:
    item = _evidence(
        vectors,
        f"{SAD}/gpu/blackwellAttestationReport.txt",
        f"{SAD}/gpu/blackwellCertChain.txt",
        arch="BLACKWELL",
        nonce=NONCE_931D,
    )
    _passes_chain_fwid_signature(item, NONCE_931D, "NV_GPU_CC_DRIVER_GB100_575.32")


def test_blackwell_gb202_passes_chain_fwid_signature(vectors: Path) -> None:
    item = _evidence(
        vectors,
        f"{TRU}/blackwellAttestationReport.txt",
        f"{TRU}/blackwell_cert_chain_case1.txt",
        arch="BLACKWELL",
        nonce=NONCE_4CFF,
    )
    _passes_chain_fwid_signature(item, NONCE_4CFF, "NV_GPU_CC_DRIVER_GB202_595.58.03")


def test_fwid_mismatch_between_report_and_other_gpus_chain(vectors: Path) -> None:
    # A GB100 chain with the GB202 report: the signature already fails (another key), proving
    # the report is tied to its own leaf.
    item = _evidence(
        vectors,
        f"{TRU}/blackwellAttestationReport.txt",
        f"{SAD}/gpu/blackwellCertChain.txt",
        arch="BLACKWELL",
        nonce=NONCE_4CFF,
    )
    with pytest.raises(SignatureError):
        verify_gpu_evidence([item], nonce=NONCE_4CFF, collateral=GpuCollateral(), now=PIN_2025)


def test_multi_gpu_ppcie_evidence_passes_first_steps(vectors: Path) -> None:
    from ccai.evidence import parse_evidence_json

    items = parse_evidence_json(
        (
            vectors
            / "nvtrust/NVIDIA_attestation-sdk@73c032e/common-test-data/serialized_test_evidence"
            / "multi_gpu_hopper.json"
        ).read_bytes()
    )
    with pytest.raises(CollateralUnavailable) as info:
        verify_gpu_evidence(
            items, nonce=items[0].nonce, collateral=GpuCollateral(ocsp_checked=False), now=PIN_2025
        )
    assert info.value.message.startswith("GPU-0: ") and info.value.step == STEP_RIM_SELECT


def test_chain_to_a_foreign_root_is_rejected(vectors: Path, h100_2023: GpuEvidence) -> None:
    # Replace the chain by the LS10 switch chain: it leads to the NVIDIA root but its leaf did
    # not sign this report.
    switch = GpuEvidence(
        arch="HOPPER",
        nonce=NONCE_4CFF,
        report=h100_2023.report,
        certificate_chain=(vectors / UT / "switchCertChain.txt").read_bytes(),
    )
    with pytest.raises(SignatureError):
        verify_gpu_evidence([switch], nonce=NONCE_4CFF, collateral=GpuCollateral(), now=PIN_2024)
    # A chain that stops short of the pinned root (only the leaf) does not validate.
    pem = h100_2023.certificate_chain
    leaf_only = pem[: pem.index(b"-----END CERTIFICATE-----") + 25]
    short = GpuEvidence(arch="HOPPER", nonce=NONCE_4CFF, report=h100_2023.report, certificate_chain=leaf_only)
    with pytest.raises(ChainError) as info:
        verify_gpu_evidence([short], nonce=NONCE_4CFF, collateral=GpuCollateral(), now=PIN_2024)
    assert info.value.step == STEP_CHAIN


# -- RIMs ----------------------------------------------------------------------------------------


def _check(vectors: Path, path: str, now: datetime) -> object:
    return check_rim(
        "test",
        (vectors / path).read_bytes(),
        anchors=[nvidia_gpu_anchors()],
        now=now,
        step=STEP_RIM_AUTH,
        what=path,
    )


def test_rim_with_bad_signature_is_rejected(vectors: Path) -> None:
    with pytest.raises(SignatureError, match="XMLDSig does not verify"):
        _check(vectors, f"{UT}/incorrect_signature_driver_rim.xml", PIN_2025)


def test_rim_signed_under_the_debug_root_is_rejected(vectors: Path) -> None:
    with pytest.raises(ChainError, match="not at a pinned RIM root") as info:
        _check(vectors, f"{UT}/incorrect_cert_chain_driver_rim.xml", PIN_2025)
    assert "Debug" in str(info.value.actual)


def test_expired_rim_scenario_reports_expired(vectors: Path) -> None:
    with pytest.raises(CertificateExpired, match="'RIM L4 Signer' is expired"):
        _check(vectors, f"{UT}/sample_rims/NV_GPU_DRIVER_GH100_570.124.03_expired.xml", PIN_2025)


def test_expired_rim_in_the_pipeline(vectors: Path) -> None:
    item = _evidence(
        vectors,
        f"{SAD}/gpu/hopperAttestationReportExpired.txt",
        f"{SAD}/gpu/hopperCertChainExpired.txt",
        nonce=NONCE_931D,
    )
    collateral = GpuCollateral(
        rims={
            "NV_GPU_DRIVER_GH100_570.124.03": (
                vectors / UT / "sample_rims/NV_GPU_DRIVER_GH100_570.124.03_expired.xml"
            ).read_bytes(),
            "NV_GPU_VBIOS_1010_0205_862_96005E0004": (
                vectors / NVT / "1010_0205_862_96005E0004_PROD.swidtag"
            ).read_bytes(),
        },
        ocsp_checked=False,
    )
    with pytest.raises(CertificateExpired) as info:
        verify_gpu_evidence([item], nonce=NONCE_931D, collateral=collateral, now=PIN_2025, policy=OFFLINE)
    assert info.value.step == STEP_RIM_AUTH


def test_genuine_rims_verify_at_pinned_times(vectors: Path) -> None:
    assert _check(vectors, f"{UT}/NV_GPU_DRIVER_GH100_550.144.03.xml", PIN_2025) is not None
    for path in sorted((vectors / NVT).glob("*_PROD.swidtag")):
        _check(vectors, str(path.relative_to(vectors)), PIN_2024)


def test_wrong_rim_root_is_not_trusted(vectors: Path) -> None:
    from cryptography import x509

    from ccai.verify import GpuTrustAnchors

    wrong = x509.load_pem_x509_certificate((vectors / UT / "incorrect_rim_root.crt").read_bytes())
    anchors = GpuTrustAnchors(
        device_roots=nvidia_gpu_anchors().device_roots, rim_roots=(wrong,), name="wrong"
    )
    with pytest.raises(ChainError):
        check_rim(
            "x",
            (vectors / UT / "NV_GPU_DRIVER_GH100_550.144.03.xml").read_bytes(),
            anchors=[anchors],
            now=PIN_2025,
            step=STEP_RIM_AUTH,
            what="rim",
        )


def test_signed_vbios_mismatch_rim_differs_at_index_9(vectors: Path) -> None:
    # NVAT's scenario: report 535.86.09 with the signed VBIOS "measurement mismatch" RIM and the
    # tampered driver RIM read without its (broken) signature.
    report = parse_attestation_report(
        load_report((vectors / SAD / "gpu/hopperAttestationReport.txt").read_bytes())
    )
    vbios = check_rim(
        "vbios",
        (
            vectors / UT / "sample_rims/NV_GPU_VBIOS_1010_0200_882_96005E0001_measurement_mismatch.xml"
        ).read_bytes(),
        anchors=[nvidia_gpu_anchors()],
        now=PIN_2025,
        step=STEP_RIM_AUTH,
        what="vbios",
    )
    driver = parse_rim(
        (vectors / UT / "sample_rims/NV_GPU_DRIVER_GH100_535.86.09_measurement_mismatch.xml").read_bytes()
    )
    comparison = compare_measurements(report, driver_rim=driver, vbios_rim=vbios.rim)
    firmware = [r.index for r in comparison.mismatches if r.source == "Firmware"]
    assert firmware == [9]
    prod = parse_rim((vectors / NVT / "1010_0200_882_96005E0001_PROD.swidtag").read_bytes())
    assert [
        r.index
        for r in compare_measurements(report, driver_rim=driver, vbios_rim=prod).mismatches
        if r.source == "Firmware"
    ] == []


def test_index_conflict_between_rims_is_refused(vectors: Path, h100_2023: GpuEvidence) -> None:
    vbios = parse_rim((vectors / NVT / "1010_0200_882_96005E0001_test_no_gpu.swidtag").read_bytes())
    report = parse_attestation_report(h100_2023.report)
    with pytest.raises(RimMismatch, match="active in both"):
        compare_measurements(report, driver_rim=vbios, vbios_rim=vbios)


def test_version_mismatch_between_rim_and_report(vectors: Path, h100_2023: GpuEvidence) -> None:
    # The 550.144.03 driver RIM offered under the id the 545.00 report selects.
    collateral = GpuCollateral(
        rims={
            DRIVER_545: (vectors / UT / "NV_GPU_DRIVER_GH100_550.144.03.xml").read_bytes(),
            VBIOS_5E01: (vectors / NVT / "1010_0200_882_96005E0001_test_no_gpu.swidtag").read_bytes(),
        },
        ocsp_checked=False,
    )
    with pytest.raises(RimMismatch, match=r"version 550\.144\.03") as info:
        verify_gpu_evidence(
            [h100_2023], nonce=NONCE_4CFF, collateral=collateral, now=PIN_2025, policy=UnsafeAcceptAnything()
        )
    assert info.value.expected == "545.00"


def test_nvidia_example_policies_on_real_vector_claims(
    vectors: Path, h100_2023: GpuEvidence, test_rims: GpuCollateral
) -> None:
    from ccai.verify import AllOf, load_nvidia_policy

    sdk = vectors / "nvtrust/NVIDIA_nvtrust@0281730/guest_tools/attestation_sdk/tests/policies"
    v2 = load_nvidia_policy(sdk / "local/NVGPULocalPolicyExample.json")
    # Claims 2.0 of the matching real vector satisfy NVIDIA's own 2.0 policy (iss is a token claim).
    verify_gpu_evidence(
        [h100_2023],
        nonce=NONCE_4CFF,
        collateral=test_rims,
        now=PIN_2024,
        claims_version="2.0",
        policy=AllOf(policies=(OFFLINE, v2)),
    )
    # The claims-3.0 policy demands OCSP "good" on every chain: offline it is "not-checked".
    v4 = load_nvidia_policy(sdk / "local/NVGPULocalv4PolicyExample.json")
    with pytest.raises(PolicyViolation, match="x-nvidia-overall-att-result"):
        verify_gpu_evidence([h100_2023], nonce=NONCE_4CFF, collateral=test_rims, now=PIN_2024, policy=v4)


def test_fwid_of_another_gpus_leaf_is_a_fwid_mismatch(vectors: Path) -> None:
    from ccai.errors import FwidMismatch
    from ccai.evidence import parse_cert_chain
    from ccai.verify._gpu import STEP_FWID, _fwid_step

    # The GB202 report's FWID against the GB100 leaf (Blackwell encoding) and an H100 leaf (Hopper).
    raw = load_report((vectors / TRU / "blackwellAttestationReport.txt").read_bytes())
    for chain in (f"{SAD}/gpu/blackwellCertChain.txt", f"{UT}/hopperCertChain.txt"):
        leaf = parse_cert_chain((vectors / chain).read_bytes())[0]
        with pytest.raises(FwidMismatch) as info:
            _fwid_step(raw, leaf)
        assert info.value.step == STEP_FWID and info.value.expected != info.value.actual


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=5000), cut=st.integers(min_value=0, max_value=4049))
def test_arbitrary_report_bytes_raise_only_evidence_or_verification_errors(
    h100_2023: GpuEvidence, test_rims: GpuCollateral, data: bytes, cut: int
) -> None:
    for report in (data, h100_2023.report[:cut] + data):
        if report == h100_2023.report:
            continue  # cut past the end and no data: the genuine report, which verifies
        item = GpuEvidence(
            arch="HOPPER", nonce=NONCE_4CFF, report=report, certificate_chain=h100_2023.certificate_chain
        )
        with pytest.raises((EvidenceError, VerificationError)):
            verify_gpu_evidence([item], nonce=NONCE_4CFF, collateral=test_rims, now=PIN_2024, policy=OFFLINE)


def test_pinned_anchors_match_nvidias_files_and_fingerprints(vectors: Path) -> None:
    from cryptography import x509

    from ccai.verify import NVIDIA_CORIM_ROOT_SHA256, NVIDIA_DEVICE_ROOT_SHA256
    from ccai.verify._anchors import certificate_sha256

    anchors = nvidia_gpu_anchors()
    certs = "nvtrust/NVIDIA_nvtrust@0281730/guest_tools/gpu_verifiers/local_gpu_verifier/src/verifier/certs"
    device = x509.load_pem_x509_certificate((vectors / certs / "verifier_device_root.pem").read_bytes())
    rim = x509.load_pem_x509_certificate((vectors / certs / "verifier_RIM_root.pem").read_bytes())
    assert anchors.device_roots == (device,) and anchors.rim_roots == (rim,)
    assert certificate_sha256(device) == NVIDIA_DEVICE_ROOT_SHA256
    assert certificate_sha256(rim) == NVIDIA_CORIM_ROOT_SHA256
    assert anchors.simulated is False
