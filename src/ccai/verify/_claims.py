"""Per-GPU and overall claims with NVIDIA's names (claims 3.0, or 2.0 on request).

Keys follow what NRAS v4 / NVAT emit for claims 3.0 and what the Python verifier / NRAS v3 emit
for claims 2.0 (gpu-evidence.md §9), so NVIDIA's JSON and Rego policies apply unchanged. Token
fields (``iss``, ``iat``, ``nbf``, ``exp``, ``jti``) are added by the token issuer, not here.

ccai-only claims are prefixed ``x-ccai-``:

=============================  ===========================================================
``x-ccai-simulated``           true when the evidence chains to ccai's virtual-GPU test PKI
``x-ccai-cc-mode``             ``on`` / ``devtools`` / ``off`` as the platform reported it
                               (unsigned; null when not reported)
``x-ccai-gpu-arch``            ``HOPPER`` / ``BLACKWELL`` from the signed GPU_INFO
``x-ccai-gpu-chip-info``       CHIP_INFO (Blackwell) or null
``x-ccai-gpu-feature-flag``    ``spt`` / ``mpt`` / ``ppcie`` / null (FEATURE_FLAG absent)
``x-ccai-gpu-nvdec0-status``   ``enabled`` / ``disabled`` / null
``x-ccai-gpu-ppcie-status``    ``enabled`` / ``disabled`` / null
``x-ccai-gpu-driver-rim-id``   the RIM ids used
``x-ccai-gpu-vbios-rim-id``
``x-ccai-measurements``        ``{compared, skipped}`` index lists
=============================  ===========================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ccai.errors import UsageError
from ccai.verify._measurements import MeasurementComparison

__all__ = ["CLAIMS_VERSIONS", "ChainFacts", "GpuFacts", "gpu_claims", "overall_claims"]

CLAIMS_VERSIONS = ("3.0", "2.0")
_FEATURE_NAMES = {0: "spt", 1: "mpt", 2: "ppcie"}
_STATUS_NAMES = {0xAA: "enabled", 0x55: "disabled"}


def _iso(when: datetime) -> str:
    """ISO time of a certificate expiry the way NRAS writes it (``9999-12-31T23:59:59Z``)."""
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainFacts:
    """What the verifier established about one certificate chain.

    Attributes:
        expiration: Earliest ``notAfter``.
        ocsp_status: ``good`` / ``revoked`` / ``unknown`` / ``not-checked``.
        revocation_reason: RFC 5280 reason name when revoked.
    """

    expiration: datetime
    ocsp_status: str
    revocation_reason: str | None = None

    def as_claim(self) -> dict[str, Any]:
        """The claims-3.0 chain object."""
        return {
            "x-nvidia-cert-expiration-date": _iso(self.expiration),
            # An expired or broken chain raises before claims exist; a revoked one is reported.
            "x-nvidia-cert-status": "revoked" if self.ocsp_status == "revoked" else "valid",
            "x-nvidia-cert-ocsp-status": self.ocsp_status,
            "x-nvidia-cert-revocation-reason": self.revocation_reason,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuFacts:
    """Everything the checklist established for one GPU, from which claims are written.

    Attributes:
        index: Position in the evidence list.
        arch: ``HOPPER`` or ``BLACKWELL`` (signed GPU_INFO).
        nonce: The verifier nonce (the report's request nonce equals it).
        driver_version: Signed DRIVER_VERSION.
        vbios_version: Signed VBIOS_VERSION (upper-case).
        hwmodel: CN of certificate [1] of the device chain.
        ueid: Leaf certificate serial number (decimal string).
        oemid: Driver RIM FirmwareManufacturerId.
        fwid_match: FWID check result (true also when the report carries no FWID).
        device_chain: Facts about the device chain.
        driver_rim_chain: Facts about the driver RIM chain.
        vbios_rim_chain: Facts about the VBIOS RIM chain.
        driver_rim_id: The driver RIM id.
        vbios_rim_id: The VBIOS RIM id.
        comparison: The measurement comparison.
        simulated: True for the virtual GPU's test PKI.
        cc_mode: Reported CC mode or None.
        chip_info: CHIP_INFO or None.
        feature_flag: FEATURE_FLAG or None.
        nvdec0_status: NVDEC0_STATUS or None.
        ppcie_status: PROTECTED_PCIE_STATUS or None.
        switch_pdis: PDIs of the NVSwitches (PPCIe), as reported.
        warnings: Human warnings (e.g. a tolerated certificate hold).
    """

    index: int
    arch: str
    nonce: bytes
    driver_version: str
    vbios_version: str
    hwmodel: str
    ueid: str
    oemid: str | None
    fwid_match: bool
    device_chain: ChainFacts
    driver_rim_chain: ChainFacts
    vbios_rim_chain: ChainFacts
    driver_rim_id: str
    vbios_rim_id: str
    comparison: MeasurementComparison
    simulated: bool
    cc_mode: str | None
    chip_info: str | None
    feature_flag: int | None
    nvdec0_status: int | None
    ppcie_status: int | None
    switch_pdis: tuple[bytes, ...] = ()
    warnings: tuple[str, ...] = ()


def _ccai_claims(f: GpuFacts) -> dict[str, Any]:
    return {
        "x-ccai-simulated": f.simulated,
        "x-ccai-cc-mode": f.cc_mode,
        "x-ccai-gpu-arch": f.arch,
        "x-ccai-gpu-chip-info": f.chip_info,
        "x-ccai-gpu-feature-flag": None
        if f.feature_flag is None
        else _FEATURE_NAMES.get(f.feature_flag, str(f.feature_flag)),
        "x-ccai-gpu-nvdec0-status": None if f.nvdec0_status is None else _STATUS_NAMES.get(f.nvdec0_status),
        "x-ccai-gpu-ppcie-status": None if f.ppcie_status is None else _STATUS_NAMES.get(f.ppcie_status),
        "x-ccai-gpu-driver-rim-id": f.driver_rim_id,
        "x-ccai-gpu-vbios-rim-id": f.vbios_rim_id,
        "x-ccai-measurements": {
            "compared": list(f.comparison.compared),
            "skipped": list(f.comparison.skipped),
        },
    }


def _switch_pdis(f: GpuFacts) -> list[str]:
    # NRAS lists the PDIs sorted, unique, upper-case and byte-reversed (gpu-evidence.md §9.2);
    # all-zero entries are disabled links.
    return sorted({pdi[::-1].hex().upper() for pdi in f.switch_pdis if any(pdi)})


def gpu_claims(f: GpuFacts, *, version: str = "3.0") -> dict[str, Any]:
    """The per-GPU claims for ``GPU-<index>``.

    Args:
        f: What the checklist established.
        version: ``"3.0"`` (default, NRAS v4 / NVAT names) or ``"2.0"`` (flat booleans).

    Returns:
        A JSON-serialisable dict.

    Raises:
        UsageError: an unknown claims version.
    """
    success = f.comparison.success
    common: dict[str, Any] = {
        "measres": "success" if success else "fail",
        "x-nvidia-gpu-arch-check": True,
        "x-nvidia-gpu-driver-version": f.driver_version,
        "x-nvidia-gpu-vbios-version": f.vbios_version,
        "x-nvidia-gpu-attestation-report-parsed": True,
        "x-nvidia-gpu-attestation-report-nonce-match": True,
        "x-nvidia-gpu-attestation-report-signature-verified": True,
        "x-nvidia-gpu-driver-rim-fetched": True,
        "x-nvidia-gpu-driver-rim-schema-validated": True,
        "x-nvidia-gpu-driver-rim-signature-verified": True,
        "x-nvidia-gpu-driver-rim-measurements-available": True,
        "x-nvidia-gpu-vbios-rim-fetched": True,
        "x-nvidia-gpu-vbios-rim-schema-validated": True,
        "x-nvidia-gpu-vbios-rim-signature-verified": True,
        "x-nvidia-gpu-vbios-rim-measurements-available": True,
        "x-nvidia-gpu-vbios-index-no-conflict": True,
        "eat_nonce": f.nonce.hex(),
        "hwmodel": f.hwmodel,
        "ueid": f.ueid,
        "oemid": f.oemid,
    }
    warning = "; ".join(f.warnings) if f.warnings else None
    if version == "3.0":
        claims = {
            **common,
            "x-nvidia-gpu-attestation-report-cert-chain": f.device_chain.as_claim(),
            "x-nvidia-gpu-attestation-report-cert-chain-fwid-match": f.fwid_match,
            "x-nvidia-gpu-driver-rim-cert-chain": f.driver_rim_chain.as_claim(),
            "x-nvidia-gpu-driver-rim-version-match": True,
            "x-nvidia-gpu-vbios-rim-cert-chain": f.vbios_rim_chain.as_claim(),
            "x-nvidia-gpu-vbios-rim-version-match": True,
            "secboot": True if success else None,
            "dbgstat": "disabled" if success else None,
            "x-nvidia-attestation-warning": warning,
            "x-nvidia-device-type": "gpu",
            "x-nvidia-gpu-claims-version": "3.0",
            "x-nvidia-mismatch-measurement-records": (
                None if success else [r.as_claim() for r in f.comparison.mismatches]
            ),
        }
        if f.ppcie_status == 0xAA:
            claims["x-nvidia-gpu-switch-pdis"] = _switch_pdis(f)
    elif version == "2.0":
        claims = {
            **common,
            "x-nvidia-gpu-attestation-report-cert-chain-validated": True,
            "x-nvidia-gpu-driver-rim-cert-validated": True,
            "x-nvidia-gpu-vbios-rim-cert-validated": True,
        }
        if success:
            # Claims 2.0 carry secboot/dbgstat only on success (gpu-evidence.md §9.1).
            claims["secboot"] = True
            claims["dbgstat"] = "disabled"
        if warning:
            claims["x-nvidia-attestation-warning"] = warning
    else:
        raise UsageError(f"unknown claims version {version!r}", expected=list(CLAIMS_VERSIONS))
    claims.update(_ccai_claims(f))
    return claims


def overall_claims(
    *,
    nonce: bytes,
    version: str,
    gpus: list[Mapping[str, Any]] | tuple[Mapping[str, Any], ...],
    simulated: bool,
) -> dict[str, Any]:
    """Claims about the whole evidence set (the overall JWT's body, minus token fields).

    ``x-nvidia-overall-att-result`` follows NVAT's built-in overall-result rule: every GPU has
    ``measres == "success"`` and every chain object (claims 3.0) has OCSP status ``good``. A ccai
    policy may accept evidence for which it is false (e.g. an allowed mismatch, offline revocation).
    """
    result = True
    for claims in gpus:
        if claims.get("measres") != "success":
            result = False
        for value in claims.values():
            if isinstance(value, Mapping) and "x-nvidia-cert-ocsp-status" in value:
                result = result and value["x-nvidia-cert-ocsp-status"] == "good"
    return {
        "x-nvidia-ver": version,
        "x-nvidia-overall-att-result": result and bool(gpus),
        "eat_nonce": nonce.hex(),
        "x-ccai-simulated": simulated,
    }
