"""verify stage of ccai (see docs/architecture.md)."""

from ccai.verify._anchors_cpu import (
    AMD_ARK_SHA256,
    AMD_ASK_SHA256,
    AMD_ASVK_SHA256,
    INTEL_SGX_ROOT_CA_SHA256,
    AmdRoots,
    amd_roots,
    intel_sgx_root_ca,
)
from ccai.verify._cpu_policy import TDX_TCB_STATUSES, SnpPolicy, TdxPolicy
from ccai.verify._snp import SNP_STEPS, SnpVerified, verify_snp_report
from ccai.verify._tdx import TDX_STEPS, TdxTcbEvaluation, TdxVerified, replay_rtmrs, verify_tdx_quote

__all__ = [
    # CPU TEE evidence (Intel TDX, AMD SEV-SNP)
    "AMD_ARK_SHA256",
    "AMD_ASK_SHA256",
    "AMD_ASVK_SHA256",
    "INTEL_SGX_ROOT_CA_SHA256",
    "SNP_STEPS",
    "TDX_STEPS",
    "TDX_TCB_STATUSES",
    "AmdRoots",
    "SnpPolicy",
    "SnpVerified",
    "TdxPolicy",
    "TdxTcbEvaluation",
    "TdxVerified",
    "amd_roots",
    "intel_sgx_root_ca",
    "replay_rtmrs",
    "verify_snp_report",
    "verify_tdx_quote",
]
