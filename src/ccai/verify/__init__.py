"""verify stage of ccai (see docs/architecture.md).

:class:`Verifier` is the entry point: trust anchors (:class:`TrustAnchors`), a policy, collateral
sources and caches in one object, with one method per kind of evidence. The ``verify_*`` functions
are the one-shot recipes it is built from, for callers that already hold the collateral.
"""

from ccai.verify._anchors import (
    NVIDIA_CORIM_ROOT_SHA256,
    NVIDIA_DEVICE_ROOT_SHA256,
    GpuTrustAnchors,
    nvidia_gpu_anchors,
)
from ccai.verify._anchors_cpu import (
    AMD_ARK_SHA256,
    AMD_ASK_SHA256,
    AMD_ASVK_SHA256,
    INTEL_SGX_ROOT_CA_SHA256,
    AmdRoots,
    amd_roots,
    intel_sgx_root_ca,
)
from ccai.verify._claims import CLAIMS_VERSIONS
from ccai.verify._composite import COMPOSITE_STEPS, verify_composite
from ccai.verify._cpu_policy import (
    SNP_SPL_NAMES,
    TDX_TCB_STATUSES,
    ByTee,
    CpuAllowList,
    CpuDebugOff,
    CpuReportData,
    CpuRevocationChecked,
    SnpGuest,
    SnpTcb,
    TdxAttributes,
    TdxEventLogReplayed,
    TdxNoTrailingData,
    TdxTcb,
    default_composite_policy,
    snp_rules,
    tdx_rules,
)
from ccai.verify._gpu import GPU_STEPS, AuthenticatedGpu, verify_gpu_evidence
from ccai.verify._measurements import MismatchRecord
from ccai.verify._nvidia_policy import NvidiaJsonPolicy, load_nvidia_policy
from ccai.verify._policy import (
    AllOf,
    AnyOf,
    Appraisal,
    CcModeOn,
    ClaimEquals,
    ClaimIn,
    CpuOnly,
    DevToolsOff,
    DistinctGpus,
    GpuCount,
    MeasurementIndexAllowList,
    MinGpus,
    MinVersion,
    NotSimulated,
    Policy,
    PolicyFailure,
    RevocationGood,
    UnsafeAcceptAnything,
    appraise,
    default_policy,
)
from ccai.verify._policy_file import POLICY_FORMAT, load_policy
from ccai.verify._ppcie import PPCIE_STEPS
from ccai.verify._ppcie_policy import (
    PpcieMode,
    PpcieTopology,
    SwitchesVerified,
    default_ppcie_policy,
    default_switch_policy,
)
from ccai.verify._result import VerifiedEvidence, VerifiedGpu, VerifiedSwitch
from ccai.verify._snp import SNP_STEPS, SnpVerified, verify_snp_report
from ccai.verify._steps import StepResult
from ccai.verify._switch import SWITCH_STEPS
from ccai.verify._tdx import TDX_STEPS, TdxTcbEvaluation, TdxVerified, replay_rtmrs, verify_tdx_quote
from ccai.verify._trust import TrustAnchors
from ccai.verify._verifier import Verifier

__all__ = [
    # The Verifier (verify/_verifier.py), its anchors and step results; the NVIDIA GPU
    # (verify/_gpu.py …), CPU TEE (verify/_tdx.py, _snp.py) and composite checklists
    "AMD_ARK_SHA256",
    "AMD_ASK_SHA256",
    "AMD_ASVK_SHA256",
    "CLAIMS_VERSIONS",
    "COMPOSITE_STEPS",
    "GPU_STEPS",
    "INTEL_SGX_ROOT_CA_SHA256",
    "NVIDIA_CORIM_ROOT_SHA256",
    "NVIDIA_DEVICE_ROOT_SHA256",
    # the one claims-based policy model (verify/_policy.py, _cpu_policy.py, _policy_file.py)
    "POLICY_FORMAT",
    "PPCIE_STEPS",
    "SNP_SPL_NAMES",
    "SNP_STEPS",
    "SWITCH_STEPS",
    "TDX_STEPS",
    "TDX_TCB_STATUSES",
    "AllOf",
    "AmdRoots",
    "AnyOf",
    "Appraisal",
    "AuthenticatedGpu",
    "ByTee",
    "CcModeOn",
    "ClaimEquals",
    "ClaimIn",
    "CpuAllowList",
    "CpuDebugOff",
    "CpuOnly",
    "CpuReportData",
    "CpuRevocationChecked",
    "DevToolsOff",
    "DistinctGpus",
    "GpuCount",
    "GpuTrustAnchors",
    "MeasurementIndexAllowList",
    "MinGpus",
    "MinVersion",
    "MismatchRecord",
    "NotSimulated",
    "NvidiaJsonPolicy",
    "Policy",
    "PolicyFailure",
    "PpcieMode",
    "PpcieTopology",
    "RevocationGood",
    "SnpGuest",
    "SnpTcb",
    "SnpVerified",
    "StepResult",
    "SwitchesVerified",
    "TdxAttributes",
    "TdxEventLogReplayed",
    "TdxNoTrailingData",
    "TdxTcb",
    "TdxTcbEvaluation",
    "TdxVerified",
    "TrustAnchors",
    "UnsafeAcceptAnything",
    "VerifiedEvidence",
    "VerifiedGpu",
    "VerifiedSwitch",
    "Verifier",
    "amd_roots",
    "appraise",
    "default_composite_policy",
    "default_policy",
    "default_ppcie_policy",
    "default_switch_policy",
    "intel_sgx_root_ca",
    "load_nvidia_policy",
    "load_policy",
    "nvidia_gpu_anchors",
    "replay_rtmrs",
    "snp_rules",
    "tdx_rules",
    "verify_composite",
    "verify_gpu_evidence",
    "verify_snp_report",
    "verify_tdx_quote",
]
