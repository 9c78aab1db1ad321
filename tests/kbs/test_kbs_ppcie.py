"""The key broker demands protected PCIe: a virtual HGX board (8 GPUs, 4 NVSwitches) in a virtual
TDX guest gets the key under a release policy with a ``ppcie`` section; evidence without the
switches, and each HGX fault, is a 403 with its named reason in the audit log."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ccai.device import MultiGpuMode
from ccai.kbs import KbsClient, KbsRefused, verify_audit_chain
from ccai.virtual import VirtualCpuTee, VirtualFault, VirtualGpuBackend, open_virtual_vm

from .conftest import Admin, broker_app, make_evidence, serve

pytestmark = pytest.mark.extra("service")
KEK = b"p" * 32
RESOURCE = "models/kek/hgx"
PPCIE_POLICY = {"format": "ccai-policy/1", "allow_simulated": True, "ppcie": {"gpus": 8, "switches": 4}}

HGX = tuple[VirtualCpuTee, VirtualGpuBackend]


@pytest.fixture
def hgx(ccai_home: Path) -> HGX:
    """The virtual HGX in a TDX guest (``ccai gpu init --simulate --gpus 8 --switches 4 --ppcie``)."""
    VirtualGpuBackend.create(home=ccai_home, gpus=8, multi_gpu_mode=MultiGpuMode.PROTECTED_PCIE, switches=4)
    return open_virtual_vm(tee="tdx", gpus=8, home=ccai_home)


@pytest.fixture
def hgx_broker(ccai_home: Path, hgx: HGX) -> Iterator[Admin]:
    del hgx  # the virtual hardware exists before the broker reads its test-PKI anchors
    with serve(broker_app(ccai_home)) as base:
        admin = Admin(base, ccai_home)
        admin.put(RESOURCE, KEK)
        admin.policy("hgx-ppcie", PPCIE_POLICY, resource=RESOURCE)
        yield admin


def _payload(token: str) -> dict[str, Any]:
    """The token's payload (its signature is the broker's business; this test reads the claims)."""
    part = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def _refused(broker: Admin, hgx: HGX, *, switches: bool = True) -> tuple[KbsRefused, dict[str, object]]:
    client = KbsClient(broker.base, evidence=make_evidence(*hgx, switches=switches))
    with client, pytest.raises(KbsRefused) as info:
        client.get_resource(RESOURCE)
    records = broker.audit()
    assert verify_audit_chain(records) == len(records)
    return info.value, records[-1]


def test_hgx_guest_gets_the_key_under_a_ppcie_policy(hgx_broker: Admin, hgx: HGX) -> None:
    with KbsClient(hgx_broker.base, evidence=make_evidence(*hgx, switches=True)) as client:
        assert client.get_resource(RESOURCE) == KEK
        assert client.token is not None
        claims = _payload(client.token)["ccai-claims"]
    # The token records every switch's claims next to the GPUs' (the release step judges them).
    assert len(claims["gpus"]) == 8 and len(claims["switches"]) == 4
    assert claims["overall"]["x-ccai-ppcie"]["topology"] == "verified"
    assert {s["x-ccai-switch-pdi"] for s in claims["switches"]} == {
        hgx[1].switch_pdi(i).hex().upper() for i in range(4)
    }
    records = hgx_broker.audit()
    assert [r["event"] for r in records][-2:] == ["attest", "release"]
    assert records[-1]["verdict"] == "pass" and records[-1]["policy"] == "hgx-ppcie v1"


def test_evidence_without_switches_passes_attest_but_not_the_ppcie_release(
    hgx_broker: Admin, hgx: HGX
) -> None:
    error, last = _refused(hgx_broker, hgx, switches=False)
    assert error.status == 403 and error.reason == "no_switch_evidence"
    assert last["event"] == "release" and last["verdict"] == "refused"
    assert str(last["reason"]).startswith("no_switch_evidence: no NVSwitch claims to judge")
    # The attest step passed: 8 GPUs without switches satisfy the broker's default policy.
    assert [r["verdict"] for r in hgx_broker.audit() if r["event"] == "attest"] == ["pass"]


@pytest.mark.parametrize(
    ("fault", "reason", "words"),
    [
        (VirtualFault.SWITCH_MISSING, "ppcie_topology_mismatch", "unknown switch"),
        (VirtualFault.UNKNOWN_SWITCH_PDI, "ppcie_topology_mismatch", "unknown switch"),
        (VirtualFault.GPU_NOT_PPCIE, "gpu_not_ppcie", "not in protected-PCIe mode"),
        (VirtualFault.SWITCH_MEASUREMENT_DRIFT, "measurement_mismatch", "SWITCH-1"),
    ],
)
def test_each_hgx_fault_is_refused_with_its_reason(
    hgx_broker: Admin, hgx: HGX, fault: VirtualFault, reason: str, words: str
) -> None:
    hgx[1].inject_fault(fault)
    error, last = _refused(hgx_broker, hgx)
    assert error.status == 403 and error.reason == reason, (error.reason, str(error))
    # Refused when the evidence is verified: no token, so nothing is released.
    assert last["event"] == "attest" and last["verdict"] == "refused"
    assert str(last["reason"]).startswith(reason + ":") and words in str(last["reason"]), last["reason"]
    assert not [r for r in hgx_broker.audit() if r["event"] == "release"]


def test_a_ppcie_policy_refuses_a_plain_gpu_guest(ccai_home: Path) -> None:
    """Two GPUs and no switches: the same policy refuses at release (fails closed)."""
    vm = open_virtual_vm(tee="tdx", gpus=2, home=ccai_home)
    with serve(broker_app(ccai_home)) as base:
        admin = Admin(base, ccai_home)
        admin.put(RESOURCE, KEK)
        admin.policy("hgx-ppcie", PPCIE_POLICY, resource=RESOURCE)
        error, last = _refused(admin, vm, switches=False)
    assert error.reason in {"no_switch_evidence", "ppcie_topology_mismatch", "gpu_not_ppcie"}
    assert last["event"] == "release" and json.dumps(last["reason"]).startswith('"' + error.reason)


def test_the_documented_hgx_policy_demands_ppcie() -> None:
    from ccai.verify import load_policy

    path = Path(__file__).resolve().parents[2] / "docs" / "policies" / "production-tdx-hgx-ppcie.json"
    described = load_policy(path.read_text(), name=path.name).describe()
    for rule in (
        "NVSwitch measurements match",
        "every GPU in protected-PCIe mode",
        "topology of 8 GPUs and 4",
    ):
        assert rule in described, described
