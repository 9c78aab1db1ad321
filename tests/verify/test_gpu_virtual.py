"""GPU verification end to end on the virtual CC GPU, with the dev collateral server's real OCSP responder."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccai._time import utcnow
from ccai.collateral import GpuCollateral, default_gpu_source, gather_gpu_collateral
from ccai.device import Architecture, CcMode
from ccai.errors import (
    CertificateExpired,
    CertificateRevoked,
    ChainError,
    MeasurementMismatch,
    NonceMismatch,
    PolicyViolation,
    SignatureError,
    SimulatedEvidenceRejected,
    UsageError,
)
from ccai.evidence import GpuEvidence
from ccai.verify import (
    RevocationGood,
    TrustAnchors,
    default_policy,
    verify_gpu_evidence,
)
from ccai.verify._gpu import STEP_CHAIN, STEP_NONCE, STEP_SIGNATURE
from ccai.virtual import (
    VirtualFault,
    VirtualGpuBackend,
    create_dev_collateral_app,
    run_in_background,
    settings_for_virtual_gpu,
)


def _anchors(backend: VirtualGpuBackend) -> TrustAnchors:
    roots = backend.trust_anchors()
    return TrustAnchors.simulated_test_pki(
        gpu_device_root=roots.device_root_pem, gpu_rim_root=roots.rim_root_pem
    )


def _collect(backend: VirtualGpuBackend, nonce: bytes) -> list[GpuEvidence]:
    arch = backend.status().gpus[0].architecture
    return [
        GpuEvidence(
            arch=arch.value.upper(),
            nonce=nonce,
            report=backend.attestation_report(i, nonce),
            certificate_chain=backend.certificate_chain(i),
        )
        for i in range(backend.gpu_count)
    ]


def _offline_collateral(backend: VirtualGpuBackend) -> GpuCollateral:
    driver_id, vbios_id = backend.rim_ids(0)
    return GpuCollateral(rims={i: backend.rim(i) for i in (driver_id, vbios_id)}, ocsp_checked=False)


OFFLINE = default_policy(allow_unchecked_revocation=True)


@pytest.mark.parametrize(
    ("architecture", "chip"),
    [(Architecture.HOPPER, None), (Architecture.BLACKWELL, "GB100"), (Architecture.BLACKWELL, "GB202")],
)
def test_genuine_virtual_gpus_pass(architecture: Architecture, chip: str | None) -> None:
    backend = VirtualGpuBackend.create(gpus=2, architecture=architecture, chip=chip)
    nonce = secrets.token_bytes(32)
    verified = verify_gpu_evidence(
        _collect(backend, nonce),
        nonce=nonce,
        collateral=_offline_collateral(backend),
        now=utcnow(),
        policy=OFFLINE,
        allow_simulated=True,
        anchors=_anchors(backend),
        reported_cc_mode="on",
    )
    assert verified.simulated is True
    assert [g.claims["measres"] for g in verified.gpus] == ["success", "success"]
    assert all(g.claims["x-ccai-simulated"] is True for g in verified.gpus)
    assert verified.overall_claims["x-ccai-simulated"] is True


def test_simulated_evidence_is_rejected_without_allow_simulated() -> None:
    backend = VirtualGpuBackend.create()
    nonce = secrets.token_bytes(32)
    items = _collect(backend, nonce)
    collateral = _offline_collateral(backend)
    # Not even told about the test PKI: recognised by name, still rejected.
    with pytest.raises(SimulatedEvidenceRejected) as info:
        verify_gpu_evidence(items, nonce=nonce, collateral=collateral, now=utcnow(), policy=OFFLINE)
    assert info.value.step == STEP_CHAIN
    # Told about it, but simulation not allowed.
    with pytest.raises(SimulatedEvidenceRejected):
        verify_gpu_evidence(
            items,
            nonce=nonce,
            collateral=collateral,
            now=utcnow(),
            policy=OFFLINE,
            anchors=_anchors(backend),
        )
    with pytest.raises(UsageError):
        verify_gpu_evidence(items, nonce=nonce, collateral=collateral, now=utcnow(), allow_simulated=True)


@pytest.mark.parametrize(
    ("fault", "error", "step"),
    [
        (VirtualFault.WRONG_NONCE, NonceMismatch, STEP_NONCE),
        (VirtualFault.CORRUPT_SIGNATURE, SignatureError, STEP_SIGNATURE),
        (VirtualFault.EXPIRED_CERTIFICATE, CertificateExpired, STEP_CHAIN),
        (VirtualFault.MEASUREMENT_DRIFT, MeasurementMismatch, "(9) measurements"),
    ],
)
def test_each_fault_gives_its_error(fault: VirtualFault, error: type[Exception], step: str) -> None:
    backend = VirtualGpuBackend.create()
    backend.inject_fault(fault)
    nonce = secrets.token_bytes(32)
    with pytest.raises(error) as info:  # type: ignore[call-overload]
        verify_gpu_evidence(
            _collect(backend, nonce),
            nonce=nonce,
            collateral=_offline_collateral(backend),
            now=utcnow(),
            policy=OFFLINE,
            allow_simulated=True,
            anchors=_anchors(backend),
            reported_cc_mode="on",
        )
    assert info.value.step == step


def test_measurement_drift_is_tolerated_only_at_its_index() -> None:
    backend = VirtualGpuBackend.create()
    backend.inject_fault(VirtualFault.MEASUREMENT_DRIFT)
    nonce = secrets.token_bytes(32)
    kwargs = {
        "nonce": nonce,
        "collateral": _offline_collateral(backend),
        "now": utcnow(),
        "allow_simulated": True,
        "anchors": _anchors(backend),
        "reported_cc_mode": "on",
    }
    items = _collect(backend, nonce)
    verified = verify_gpu_evidence(
        items, policy=default_policy(allow_unchecked_revocation=True, allowed_mismatch_indices=[9]), **kwargs
    )
    assert [r["index"] for r in verified.gpus[0].claims["x-nvidia-mismatch-measurement-records"]] == [9]
    with pytest.raises(MeasurementMismatch, match=r"indices \[9\]"):
        verify_gpu_evidence(
            items,
            policy=default_policy(allow_unchecked_revocation=True, allowed_mismatch_indices=[8]),
            **kwargs,
        )


def test_devtools_fails_measurements_and_policy_even_when_relaxed() -> None:
    backend = VirtualGpuBackend.create(mode=CcMode.DEVTOOLS)
    nonce = secrets.token_bytes(32)
    items = _collect(backend, nonce)
    common = {
        "nonce": nonce,
        "collateral": _offline_collateral(backend),
        "now": utcnow(),
        "allow_simulated": True,
        "anchors": _anchors(backend),
    }
    # Default policy: the DevTools-measured indices mismatch.
    with pytest.raises(MeasurementMismatch) as info:
        verify_gpu_evidence(items, policy=OFFLINE, reported_cc_mode="devtools", **common)
    assert "indices [1, 26]" in info.value.message
    # Measurements relaxed to exactly those indices: DevTools still fails the policy,
    # whether the platform reports the mode or not.
    relaxed = default_policy(allow_unchecked_revocation=True, allowed_mismatch_indices=[1, 26])
    with pytest.raises(PolicyViolation, match="DevTools mode"):
        verify_gpu_evidence(items, policy=relaxed, reported_cc_mode="devtools", **common)
    with pytest.raises(PolicyViolation, match="not reported"):
        verify_gpu_evidence(items, policy=relaxed, **common)


@pytest.fixture
def revoked_backend() -> VirtualGpuBackend:
    backend = VirtualGpuBackend.create()
    backend.inject_fault(VirtualFault.REVOKED_CERTIFICATE)
    return VirtualGpuBackend.open(backend.home)


@pytest.fixture
def revoked_server(revoked_backend: VirtualGpuBackend) -> Iterator[str]:
    pytest.importorskip("fastapi", reason="the dev collateral server needs the [service] extra")
    with run_in_background(create_dev_collateral_app(settings_for_virtual_gpu(revoked_backend))) as url:
        yield url


def test_revoked_certificate_via_the_real_ocsp_responder(
    revoked_backend: VirtualGpuBackend, revoked_server: str
) -> None:
    nonce = secrets.token_bytes(32)
    items = _collect(revoked_backend, nonce)
    now = utcnow()
    source = default_gpu_source(rim_service_url=revoked_server, ocsp_url=revoked_server)
    collateral = gather_gpu_collateral(items, source, now=now)
    common = {
        "nonce": nonce,
        "collateral": collateral,
        "now": now,
        "allow_simulated": True,
        "anchors": _anchors(revoked_backend),
        "reported_cc_mode": "on",
    }
    with pytest.raises(CertificateRevoked, match="revoked") as info:
        verify_gpu_evidence(items, **common)
    assert info.value.step == "(5) revocation"
    assert "keyCompromise" in info.value.message
    # A policy may tolerate a named reason; the claims still say revoked.
    tolerant = RevocationGood(allow_reasons=frozenset({"keyCompromise"}))
    verified = verify_gpu_evidence(items, policy=tolerant, **common)
    chain = verified.gpus[0].claims["x-nvidia-gpu-attestation-report-cert-chain"]
    assert chain["x-nvidia-cert-ocsp-status"] == "revoked"
    assert chain["x-nvidia-cert-revocation-reason"] == "keyCompromise"
    assert verified.gpus[0].claims["x-nvidia-attestation-warning"]


@pytest.mark.extra("service")  # the dev collateral server
def test_online_collateral_all_good() -> None:
    backend = VirtualGpuBackend.create(gpus=2)
    with run_in_background(create_dev_collateral_app(settings_for_virtual_gpu(backend))) as url:
        nonce = secrets.token_bytes(32)
        items = _collect(backend, nonce)
        now = utcnow()
        collateral = gather_gpu_collateral(
            items, default_gpu_source(rim_service_url=url, ocsp_url=url), now=now
        )
    verified = verify_gpu_evidence(
        items,
        nonce=nonce,
        collateral=collateral,
        now=now,
        allow_simulated=True,
        anchors=_anchors(backend),
        reported_cc_mode="on",
    )
    for gpu in verified.gpus:
        for name in (
            "x-nvidia-gpu-attestation-report-cert-chain",
            "x-nvidia-gpu-driver-rim-cert-chain",
            "x-nvidia-gpu-vbios-rim-cert-chain",
        ):
            assert gpu.claims[name]["x-nvidia-cert-ocsp-status"] == "good"
    assert verified.overall_claims["x-nvidia-overall-att-result"] is True


def test_cached_results_are_not_shared_between_test_pkis(tmp_path: Path) -> None:
    """Regression: caches are keyed by the anchors' fingerprints, not their (equal) names."""
    a = VirtualGpuBackend.create(home=tmp_path / "a", seed="seed A")
    b = VirtualGpuBackend.create(home=tmp_path / "b", seed="seed B")
    nonce = secrets.token_bytes(32)
    items = _collect(a, nonce)
    common = {"nonce": nonce, "collateral": _offline_collateral(a), "now": utcnow(), "policy": OFFLINE}
    verify_gpu_evidence(items, allow_simulated=True, anchors=_anchors(a), reported_cc_mode="on", **common)
    assert _anchors(a).name == _anchors(b).name and _anchors(a).gpu.identity != _anchors(b).gpu.identity  # type: ignore[union-attr]
    with pytest.raises(ChainError):
        verify_gpu_evidence(items, allow_simulated=True, anchors=_anchors(b), reported_cc_mode="on", **common)
