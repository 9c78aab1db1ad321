"""Composite bundles from the virtual confidential VM: they verify, and every swap is caught."""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from ccai.attest import collect_composite, gather_composite_collateral
from ccai.collateral import cpu_collateral_section, embed_collateral
from ccai.errors import (
    BindingError,
    CollateralUnavailable,
    NonceMismatch,
    SimulatedEvidenceRejected,
    UnsupportedEvidence,
    UsageError,
)
from ccai.evidence import (
    BINDING_NONCE_ONLY,
    EvidenceBundle,
    bundle_from_nonce_only_pair,
    composite_report_data,
    derive_gpu_nonce,
    dump_evidence_bundle,
    load_evidence_bundle,
)
from ccai.verify import (
    COMPOSITE_STEPS,
    TrustAnchors,
    Verifier,
    default_composite_policy,
    tdx_rules,
    verify_composite,
)
from ccai.virtual import VirtualCpuTee, VirtualGpuBackend, open_virtual_vm, settings_for_virtual_gpu

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
NONCE = bytes(range(32))


class _InProcessSource:
    """RIMs and OCSP answers straight from the virtual GPU and the dev server's responder."""

    def __init__(self, backend: VirtualGpuBackend) -> None:
        self.backend = backend
        self.responder = settings_for_virtual_gpu(backend, clock=lambda: NOW).responder

    def rim(self, rim_id: str) -> bytes:
        return self.backend.rim(rim_id)

    def ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, *, nonce: bytes | None) -> bytes:
        builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA384())
        if nonce:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        return self.responder.respond(builder.build().public_bytes(Encoding.DER))


def _vm(home: Path, tee: str, gpus: int, seed: str = "vm-a") -> tuple[VirtualCpuTee, VirtualGpuBackend]:
    home.mkdir(parents=True, exist_ok=True)
    return open_virtual_vm(tee=tee, gpus=gpus, home=home, seed=seed)


def _bundle(
    cpu: VirtualCpuTee, gpu: VirtualGpuBackend, *, nonce: bytes = NONCE, tls: bytes | None = None
) -> EvidenceBundle:
    bundle = collect_composite(
        nonce=nonce, cpu=cpu, gpu=gpu, tls_spki_sha256=tls, hpke_public_key=b"\x07" * 32
    )
    coll = gather_composite_collateral(bundle, now=NOW, gpu_source=_InProcessSource(gpu))
    coll = dataclasses.replace(coll, cpu=cpu_collateral_section(cpu.collateral(NOW)))
    # Round trip through the JSON layout: verification sees exactly what a file holds.
    return load_evidence_bundle(dump_evidence_bundle(embed_collateral(bundle, coll)))


def _anchors(cpu: VirtualCpuTee, gpu: VirtualGpuBackend) -> dict[str, TrustAnchors]:
    roots = gpu.trust_anchors()
    tee = cpu.trust_anchors()
    return {
        "anchors": TrustAnchors.simulated_test_pki(
            gpu_device_root=roots.device_root_pem,
            gpu_rim_root=roots.rim_root_pem,
            sgx_root=tee.sgx_root,
            amd_ark=tee.ark,
            amd_ask=tee.ask,
            amd_product=tee.product,
        )
    }


@pytest.mark.parametrize(("tee", "gpus"), [("tdx", 1), ("tdx", 3), ("snp", 1), ("snp", 2)])
def test_virtual_vm_bundle_verifies_only_when_simulation_is_allowed(
    tmp_path: Path, tee: str, gpus: int
) -> None:
    cpu, gpu = _vm(tmp_path / "a", tee, gpus)
    bundle = _bundle(cpu, gpu, tls=hashlib.sha256(b"tls key").digest())
    trace: list[tuple[str, str]] = []
    result = verify_composite(
        bundle, now=NOW, allow_simulated=True, expected_nonce=NONCE, trace=trace, **_anchors(cpu, gpu)
    )  # type: ignore[arg-type]
    assert [s for s, _ in trace] == list(COMPOSITE_STEPS)
    assert result.simulated and len(result.gpus) == gpus
    assert result.cpu_claims is not None and result.cpu_claims["x-ccai-simulated"] is True
    assert result.overall_claims["x-ccai-binding"] == "ccai/composite/v1"
    assert result.overall_claims["x-ccai-cpu-tee"] == tee
    assert result.overall_claims["x-ccai-freshness"] == "checked"
    with pytest.raises(SimulatedEvidenceRejected):
        verify_composite(bundle, now=NOW, expected_nonce=NONCE)


