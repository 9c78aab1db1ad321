"""Composite bundles of a protected-PCIe system: the virtual HGX board (8 GPUs, 4 NVSwitches) in a
virtual TDX guest. The CPU report commits to the switch evidence too (the optional ``S`` section of
``ccai/composite/v1``); verification runs the PPCIe checks; policies can require PPCIe."""

from __future__ import annotations

import dataclasses
import hashlib
import json
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
from ccai.device import MultiGpuMode
from ccai.errors import (
    BindingError,
    Error,
    MalformedEvidence,
    MeasurementMismatch,
    NonceMismatch,
    PolicyViolation,
)
from ccai.evidence import (
    EvidenceBundle,
    composite_report_data,
    dump_evidence_bundle,
    load_evidence_bundle,
    parse_tdx_quote,
)
from ccai.verify import (
    COMPOSITE_STEPS,
    TrustAnchors,
    Verifier,
    default_composite_policy,
    load_policy,
    verify_composite,
)
from ccai.virtual import (
    VirtualCpuTee,
    VirtualFault,
    VirtualGpuBackend,
    open_virtual_vm,
    settings_for_virtual_gpu,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
NONCE = bytes(range(32))
POLICY = default_composite_policy(allow_simulated=True, ppcie=True)


class _InProcessSource:
    """RIMs and OCSP answers straight from the virtual hardware and the dev server's responder."""

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


def _hgx_vm(home: Path, seed: str = "hgx-a") -> tuple[VirtualCpuTee, VirtualGpuBackend]:
    home.mkdir(parents=True, exist_ok=True)
    VirtualGpuBackend.create(
        home=home, gpus=8, multi_gpu_mode=MultiGpuMode.PROTECTED_PCIE, switches=4, seed=seed.encode()
    )
    return open_virtual_vm(tee="tdx", gpus=8, home=home)


def _bundle(cpu: VirtualCpuTee, gpu: VirtualGpuBackend, *, switches: bool = True) -> EvidenceBundle:
    bundle = collect_composite(nonce=NONCE, cpu=cpu, gpu=gpu, switches=gpu if switches else None)
    coll = gather_composite_collateral(bundle, now=NOW, gpu_source=_InProcessSource(gpu))
    coll = dataclasses.replace(coll, cpu=cpu_collateral_section(cpu.collateral(NOW)))
    return load_evidence_bundle(dump_evidence_bundle(embed_collateral(bundle, coll)))


def _anchors(cpu: VirtualCpuTee, gpu: VirtualGpuBackend) -> TrustAnchors:
    roots = gpu.trust_anchors()
    return TrustAnchors.simulated_test_pki(
        gpu_device_root=roots.device_root_pem,
        gpu_rim_root=roots.rim_root_pem,
        sgx_root=cpu.trust_anchors().sgx_root,
    )


def _verify(
    bundle: EvidenceBundle, cpu: VirtualCpuTee, gpu: VirtualGpuBackend, policy: object = POLICY
) -> object:
    return verify_composite(
        bundle, now=NOW, expected_nonce=NONCE, allow_simulated=True, anchors=_anchors(cpu, gpu), policy=policy
    )  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def hgx(tmp_path_factory: pytest.TempPathFactory) -> tuple[VirtualCpuTee, VirtualGpuBackend, EvidenceBundle]:
    cpu, gpu = _hgx_vm(tmp_path_factory.mktemp("hgx"))
    return cpu, gpu, _bundle(cpu, gpu)


def test_hgx_bundle_verifies_with_the_ppcie_checks(hgx) -> None:
    cpu, gpu, bundle = hgx
    assert len(bundle.gpus) == 8 and len(bundle.switches) == 4
    assert all(s.arch == "LS10" for s in bundle.switches)
    result = _verify(bundle, cpu, gpu)
    assert [r.status for r in result.steps] == ["ok"] * len(COMPOSITE_STEPS)
    assert "8 GPU(s), 4 NVSwitch(es), PPCIe mode and topology ok" in result.steps[3].detail
    assert len(result.gpus) == 8 and len(result.switches) == 4
    pdis = sorted(gpu.switch_pdi(i).hex().upper() for i in range(4))
    assert result.overall_claims["x-ccai-ppcie"]["switch-pdis"] == pdis
    assert all(g.claims["x-nvidia-gpu-switch-pdis"] == pdis for g in result.gpus)
    assert all(
        s.claims["x-nvidia-switch-attestation-report-cert-chain"]["x-nvidia-cert-ocsp-status"] == "good"
        for s in result.switches
    )
    # The library Verifier (embedded collateral) and a policy file requiring PPCIe agree.
    verifier = Verifier(
        anchors=_anchors(cpu, gpu),
        allow_simulated=True,
        policy=load_policy({"format": "ccai-policy/1", "allow_simulated": True, "ppcie": {}}),
    )
    again = verifier.verify_bundle(bundle, expected_nonce=NONCE, now=NOW)
    assert len(again.switches) == 4


def test_report_data_layout_with_switches_matches_the_documentation(hgx) -> None:
    _cpu, _gpu, bundle = hgx
    lp = lambda b: struct.pack(">I", len(b)) + b  # noqa: E731
    gpu_nonce = hashlib.sha256(b"ccai/composite/v1/gpu-nonce\x00" + NONCE).digest()
    assert all(s.nonce == gpu_nonce and s.parse_report().nonce == gpu_nonce for s in bundle.switches)

    def digest(tag: bytes, items: tuple) -> bytes:
        return hashlib.sha256(
            tag
            + struct.pack(">I", len(items))
            + b"".join(lp(i.arch.encode()) + lp(i.report) + lp(i.certificate_chain) for i in items)
        ).digest()

    e = digest(b"ccai/composite/v1/gpu-evidence\x00", bundle.gpus)
    s = digest(b"ccai/composite/v1/switch-evidence\x00", bundle.switches)
    expected = hashlib.sha512(
        b"ccai/composite/v1/report-data\x00" + NONCE + e + lp(b"") + lp(b"") + s
    ).digest()
    assert composite_report_data(NONCE, bundle.gpus, switches=bundle.switches) == expected
    assert bundle.cpu is not None and parse_tdx_quote(bundle.cpu.evidence).body.report_data == expected
    # Without switches the layout is the original one (no S).
    assert (
        composite_report_data(NONCE, bundle.gpus)
        == hashlib.sha512(b"ccai/composite/v1/report-data\x00" + NONCE + e + lp(b"") + lp(b"")).digest()
    )


def test_switch_evidence_is_bound(hgx, tmp_path: Path) -> None:
    cpu, gpu, bundle = hgx
    with pytest.raises(BindingError):  # switches stripped after the quote was made
        _verify(
            dataclasses.replace(bundle, switches=()),
            cpu,
            gpu,
            policy=default_composite_policy(allow_simulated=True),
        )
    with pytest.raises(BindingError):  # reordered
        _verify(dataclasses.replace(bundle, switches=bundle.switches[::-1]), cpu, gpu)
    with pytest.raises(BindingError):  # one switch dropped
        _verify(dataclasses.replace(bundle, switches=bundle.switches[:3]), cpu, gpu)
    # Genuine, fresh switch evidence of another HGX board for the same nonce.
    cpu_b, gpu_b = _hgx_vm(tmp_path / "b", seed="hgx-b")
    other = collect_composite(nonce=NONCE, cpu=cpu_b, gpu=gpu_b, switches=gpu_b)
    with pytest.raises(BindingError):
        _verify(dataclasses.replace(bundle, switches=other.switches), cpu, gpu)
    wrong_nonce = dataclasses.replace(bundle.switches[2], nonce=bytes(32))
    with pytest.raises(NonceMismatch, match="SWITCH-2"):
        _verify(
            dataclasses.replace(bundle, switches=(*bundle.switches[:2], wrong_nonce, bundle.switches[3])),
            cpu,
            gpu,
        )


@pytest.mark.parametrize(
    ("fault", "error", "step", "words"),
    [
        (VirtualFault.SWITCH_MEASUREMENT_DRIFT, MeasurementMismatch, "(5) policy", "SWITCH-1"),
        (VirtualFault.UNKNOWN_SWITCH_PDI, PolicyViolation, "(4) GPU evidence", "unknown switch"),
        (VirtualFault.GPU_NOT_PPCIE, PolicyViolation, "(4) GPU evidence", "not in protected-PCIe"),
        (
            VirtualFault.SWITCH_MISSING,
            PolicyViolation,
            "(4) GPU evidence",
            "not one of the verified switches",
        ),
    ],
)
def test_each_fault_is_refused(
    tmp_path: Path, fault: VirtualFault, error: type[Error], step: str, words: str
) -> None:
    cpu, gpu = _hgx_vm(tmp_path)
    gpu.inject_fault(fault)
    bundle = _bundle(cpu, gpu)
    with pytest.raises(error) as info:
        _verify(bundle, cpu, gpu)
    assert words in info.value.message
    rows = {r.step: r.status for r in info.value.steps}
    assert rows[step] == "failed", rows


def test_policies_can_require_ppcie(hgx, tmp_path: Path) -> None:
    cpu, gpu, with_switches = hgx
    # The same 8 GPUs without their switches: a valid bundle, but no protected-PCIe system.
    plain = collect_composite(nonce=NONCE, cpu=cpu, gpu=gpu)
    coll = gather_composite_collateral(plain, now=NOW, gpu_source=_InProcessSource(gpu))
    plain = embed_collateral(
        plain, dataclasses.replace(coll, cpu=cpu_collateral_section(cpu.collateral(NOW)))
    )
    assert "switches" not in json.loads(dump_evidence_bundle(plain))
    assert len(_verify(plain, cpu, gpu, policy=default_composite_policy(allow_simulated=True)).gpus) == 8
    require = load_policy({"format": "ccai-policy/1", "allow_simulated": True, "ppcie": {}})
    with pytest.raises(PolicyViolation, match="no NVSwitch claims"):
        _verify(plain, cpu, gpu, policy=require)
    assert len(_verify(with_switches, cpu, gpu, policy=require).switches) == 4
    # A topology of another size is refused by the policy, not by the evidence.
    other_size = load_policy({"format": "ccai-policy/1", "allow_simulated": True, "ppcie": {"switches": 6}})
    with pytest.raises(PolicyViolation, match="the system needs 6"):
        _verify(with_switches, cpu, gpu, policy=other_size)
    mode_only = load_policy(
        {"format": "ccai-policy/1", "allow_simulated": True, "ppcie": {"require_topology": False}}
    )
    assert len(_verify(with_switches, cpu, gpu, policy=mode_only).switches) == 4


def test_bundle_json_switches_member(hgx) -> None:
    _cpu, _gpu, bundle = hgx
    doc = json.loads(dump_evidence_bundle(bundle))
    assert [s["arch"] for s in doc["switches"]] == ["LS10"] * 4
    doc["switches"] = []
    with pytest.raises(MalformedEvidence, match="non-empty"):
        load_evidence_bundle(json.dumps(doc).encode())
