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
from ccai.verify._cpu_policy import TDX_TCB_STATUSES, SnpPolicy, TdxPolicy
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
    DevToolsOff,
    MeasurementIndexAllowList,
    MinVersion,
    Policy,
    PolicyFailure,
    RevocationGood,
    UnsafeAcceptAnything,
    default_policy,
)
from ccai.verify._result import VerifiedEvidence, VerifiedGpu
from ccai.verify._snp import SNP_STEPS, SnpVerified, verify_snp_report
from ccai.verify._steps import StepResult
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
    "SNP_STEPS",
    "TDX_STEPS",
    "TDX_TCB_STATUSES",
    "AllOf",
    "AmdRoots",
    "AnyOf",
    "Appraisal",
    "AuthenticatedGpu",
    "CcModeOn",
    "ClaimEquals",
    "ClaimIn",
    "DevToolsOff",
    "GpuTrustAnchors",
    "MeasurementIndexAllowList",
    "MinVersion",
    "MismatchRecord",
    "NvidiaJsonPolicy",
    "Policy",
    "PolicyFailure",
    "RevocationGood",
    "SnpPolicy",
    "SnpVerified",
    "StepResult",
    "TdxPolicy",
    "TdxTcbEvaluation",
    "TdxVerified",
    "TrustAnchors",
    "UnsafeAcceptAnything",
    "VerifiedEvidence",
    "VerifiedGpu",
    "Verifier",
    "amd_roots",
    "default_policy",
    "intel_sgx_root_ca",
    "load_nvidia_policy",
    "nvidia_gpu_anchors",
    "replay_rtmrs",
    "verify_composite",
    "verify_gpu_evidence",
    "verify_snp_report",
    "verify_tdx_quote",
]