def test_gpu_evidence_from_another_virtual_vm_is_a_binding_error(tmp_path: Path) -> None:
    cpu_a, gpu_a = _vm(tmp_path / "a", "tdx", 2, seed="vm-a")
    cpu_b, gpu_b = _vm(tmp_path / "b", "tdx", 2, seed="vm-b")
    a = _bundle(cpu_a, gpu_a)
    b = _bundle(cpu_b, gpu_b)  # same verifier nonce: the GPU evidence alone is genuine and fresh
    swapped = dataclasses.replace(a, gpus=b.gpus)
    with pytest.raises(BindingError):
        verify_composite(
            swapped, now=NOW, expected_nonce=NONCE, allow_simulated=True, **_anchors(cpu_a, gpu_a)
        )  # type: ignore[arg-type]
    one_swapped = dataclasses.replace(a, gpus=(a.gpus[0], b.gpus[1]))
    with pytest.raises(BindingError):
        verify_composite(
            one_swapped, now=NOW, expected_nonce=NONCE, allow_simulated=True, **_anchors(cpu_a, gpu_a)
        )  # type: ignore[arg-type]
    reordered = dataclasses.replace(a, gpus=(a.gpus[1], a.gpus[0]))
    with pytest.raises(BindingError):
        verify_composite(
            reordered, now=NOW, expected_nonce=NONCE, allow_simulated=True, **_anchors(cpu_a, gpu_a)
        )  # type: ignore[arg-type]


def test_other_keys_and_nonces_are_rejected(tmp_path: Path) -> None:
    cpu, gpu = _vm(tmp_path / "a", "tdx", 1)
    bundle = _bundle(cpu, gpu, tls=hashlib.sha256(b"tls key").digest())
    anchors = _anchors(cpu, gpu)
    for changed in (
        dataclasses.replace(bundle, tls_spki_sha256=hashlib.sha256(b"attacker tls key").digest()),
        dataclasses.replace(bundle, tls_spki_sha256=None),
        dataclasses.replace(bundle, hpke_public_key=b"\x08" * 32),
    ):
        with pytest.raises(BindingError):
            verify_composite(changed, now=NOW, expected_nonce=NONCE, allow_simulated=True, **anchors)  # type: ignore[arg-type]
    with pytest.raises(NonceMismatch):
        verify_composite(bundle, now=NOW, allow_simulated=True, expected_nonce=bytes(32), **anchors)  # type: ignore[arg-type]
    # A relay rewrites the bundle nonce (and the GPU items' nonce field) to the verifier's new one.
    new_nonce = b"\x55" * 32
    relabelled = dataclasses.replace(
        bundle,
        nonce=new_nonce,
        gpus=tuple(dataclasses.replace(g, nonce=derive_gpu_nonce(new_nonce)) for g in bundle.gpus),
    )
    with pytest.raises((BindingError, NonceMismatch)):
        verify_composite(relabelled, now=NOW, allow_simulated=True, expected_nonce=new_nonce, **anchors)  # type: ignore[arg-type]
    with pytest.raises(NonceMismatch):
        verify_composite(
            dataclasses.replace(bundle, nonce=new_nonce),
            now=NOW,
            expected_nonce=new_nonce,
            allow_simulated=True,
            **anchors,
        )  # type: ignore[arg-type]


def test_the_nonce_is_required_unless_freshness_is_skipped_by_name(tmp_path: Path) -> None:
    # Regression: without a nonce a replayed bundle passed, and nothing said freshness was unchecked.
    cpu, gpu = _vm(tmp_path / "a", "tdx", 1)
    bundle = _bundle(cpu, gpu)
    anchors = _anchors(cpu, gpu)
    with pytest.raises(UsageError, match="expected_nonce is required"):
        verify_composite(bundle, now=NOW, allow_simulated=True, **anchors)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="not both"):
        verify_composite(
            bundle, now=NOW, expected_nonce=NONCE, skip_freshness_check=True, allow_simulated=True, **anchors
        )  # type: ignore[arg-type]
    replayed = verify_composite(bundle, now=NOW, skip_freshness_check=True, allow_simulated=True, **anchors)  # type: ignore[arg-type]
    assert replayed.overall_claims["x-ccai-freshness"] == "not-checked"
    assert "freshness NOT checked" in replayed.steps[0].detail
    # The library Verifier refuses the same call before it fetches anything.
    verifier = Verifier(anchors=anchors["anchors"], allow_simulated=True)
    with pytest.raises(UsageError, match="expected_nonce is required"):
        verifier.verify_bundle(bundle, now=NOW)
    again = verifier.verify_bundle(bundle, now=NOW, skip_freshness_check=True)
    assert again.overall_claims["x-ccai-freshness"] == "not-checked"


