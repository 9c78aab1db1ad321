"""RIM identifiers derived from a report's **signed** opaque data (gpu-evidence.md §5.2, §7.3).

The RIM service names manifests by device and firmware version. ccai builds those names from
the signed report only, never from NVML or from the unsigned fields of an evidence JSON file, so
an attacker who controls the host cannot steer the verifier to a different manifest.

=======================  ===================================================================
RIM                      id
=======================  ===================================================================
Hopper driver            ``NV_GPU_DRIVER_GH100_<driver>``
Blackwell driver         ``NV_GPU_CC_DRIVER_<CHIP_INFO>_<driver>`` (``GB100`` when the report
                         has no CHIP_INFO, as NVAT does)
GPU VBIOS                ``NV_GPU_VBIOS_<PROJECT>_<PROJECT_SKU>_<CHIP_SKU>_<VBIOS>`` with the
                         VBIOS version upper-case and without dots
NVSwitch (LS10) BIOS     ``NV_SWITCH_BIOS_5612_0002_890_<BIOS>``: switch reports carry no
                         project fields; NVIDIA's tools use these LS10 constants
=======================  ===================================================================

The architecture comes from GPU_INFO (type 4), whose first u32 is the chip architecture as the
driver numbers it (``NV2080_CTRL_MC_ARCH_INFO_ARCHITECTURE_*``: 0x180 GH100, 0x1A0 GB100,
0x1B0 GB20x). A report that names CHIP_INFO is Blackwell in any case.
"""

from __future__ import annotations

from typing import Literal

from ccai.errors import MalformedEvidence, UnsupportedEvidence
from ccai.evidence._spdm import AttestationReport

__all__ = ["device_arch", "driver_rim_id", "vbios_rim_id"]

Arch = Literal["HOPPER", "BLACKWELL", "LS10"]

_ARCH_BY_GPU_INFO: dict[int, Arch] = {0x180: "HOPPER", 0x1A0: "BLACKWELL", 0x1B0: "BLACKWELL"}
_BLACKWELL_DEFAULT_CHIP = "GB100"
# LS10 NVSwitch board constants used by NVIDIA's switch verifier (settings.PROJECT/PROJECT_SKU/CHIP_SKU).
_LS10_PROJECT, _LS10_PROJECT_SKU, _LS10_CHIP_SKU = "5612", "0002", "890"


def device_arch(report: AttestationReport) -> Arch:
    """The device architecture named by the signed report: ``HOPPER``, ``BLACKWELL`` or ``LS10``.

    Args:
        report: A parsed attestation report.

    Returns:
        The architecture in the spelling of NVIDIA's evidence JSON ``arch`` field.

    Raises:
        UnsupportedEvidence: the report's GPU_INFO names an architecture ccai does not know.
    """
    opaque = report.opaque_data
    if opaque.device == "switch":
        return "LS10"
    info = opaque.gpu_info
    if info is not None and len(info) >= 4:
        arch = _ARCH_BY_GPU_INFO.get(int.from_bytes(info[:4], "little"))
        if arch is not None:
            return arch
    if opaque.chip_info is not None:
        return "BLACKWELL"
    raise UnsupportedEvidence(
        "attestation report: GPU architecture not recognised from GPU_INFO",
        step="rim id",
        actual=None if info is None else info.hex(),
        hint="ccai knows Hopper (0x180) and Blackwell (0x1a0, 0x1b0)",
    )


def _require(value: str | None, name: str) -> str:
    if not value:
        raise MalformedEvidence(f"attestation report: no {name} in the opaque data", step="rim id")
    return value


def driver_rim_id(report: AttestationReport) -> str:
    """The id of the driver RIM for this GPU report.

    Args:
        report: A parsed GPU attestation report.

    Returns:
        ``NV_GPU_DRIVER_GH100_<ver>`` (Hopper) or ``NV_GPU_CC_DRIVER_<chip>_<ver>`` (Blackwell).

    Raises:
        UnsupportedEvidence: an NVSwitch report (it has no driver) or an unknown architecture.
        MalformedEvidence: the report has no DRIVER_VERSION.
    """
    arch = device_arch(report)
    if arch == "LS10":
        raise UnsupportedEvidence("an NVSwitch report has no driver RIM", step="rim id")
    driver = _require(report.opaque_data.driver_version, "DRIVER_VERSION")
    if arch == "HOPPER":
        return f"NV_GPU_DRIVER_GH100_{driver}"
    chip = report.opaque_data.chip_info or _BLACKWELL_DEFAULT_CHIP
    return f"NV_GPU_CC_DRIVER_{chip}_{driver}"


def vbios_rim_id(report: AttestationReport) -> str:
    """The id of the firmware RIM: the GPU VBIOS RIM, or the BIOS RIM of an LS10 NVSwitch.

    Args:
        report: A parsed attestation report.

    Returns:
        ``NV_GPU_VBIOS_<project>_<project_sku>_<chip_sku>_<VBIOS>`` or
        ``NV_SWITCH_BIOS_5612_0002_890_<BIOS>``.

    Raises:
        MalformedEvidence: a field the id needs is missing from the opaque data.
    """
    opaque = report.opaque_data
    version = _require(opaque.vbios_version, "VBIOS_VERSION").replace(".", "").upper()
    if opaque.device == "switch":
        return f"NV_SWITCH_BIOS_{_LS10_PROJECT}_{_LS10_PROJECT_SKU}_{_LS10_CHIP_SKU}_{version}"
    project = _require(opaque.project, "PROJECT")
    project_sku = _require(opaque.project_sku, "PROJECT_SKU")
    chip_sku = _require(opaque.chip_sku, "CHIP_SKU")
    return f"NV_GPU_VBIOS_{project}_{project_sku}_{chip_sku}_{version}"
