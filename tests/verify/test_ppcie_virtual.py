"""Protected-PCIe verification of the virtual HGX system (8 GPUs, 4 NVSwitches): genuine → all
ready; each injected fault → refused with its reason, at its step."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from ccai.attest import collect_gpu_evidence, collect_switch_evidence
from ccai.device import MultiGpuMode
from ccai.errors import Error, MeasurementMismatch, PolicyViolation
from ccai.verify import (
    PPCIE_STEPS,
    Appraisal,
    PpcieTopology,
    TrustAnchors,
    Verifier,
    default_ppcie_policy,
    load_policy,
)
from ccai.virtual import VirtualFault, VirtualGpuBackend

ALL_OK = ["ok"] * len(PPCIE_STEPS)


class _Rims:
    def __init__(self, backend: VirtualGpuBackend) -> None:
        self.backend = backend

    def rim(self, rim_id: str) -> bytes:
        return self.backend.rim(rim_id)

    def ocsp(self, cert: object, issuer: object, *, nonce: bytes | None) -> bytes:
        raise AssertionError("revocation is not checked in these tests")


def _hgx(home: Path, fault: VirtualFault | None = None) -> VirtualGpuBackend:
    backend = VirtualGpuBackend.create(
        home=home, gpus=8, multi_gpu_mode=MultiGpuMode.PROTECTED_PCIE, switches=4
    )
    backend.inject_fault(fault)
    return backend


def _verifier(backend: VirtualGpuBackend, policy: object = None) -> Verifier:
    roots = backend.trust_anchors()
    anchors = TrustAnchors.simulated_test_pki(
        gpu_device_root=roots.device_root_pem, gpu_rim_root=roots.rim_root_pem
    )
    return Verifier(
        anchors=anchors,
        allow_simulated=True,
        gpu_source=_Rims(backend),
        check_revocation=False,
        policy=policy
        if policy is not None
        else default_ppcie_policy(allow_unchecked_revocation=True, allow_simulated=True),
    )


def _verify(backend: VirtualGpuBackend, policy: object = None) -> object:
    nonce = secrets.token_bytes(32)
    gpus = collect_gpu_evidence(backend, nonce)
    switches = collect_switch_evidence(backend, nonce)
    return _verifier(backend, policy).verify_ppcie(gpus, switches, nonce=nonce)


def test_genuine_hgx_verifies_as_one_system(tmp_path: Path) -> None:
    backend = _hgx(tmp_path)
    verified = _verify(backend)
    assert [r.status for r in verified.steps] == ALL_OK
    assert len(verified.gpus) == 8 and len(verified.switches) == 4
    pdis = sorted(backend.switch_pdi(i).hex().upper() for i in range(4))
    for gpu in verified.gpus:
        assert gpu.claims["x-nvidia-gpu-switch-pdis"] == pdis
        assert gpu.claims["x-ccai-gpu-feature-flag"] == "ppcie"
    for switch in verified.switches:
        assert switch.claims["measres"] == "success"
        assert switch.claims["hwmodel"] == "LS_10 A01 FSP BROM"
        assert switch.claims["x-nvidia-switch-bios-version"] == "96.10.55.00.01"
    assert verified.overall_claims["x-ccai-ppcie"]["switch-pdis"] == pdis
    assert verified.simulated


@pytest.mark.parametrize(
    ("fault", "error", "step", "words"),
    [
        (VirtualFault.SWITCH_MISSING, PolicyViolation, "(4) topology", "evidence of 3 NVSwitches"),
        (VirtualFault.UNKNOWN_SWITCH_PDI, PolicyViolation, "(4) topology", "unknown switch"),
        (VirtualFault.GPU_NOT_PPCIE, PolicyViolation, "(3) protected-PCIe mode", "not in protected-PCIe"),
        (VirtualFault.SWITCH_MEASUREMENT_DRIFT, MeasurementMismatch, "(6) policy", "SWITCH-1"),
    ],
)
def test_each_fault_is_refused_with_its_reason(
    tmp_path: Path, fault: VirtualFault, error: type[Error], step: str, words: str
) -> None:
    backend = _hgx(tmp_path, fault)
    with pytest.raises(error) as info:
        _verify(backend)
    assert words in info.value.message
    rows = {r.step: r.status for r in info.value.steps}
    assert rows[step] == "failed"
    assert "ok" not in [rows[s] for s in PPCIE_STEPS[PPCIE_STEPS.index(step) + 1 :]]


def test_the_gpu_linked_to_an_unknown_switch_is_named(tmp_path: Path) -> None:
    with pytest.raises(PolicyViolation) as info:
        _verify(_hgx(tmp_path, VirtualFault.UNKNOWN_SWITCH_PDI))
    assert info.value.message.startswith("GPU-1: ")


def test_counts_are_enforced(tmp_path: Path) -> None:
    backend = VirtualGpuBackend.create(
        home=tmp_path, gpus=4, multi_gpu_mode=MultiGpuMode.PROTECTED_PCIE, switches=4
    )
    with pytest.raises(PolicyViolation, match="the system has 4 GPUs"):
        _verify(backend)
    policy = default_ppcie_policy(gpus=4, allow_unchecked_revocation=True, allow_simulated=True)
    nonce = secrets.token_bytes(32)
    verified = _verifier(backend, policy).verify_ppcie(
        collect_gpu_evidence(backend, nonce),
        collect_switch_evidence(backend, nonce),
        nonce=nonce,
        expected_gpus=4,
    )
    assert len(verified.gpus) == 4


def test_policy_file_requires_ppcie_and_topology(tmp_path: Path) -> None:
    policy = load_policy(
        {
            "format": "ccai-policy/1",
            "allow_simulated": True,
            "cpu": None,
            "gpu": {"allow_unchecked_revocation": True},
            "ppcie": {"gpus": 8, "switches": 4, "allow_unchecked_revocation": True},
        }
    )
    backend = _hgx(tmp_path)
    verified = _verify(backend, policy)
    # The same policy judges the claims again (as it would a token's) and refuses a system
    # whose claims lack a switch.
    appraisal = Appraisal.from_verified(verified, allow_simulated=True)
    assert policy.evaluate(appraisal) == ()
    short = Appraisal(overall=appraisal.overall, gpus=appraisal.gpus, switches=appraisal.switches[:3])
    assert any("NVSwitches" in f.message for f in policy.evaluate(short))


def test_topology_rule_rejects_switches_with_other_gpus(tmp_path: Path) -> None:
    verified = _verify(_hgx(tmp_path))
    appraisal = Appraisal.from_verified(verified)
    switches = [dict(s) for s in appraisal.switches]
    switches[2]["x-ccai-switch-gpu-pdis"] = [*switches[2]["x-ccai-switch-gpu-pdis"][:7], "00000000DEADBEEF"]
    failures = PpcieTopology().evaluate(Appraisal(overall={}, gpus=appraisal.gpus, switches=tuple(switches)))
    assert failures and "SWITCH-2 lists other GPUs" in failures[0].message
