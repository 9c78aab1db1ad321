"""Pin the public surface: every package's ``__all__`` names exist and nothing private leaks."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import ccai

PACKAGES = sorted(
    m.name for m in pkgutil.walk_packages(ccai.__path__, "ccai.") if m.ispkg and "._" not in m.name
)


@pytest.mark.parametrize("name", ["ccai", *PACKAGES])
def test_all_names_exist_and_are_public(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    for member in exported:
        assert not member.startswith("_") or member == "__version__", f"{name} exports private {member}"
        assert hasattr(module, member), f"{name}.__all__ names missing {member}"


def test_error_tree_root() -> None:
    from ccai import errors

    for member in errors.__all__:
        assert issubclass(getattr(errors, member), errors.Error)


def test_verify_surface_is_pinned() -> None:
    import ccai.verify

    assert set(ccai.verify.__all__) == {
        *("AMD_ARK_SHA256", "AMD_ASK_SHA256", "AMD_ASVK_SHA256", "CLAIMS_VERSIONS", "COMPOSITE_STEPS"),
        *("GPU_STEPS", "INTEL_SGX_ROOT_CA_SHA256", "NVIDIA_CORIM_ROOT_SHA256", "NVIDIA_DEVICE_ROOT_SHA256"),
        *("SNP_STEPS", "TDX_STEPS", "TDX_TCB_STATUSES"),
        # the Verifier, its anchors and results
        *("Verifier", "TrustAnchors", "StepResult", "AuthenticatedGpu", "VerifiedEvidence", "VerifiedGpu"),
        *("GpuTrustAnchors", "AmdRoots", "SnpVerified", "TdxVerified", "TdxTcbEvaluation", "MismatchRecord"),
        # the policy model
        *("AllOf", "AnyOf", "Appraisal", "CcModeOn", "ClaimEquals", "ClaimIn", "DevToolsOff"),
        *("MeasurementIndexAllowList", "MinVersion", "NvidiaJsonPolicy", "Policy", "PolicyFailure"),
        *("RevocationGood", "SnpPolicy", "TdxPolicy", "UnsafeAcceptAnything", "default_policy"),
        *("load_nvidia_policy",),
        # pinned roots and the one-shot checklists
        *("amd_roots", "intel_sgx_root_ca", "nvidia_gpu_anchors", "replay_rtmrs"),
        *("verify_composite", "verify_gpu_evidence", "verify_snp_report", "verify_tdx_quote"),
    }
