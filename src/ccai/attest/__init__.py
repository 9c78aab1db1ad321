"""attest stage of ccai: composite GPU + CPU evidence bound to one verifier nonce.

:func:`collect_gpu_evidence` collects the GPUs' evidence for a verifier nonce (``ccai attest gpu``).
Composite collection (:func:`collect_composite`) derives each GPU's SPDM nonce from the verifier nonce,
collects the GPU evidence, then asks the CPU TEE for a quote whose report_data commits to the
nonce, the exact GPU evidence and the bound keys (:func:`composite_report_data`). The result is one
versioned JSON :class:`EvidenceBundle` (docs/composite-evidence.md has the byte-exact layout);
:func:`ccai.verify.verify_composite` checks it.
"""

from __future__ import annotations

from ccai.attest._binding import (
    BINDING_NONCE_ONLY,
    BINDING_SCHEMES,
    BINDING_V1,
    check_report_data,
    composite_report_data,
    derive_gpu_nonce,
    gpu_evidence_digest,
)
from ccai.attest._bundle import (
    BUNDLE_FORMAT,
    EVIDENCE_BUNDLE_VERSION,
    CpuEvidence,
    EvidenceBundle,
    bundle_from_nonce_only_pair,
    cpu_collateral_from_bundle,
    cpu_collateral_section,
    dump_evidence_bundle,
    load_evidence_bundle,
)
from ccai.attest._collect import (
    CpuTee,
    collect_composite,
    gather_composite_collateral,
    keys_from_pem,
    open_virtual_vm,
)
from ccai.attest._gpu import collect_gpu_evidence

__all__ = [
    "BINDING_NONCE_ONLY",
    "BINDING_SCHEMES",
    "BINDING_V1",
    "BUNDLE_FORMAT",
    "EVIDENCE_BUNDLE_VERSION",
    "CpuEvidence",
    "CpuTee",
    "EvidenceBundle",
    "bundle_from_nonce_only_pair",
    "check_report_data",
    "collect_composite",
    "collect_gpu_evidence",
    "composite_report_data",
    "cpu_collateral_from_bundle",
    "cpu_collateral_section",
    "derive_gpu_nonce",
    "dump_evidence_bundle",
    "gather_composite_collateral",
    "gpu_evidence_digest",
    "keys_from_pem",
    "load_evidence_bundle",
    "open_virtual_vm",
]
