"""The gateway on a protected-PCIe system: the virtual HGX (8 GPUs, 4 NVSwitches) in a virtual TDX
guest boots in front of a tiny upstream engine; its attestation document carries the switches'
evidence and passes a client policy that demands PPCIe. ``--switches`` on a VM without NVSwitches
stops the boot (exit 4)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from ccai.client import attest_gateway
from ccai.device import MultiGpuMode
from ccai.errors import PolicyViolation
from ccai.sealed import Kek
from ccai.verify import load_policy
from ccai.virtual import VirtualGpuBackend, virtual_trust_anchors

from .conftest import UPSTREAM_CMD, failing_gateway, running_gateway

pytestmark = [pytest.mark.extra("service")]
PPCIE = {"format": "ccai-policy/1", "allow_simulated": True, "ppcie": {"gpus": 8, "switches": 4}}


def test_gateway_on_the_virtual_hgx_passes_a_ppcie_policy(
    ccai_home: Path, tiny_sealed: tuple[Path, Path, Kek]
) -> None:
    VirtualGpuBackend.create(home=ccai_home, gpus=8, multi_gpu_mode=MultiGpuMode.PROTECTED_PCIE, switches=4)
    sealed, kek_file, _kek = tiny_sealed
    args = [
        "--model", str(sealed), "--kek", str(kek_file), "--simulate", "tdx", "--gpus", "8", "--switches",
        "--upstream-cmd", UPSTREAM_CMD, "--allow-plaintext",
    ]  # fmt: skip
    with running_gateway(ccai_home, *args) as gw:
        assert httpx.get(gw.url + "/health").json()["state"] == "ready"
        anchors = virtual_trust_anchors(ccai_home, gpu=True, tdx=True)
        attested = attest_gateway(gw.url, anchors=anchors, policy=load_policy(PPCIE), allow_simulated=True)
        verified = attested.verified
        assert len(verified.gpus) == 8 and len(verified.switches) == 4
        assert verified.overall_claims["x-ccai-ppcie"]["topology"] == "verified"
        assert ("NVSwitches", "4 (protected PCIe, topology verified)") in attested.summary()
        # The policy does judge the switches: one asking for another board's shape refuses it.
        other = load_policy({**PPCIE, "ppcie": {"gpus": 8, "switches": 6}})
        with pytest.raises(PolicyViolation, match="NVSwitches"):
            attest_gateway(gw.url, anchors=anchors, policy=other, allow_simulated=True)


def test_switches_on_a_vm_without_nvswitches_stops_the_boot(
    ccai_home: Path, tiny_sealed: tuple[Path, Path, Kek]
) -> None:
    sealed, kek_file, _kek = tiny_sealed
    run = failing_gateway(
        ccai_home,
        *("--model", str(sealed), "--kek", str(kek_file), "--simulate", "tdx", "--gpus", "2", "--switches"),
        *("--upstream-cmd", UPSTREAM_CMD),
    )
    assert run.returncode == 4, run.stderr[-2000:]
    assert "no NVSwitches" in run.stdout + run.stderr
    assert all(status == 503 for status in run.inference_statuses)
