"""attest stage of ccai: collect composite GPU + CPU evidence bound to one verifier nonce.

:func:`collect_gpu_evidence` collects the GPUs' evidence for a verifier nonce (``ccai attest gpu``),
:func:`collect_switch_evidence` the NVSwitches' of a protected-PCIe system (``ccai attest ppcie``).
Collection (:func:`collect_composite`) derives each GPU's SPDM nonce from the verifier nonce,
collects the GPU evidence from a :class:`ccai.device.GpuBackend`, then asks a
:class:`ccai.tee.CpuTee` for a quote whose report_data commits to the nonce, the exact GPU
evidence and the bound keys. The result is one :class:`ccai.evidence.EvidenceBundle` (the bundle
format and the binding's byte layout live in :mod:`ccai.evidence`; docs/composite-evidence.md);
:func:`gather_composite_collateral` fetches what verifying it offline needs, and
:func:`ccai.verify.verify_composite` checks it. :class:`TrusteeAttester` collects the same
hardware evidence in Trustee's attestation-agent encoding (for Trustee's RCAR binding).
"""

from __future__ import annotations

from ccai.attest._collect import collect_composite, gather_composite_collateral, keys_from_pem
from ccai.attest._gpu import collect_gpu_evidence
from ccai.attest._nscq import NSCQ_LIBRARY_ENV, NscqSwitches
from ccai.attest._ppcie import SwitchSource, collect_switch_evidence, nscq_switches
from ccai.attest._trustee import TrusteeAttester

__all__ = [
    "NSCQ_LIBRARY_ENV",
    "NscqSwitches",
    "SwitchSource",
    "TrusteeAttester",
    "collect_composite",
    "collect_gpu_evidence",
    "collect_switch_evidence",
    "gather_composite_collateral",
    "keys_from_pem",
    "nscq_switches",
]
