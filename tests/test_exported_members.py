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


# The surfaces the virtual-hardware split drew: virtual hardware only in ccai.virtual, the real
# backends and their protocols in ccai.device / ccai.tee, collection only in ccai.attest.
PINNED = {
    "ccai.virtual": {
        "DEFAULT_TEE_SEED",
        "TEST_ORG",
        "DevCollateralSettings",
        "OcspIssuer",
        "OcspResponder",
        "OcspRevocation",
        "PkiCredential",
        "SnpPlatform",
        "TdxPlatform",
        "VirtualCpuTee",
        "VirtualFault",
        "VirtualGpuBackend",
        "VirtualPki",
        "VirtualRevocation",
        "VirtualTeeAnchors",
        "VirtualTeePki",
        "VirtualTrustAnchors",
        "create_dev_collateral_app",
        "open_virtual_vm",
        "run_in_background",
        "settings_for_virtual_gpu",
    },
    "ccai.device": {
        "Architecture",
        "CcMode",
        "CcStatus",
        "CpuCcCapability",
        "GpuBackend",
        "GpuInfo",
        "MultiGpuMode",
        "NvmlBackend",
    },
    "ccai.tee": {
        "CONFIGFS_TSM_REPORT",
        "ConfigfsTsm",
        "CpuQuote",
        "CpuTee",
        "LinuxTsmFilesystem",
        "TsmFilesystem",
        "TsmReport",
        "parse_snp_certificate_table",
    },
    "ccai.attest": {"collect_composite", "gather_composite_collateral", "keys_from_pem"},
    "ccai.service": set(),
}

EVIDENCE_BUNDLE_NAMES = {
    "BINDING_NONCE_ONLY",
    "BINDING_SCHEMES",
    "BINDING_V1",
    "BUNDLE_FORMAT",
    "EVIDENCE_BUNDLE_VERSION",
    "CpuEvidence",
    "EvidenceBundle",
    "bundle_from_nonce_only_pair",
    "check_report_data",
    "composite_report_data",
    "derive_gpu_nonce",
    "dump_evidence_bundle",
    "gpu_evidence_digest",
    "load_evidence_bundle",
}

EMBEDDED_COLLATERAL_NAMES = {
    "cpu_collateral_from_bundle",
    "cpu_collateral_section",
    "embed_collateral",
    "load_embedded_collateral",
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_pinned_surface(name: str) -> None:
    assert set(importlib.import_module(name).__all__) == PINNED[name]


def test_bundle_format_lives_in_evidence_and_embedded_collateral_in_collateral() -> None:
    import ccai.collateral
    import ccai.evidence

    assert set(ccai.evidence.__all__) >= EVIDENCE_BUNDLE_NAMES
    assert set(ccai.collateral.__all__) >= EMBEDDED_COLLATERAL_NAMES