def test_offline_needs_collateral(tmp_path: Path) -> None:
    cpu, gpu = _vm(tmp_path / "a", "tdx", 1)
    bundle = embed_collateral(_bundle(cpu, gpu), None)
    with pytest.raises(CollateralUnavailable):
        verify_composite(bundle, now=NOW, expected_nonce=NONCE, allow_simulated=True, **_anchors(cpu, gpu))  # type: ignore[arg-type]


def test_report_data_layout_matches_the_documentation(tmp_path: Path) -> None:
    cpu, gpu = _vm(tmp_path / "a", "tdx", 2)
    bundle = collect_composite(nonce=NONCE, cpu=cpu, gpu=gpu, tls_spki_sha256=b"\x01" * 32)
    lp = lambda b: struct.pack(">I", len(b)) + b  # noqa: E731
    gpu_nonce = hashlib.sha256(b"ccai/composite/v1/gpu-nonce\x00" + NONCE).digest()
    assert all(item.nonce == gpu_nonce and item.parse_report().nonce == gpu_nonce for item in bundle.gpus)
    e = hashlib.sha256(
        b"ccai/composite/v1/gpu-evidence\x00"
        + struct.pack(">I", 2)
        + b"".join(lp(g.arch.encode()) + lp(g.report) + lp(g.certificate_chain) for g in bundle.gpus)
    ).digest()
    expected = hashlib.sha512(
        b"ccai/composite/v1/report-data\x00" + NONCE + e + lp(b"\x01" * 32) + lp(b"")
    ).digest()
    assert composite_report_data(NONCE, bundle.gpus, tls_spki_sha256=b"\x01" * 32) == expected
    from ccai.evidence import parse_tdx_quote

    assert bundle.cpu is not None and parse_tdx_quote(bundle.cpu.evidence).body.report_data == expected


def _secretvm(vectors: Path) -> EvidenceBundle:
    base = vectors / "cpu" / "composite" / "secretvm"
    quote = bytes.fromhex("".join((base / "cpu_quote.txt").read_text().split()))
    return bundle_from_nonce_only_pair(quote, (base / "gpu_attest.txt").read_bytes())


def test_real_tdx_h100_pair_checks_under_its_nonce_only_binding(vectors: Path) -> None:
    bundle = _secretvm(vectors)
    now = datetime(2026, 3, 1, tzinfo=UTC)
    signatures_only = default_composite_policy(tdx=tdx_rules(allow_missing_collateral=True))
    with pytest.raises(UnsupportedEvidence):  # never accepted unless selected by name
        verify_composite(bundle, now=now, expected_nonce=bundle.nonce, policy=signatures_only)
    trace: list[tuple[str, str]] = []
    # No RIMs for this driver are public: the GPU part stops at RIM selection, after its chain,
    # signature and nonce (the nonce-only binding) passed.
    with pytest.raises(CollateralUnavailable) as info:
        verify_composite(
            bundle,
            now=now,
            expected_nonce=bundle.nonce,
            scheme=BINDING_NONCE_ONLY,
            policy=signatures_only,
            trace=trace,
        )
    assert [s for s, _ in trace] == list(COMPOSITE_STEPS[:3])
    assert info.value.step == "(6) RIM selection"
    # report_data[32:64] is the nonce: another nonce breaks the binding.
    other = dataclasses.replace(
        bundle, nonce=bytes(32), gpus=tuple(dataclasses.replace(g, nonce=bytes(32)) for g in bundle.gpus)
    )
    with pytest.raises(BindingError):
        verify_composite(
            other, now=now, expected_nonce=other.nonce, scheme=BINDING_NONCE_ONLY, policy=signatures_only
        )
    # report_data[0:32] is the TLS SPKI hash: a claimed key that is not it breaks the binding.
    with pytest.raises(BindingError):
        verify_composite(
            dataclasses.replace(bundle, tls_spki_sha256=bytes(32)),
            now=now,
            expected_nonce=bundle.nonce,
            scheme=BINDING_NONCE_ONLY,
            policy=signatures_only,
        )
