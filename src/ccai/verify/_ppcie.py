"""Verify a protected-PCIe (PPCIe) system — all GPUs and NVSwitches of an HGX board — as one.

:meth:`ccai.verify.Verifier.verify_ppcie` follows NVIDIA's ppcie-verifier and runs:

(1) GPU evidence: the whole GPU checklist (``GPU_STEPS`` 1–11) over every GPU
(2) NVSwitch evidence: the whole switch checklist (``SWITCH_STEPS`` 1–10) over every switch
(3) protected-PCIe mode: every GPU's signed FEATURE_FLAG is ``ppcie`` and its
    PROTECTED_PCIE_STATUS ``enabled`` (:class:`~ccai.verify.PpcieMode`)
(4) topology: the expected counts; every GPU links to exactly the verified switches (no unknown
    switch, no missing link); every switch lists the same GPUs (:class:`~ccai.verify.PpcieTopology`)
(5) claims: per-GPU claims (with ``x-nvidia-gpu-switch-pdis``), per-switch claims, and overall
    claims with ``x-ccai-ppcie``
(6) policy appraisal over all of them

Steps 3 and 4 always run — a PPCIe verification without them would not be one — and the policy
may require them again (so tokens are judged alike). The result is all or nothing: a returned
value means every GPU may be set ready; any failure raises, and no GPU may be.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ccai.collateral import GpuCollateral
from ccai.errors import Error
from ccai.evidence import GpuEvidence
from ccai.verify._caches import VerifierCaches
from ccai.verify._claims import overall_claims
from ccai.verify._gpu import CollateralFetcher, run_gpu_checklist
from ccai.verify._policy import DEFER_APPRAISAL, Appraisal, Policy, appraise
from ccai.verify._ppcie_policy import STEP_MODE, STEP_TOPOLOGY, PpcieMode, PpcieTopology
from ccai.verify._result import VerifiedEvidence, _issue
from ccai.verify._steps import Steps
from ccai.verify._switch import SwitchCollateralFetcher, run_switch_checklist
from ccai.verify._trust import TrustAnchors

__all__ = ["PPCIE_STEPS", "run_ppcie_checklist"]

STEP_GPUS = "(1) GPU evidence"
STEP_SWITCHES = "(2) NVSwitch evidence"
STEP_CLAIMS = "(5) claims"
STEP_POLICY = "(6) policy"

#: The PPCIe checklist, in order.
PPCIE_STEPS = (STEP_GPUS, STEP_SWITCHES, STEP_MODE, STEP_TOPOLOGY, STEP_CLAIMS, STEP_POLICY)


def _check(rule: PpcieMode | PpcieTopology, appraisal: Appraisal) -> None:
    failures = rule.evaluate(appraisal)
    if failures:
        raise failures[0].to_error()


def run_ppcie_checklist(
    gpus: Sequence[GpuEvidence],
    switches: Sequence[GpuEvidence],
    *,
    nonce: bytes,
    switch_nonce: bytes,
    now: datetime,
    gpu_collateral: GpuCollateral | CollateralFetcher,
    switch_collateral: GpuCollateral | SwitchCollateralFetcher,
    policy: Policy,
    expected_gpus: int,
    expected_switches: int,
    anchors: TrustAnchors,
    allow_simulated: bool,
    caches: VerifierCaches | None,
) -> VerifiedEvidence:
    """Run the PPCIe checklist (for :meth:`ccai.verify.Verifier.verify_ppcie`).

    Raises:
        Error: the first failure; ``steps`` holds the PPCIe rows, ``step`` the inner step.
    """
    topology = PpcieTopology(gpus=expected_gpus, switches=expected_switches)
    steps = Steps(PPCIE_STEPS)
    try:
        steps.begin(STEP_GPUS)
        verified_gpus = run_gpu_checklist(
            gpus,
            nonce=nonce,
            now=now,
            collateral=gpu_collateral,
            policy=DEFER_APPRAISAL,
            anchors=anchors,
            allow_simulated=allow_simulated,
            claims_version="3.0",
            reported_cc_mode=None,
            caches=caches,
        )
        steps.ok(STEP_GPUS, f"{len(verified_gpus.gpus)} GPU(s) verified")

        steps.begin(STEP_SWITCHES)
        verified_switches = run_switch_checklist(
            switches,
            nonce=switch_nonce,
            now=now,
            collateral=switch_collateral,
            policy=DEFER_APPRAISAL,
            anchors=anchors,
            allow_simulated=allow_simulated,
            claims_version="3.0",
            caches=caches,
        )
        steps.ok(STEP_SWITCHES, f"{len(verified_switches.switches)} NVSwitch(es) verified")

        gpu_claims = tuple(g.claims for g in verified_gpus.gpus)
        switch_claims = tuple(s.claims for s in verified_switches.switches)
        facts = Appraisal(overall={}, gpus=gpu_claims, switches=switch_claims)
        steps.begin(STEP_MODE)
        _check(PpcieMode(), facts)
        steps.ok(STEP_MODE, "FEATURE_FLAG ppcie, PROTECTED_PCIE_STATUS enabled on every GPU")

        steps.begin(STEP_TOPOLOGY)
        _check(topology, facts)
        steps.ok(STEP_TOPOLOGY, f"{len(gpu_claims)} GPUs ↔ {len(switch_claims)} NVSwitches consistent")

        steps.begin(STEP_CLAIMS)
        simulated = verified_gpus.simulated or verified_switches.simulated
        overall = overall_claims(
            nonce=nonce, version="3.0", gpus=(*gpu_claims, *switch_claims), simulated=simulated
        )
        overall["x-ccai-ppcie"] = {
            "gpus": len(gpu_claims),
            "switches": len(switch_claims),
            "mode": "ppcie",
            "topology": "verified",
            "switch-pdis": sorted(str(c.get("x-ccai-switch-pdi")) for c in switch_claims),
        }
        if switch_nonce != nonce:
            overall["x-ccai-switch-nonce"] = switch_nonce.hex()
        steps.ok(STEP_CLAIMS, "claims 3.0")

        steps.begin(STEP_POLICY)
        if policy is DEFER_APPRAISAL:
            steps.skip(STEP_POLICY, "deferred to the composite appraisal")
        else:
            appraise(
                policy,
                Appraisal(
                    overall=overall, gpus=gpu_claims, switches=switch_claims, allow_simulated=allow_simulated
                ),
            )
            steps.ok(STEP_POLICY, "satisfied")
    except Error as exc:
        steps.attach(exc)
        raise
    return _issue(
        nonce=bytes(nonce),
        gpus=verified_gpus.gpus,
        switches=verified_switches.switches,
        overall_claims=overall,
        verified_at=now,
        simulated=simulated,
        claims_version="3.0",
        steps=steps.results(),
    )
