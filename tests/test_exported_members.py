"""Pin the public surface, httpx's way: each package's ``__all__`` is exactly its public namespace.

Every public name a package's ``__init__`` binds is in ``__all__``, and every name in ``__all__`` is
bound. Sub-modules (which Python binds on the package as they are imported), the ``annotations``
feature of ``from __future__ import annotations`` and ``typing.TYPE_CHECKING`` are not part of the
surface.
"""

from __future__ import annotations

import importlib
import pkgutil
import types

import pytest

import ccai

PACKAGES = sorted(
    m.name for m in pkgutil.walk_packages(ccai.__path__, "ccai.") if m.ispkg and "._" not in m.name
)

# Bound by ``from __future__ import annotations`` and ``from typing import TYPE_CHECKING``.
_NOT_SURFACE = frozenset({"annotations", "TYPE_CHECKING"})

# Packages whose import needs an optional extra: (module that must be importable, extra).
_EXTRAS: dict[str, tuple[str, str]] = {
    "ccai.ehbp": ("pyhpke", "gateway"),
    "ccai.client": ("openai", "gateway"),
}


def _public_namespace(module: types.ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and name not in _NOT_SURFACE and not isinstance(value, types.ModuleType)
    }


def test_every_package_is_covered() -> None:
    assert "ccai.openai_protocol" in PACKAGES and "ccai.bench" in PACKAGES and "ccai.verify" in PACKAGES


@pytest.mark.parametrize("name", ["ccai", *PACKAGES])
def test_all_is_the_public_namespace(name: str) -> None:
    if name in _EXTRAS:
        needed, extra = _EXTRAS[name]
        pytest.importorskip(needed, reason=f"{name} needs the [{extra}] extra")
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert len(exported) == len(set(exported)), f"{name}.__all__ repeats a name"
    for member in exported:
        assert not member.startswith("_") or member == "__version__", f"{name} exports private {member}"
    missing = [member for member in exported if not hasattr(module, member)]
    assert not missing, f"{name}.__all__ names what the package does not define: {missing}"
    unlisted = _public_namespace(module) - set(exported)
    assert not unlisted, f"{name} has public names missing from __all__: {sorted(unlisted)}"


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
        "virtual_trust_anchors",
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
    "ccai.attest": {
        "NSCQ_LIBRARY_ENV",
        "NscqSwitches",
        "SwitchSource",
        "TrusteeAttester",
        "collect_composite",
        "collect_gpu_evidence",
        "collect_switch_evidence",
        "nscq_switches",
        "gather_composite_collateral",
        "keys_from_pem",
    },
    "ccai.kbs": {
        "Broker",
        "BrokerKey",
        "BrokerRefusal",
        "DEVTOOLS_HINT",
        "ENVELOPE_FORMAT",
        "EvidenceFunction",
        "FileKeyProvider",
        "KbsClient",
        "KbsRefused",
        "KbsSettings",
        "KeyProvider",
        "MASTER_KEY_ENV",
        "PROTOCOL_VERSION",
        "TrusteeEvidenceProvider",
        "admin_credential_path",
        "check_resource_name",
        "create_kbs_app",
        "decrypt_jwe",
        "encrypt_jwe",
        "fetch_kek",
        "fetch_resource",
        "public_jwk",
        "read_admin_credential",
        "record_hash",
        "refusal_reason",
        "runtime_data_hash",
        "verify_audit_chain",
    },
    "ccai.service": {
        "ENVELOPE_FORMAT",
        "AuditEntry",
        "Database",
        "MasterKey",
        "Repository",
        "ServiceSettings",
        "StoredPolicy",
        "create_api_key",
        "create_app",
        "default_database_url",
        "load_master_key",
        "open_database",
        "prepare_database",
        "rotate",
    },
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
    "switch_evidence_digest",
    "evidence_bundle_from_json",
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
