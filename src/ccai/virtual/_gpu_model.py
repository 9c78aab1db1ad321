"""The GPU models the virtual CC GPU can play, and the identifiers derived from them.

Every constant here is taken from a real NVIDIA report or certificate chain in
``shared/vectors/nvtrust`` (gpu-evidence.md §5.1, §6.1, §16.1), so virtual evidence exercises the
same parser paths as real evidence. Which measurement indices are active follows the real RIMs
(gpu-evidence.md §7.4); the digests themselves are ccai's own golden values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ccai.device import Architecture
from ccai.errors import UsageError

__all__ = [
    "GB100",
    "GB202",
    "GH100",
    "MODELS",
    "VirtualGpuModel",
    "check_driver_version",
    "check_vbios_version",
    "default_vbios_version",
    "driver_rim_id",
    "model_for",
    "vbios_rim_id",
    "vbios_tlv_bytes",
]

_DRIVER_RE = re.compile(r"^[0-9]{2,4}(\.[0-9]{1,4}){1,3}$")
_VBIOS_RE = re.compile(r"^[0-9A-Fa-f]{2}(\.[0-9A-Fa-f]{2}){4}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class VirtualGpuModel:
    """One GPU flavour: what NVML reports, what the opaque data carries, how the chain is named.

    Attributes:
        chip: Chip name as used in RIM ids and certificate names (``GH100``, ``GB100``, ``GB202``).
        architecture: Hopper or Blackwell.
        name: NVML product name.
        memory_total: Framebuffer size in bytes.
        project, project_sku, chip_sku: Opaque PROJECT / PROJECT_SKU / CHIP_SKU (VBIOS RIM id parts).
        project_sku_mod: Opaque PROJECT_SKU_MOD bytes (2).
        board_id: Opaque BOARD_ID (u32).
        gpu_info: Opaque GPU_INFO bytes (8).
        cprinfo: Opaque CPRINFO bytes (4).
        sys_enable_status: Opaque SYS_ENABLE_STATUS (Blackwell only, 2 bytes).
        nvdec0_status: Opaque NVDEC0_STATUS (``0x55`` disabled → RIM index 35 is not compared).
        chip_info: Opaque CHIP_INFO (Blackwell only).
        cert_chip: Chip label in the per-device certificate names (``GB20X`` for GB202).
        identity_chip: Chip label of the Identity CA (``GB20X`` for GB202).
        provisioner_suffix: Suffix of the Provisioner ICA name (``1`` on Hopper, ``00000`` on Blackwell).
        vbios_indices: Active golden indices measured by the firmware (VBIOS RIM).
        driver_indices: Active golden indices measured by the driver (driver RIM).
        devtools_indices: Golden indices whose runtime value changes in DevTools mode.
        drift_index: The golden index the MEASUREMENT_DRIFT fault changes.
        default_vbios: VBIOS version a new virtual GPU of this model reports.
    """

    chip: str
    architecture: Architecture
    name: str
    memory_total: int
    project: str
    project_sku: str
    chip_sku: str
    project_sku_mod: bytes
    board_id: int
    gpu_info: bytes
    cprinfo: bytes
    sys_enable_status: bytes | None
    nvdec0_status: int
    chip_info: str | None
    cert_chip: str
    identity_chip: str
    provisioner_suffix: str
    vbios_indices: frozenset[int]
    driver_indices: frozenset[int]
    devtools_indices: frozenset[int]
    drift_index: int
    default_vbios: str

    @property
    def rim_product(self) -> str:
        """The RIM ``product``/``name`` attribute: the chip name."""
        return self.chip


_MIB = 1024 * 1024

GH100 = VirtualGpuModel(
    chip="GH100",
    architecture=Architecture.HOPPER,
    name="NVIDIA H100 80GB HBM3",
    memory_total=81559 * _MIB,
    project="1010",
    project_sku="0200",
    chip_sku="882",
    project_sku_mod=b"\x00\x00",
    board_id=0x3B1,
    gpu_info=bytes.fromhex("8001000000000000"),
    cprinfo=bytes.fromhex("00c00100"),
    sys_enable_status=None,
    nvdec0_status=0x55,
    chip_info=None,
    cert_chip="GH100",
    identity_chip="GH100",
    provisioner_suffix="1",
    # gpu-evidence.md §7.4: GH100 VBIOS 0–6, 8–12; driver 7, 21–40.
    vbios_indices=frozenset([*range(7), *range(8, 13)]),
    driver_indices=frozenset([7, *range(21, 41)]),
    devtools_indices=frozenset([1, 26]),
    drift_index=9,
    default_vbios="96.00.74.00.1C",
)

GB100 = VirtualGpuModel(
    chip="GB100",
    architecture=Architecture.BLACKWELL,
    name="NVIDIA B200",
    memory_total=183359 * _MIB,
    project="G525",
    project_sku="0220",
    chip_sku="886",
    project_sku_mod=b"0\x00",
    board_id=0x66F,
    gpu_info=bytes.fromhex("a001000000000000"),
    cprinfo=bytes.fromhex("00000400"),
    sys_enable_status=bytes.fromhex("0707"),
    nvdec0_status=0x55,
    chip_info="GB100",
    cert_chip="GB100",
    identity_chip="GB100",
    provisioner_suffix="00000",
    # gpu-evidence.md §7.4: GB100 VBIOS 0–13, 15–20; the driver measures 21–41.
    vbios_indices=frozenset([*range(14), *range(15, 21)]),
    driver_indices=frozenset(range(21, 42)),
    devtools_indices=frozenset([1, 26]),
    drift_index=9,
    default_vbios="97.00.88.00.0F",
)

GB202 = VirtualGpuModel(
    chip="GB202",
    architecture=Architecture.BLACKWELL,
    name="NVIDIA RTX PRO 6000 Blackwell Server Edition",
    memory_total=97887 * _MIB,
    project="G153",
    project_sku="0210",
    chip_sku="895",
    project_sku_mod=b"0\x00",
    board_id=0x652,
    gpu_info=bytes.fromhex("b001000002000000"),
    cprinfo=bytes.fromhex("00000000"),
    sys_enable_status=bytes.fromhex("0700"),
    nvdec0_status=0xAA,
    chip_info="GB202",
    cert_chip="GB20X",
    identity_chip="GB20X",
    provisioner_suffix="00000",
    # The real GB202 report measures blocks 2–19 and 41–64 (gpu-evidence.md §16.1).
    vbios_indices=frozenset(range(20)),
    driver_indices=frozenset(range(40, 64)),
    devtools_indices=frozenset([1, 44]),
    drift_index=9,
    default_vbios="98.02.81.00.01",
)

MODELS: dict[str, VirtualGpuModel] = {m.chip: m for m in (GH100, GB100, GB202)}


def model_for(architecture: Architecture, chip: str | None = None) -> VirtualGpuModel:
    """The model for an architecture, optionally a named chip of it.

    Args:
        architecture: Hopper or Blackwell.
        chip: ``GH100``, ``GB100`` or ``GB202``; default: GH100 for Hopper, GB100 for Blackwell.

    Raises:
        UsageError: unknown chip, or a chip of another architecture.
    """
    if chip is None:
        if architecture is Architecture.HOPPER:
            return GH100
        if architecture is Architecture.BLACKWELL:
            return GB100
        raise UsageError(
            f"the virtual GPU has no {architecture.value!r} model", hint="use hopper or blackwell"
        )
    model = MODELS.get(chip.upper())
    if model is None:
        raise UsageError(f"unknown virtual GPU chip {chip!r}", expected=sorted(MODELS), actual=chip)
    if model.architecture is not architecture:
        raise UsageError(
            f"chip {model.chip} is {model.architecture.value}, not {architecture.value}",
            expected=model.architecture.value,
            actual=architecture.value,
        )
    return model


def default_vbios_version(model: VirtualGpuModel) -> str:
    """The VBIOS version a freshly created virtual GPU of ``model`` reports."""
    return model.default_vbios


def check_driver_version(version: str) -> str:
    """Validate a driver version such as ``570.124.06``.

    Raises:
        UsageError: not dotted decimal.
    """
    if not _DRIVER_RE.fullmatch(version):
        raise UsageError(f"not a driver version: {version!r}", hint="use e.g. 570.124.06")
    return version


def check_vbios_version(version: str) -> str:
    """Validate and upper-case a VBIOS version such as ``96.00.74.00.1C``.

    Raises:
        UsageError: not five dotted hex bytes.
    """
    if not _VBIOS_RE.fullmatch(version):
        raise UsageError(f"not a VBIOS version: {version!r}", hint="use e.g. 96.00.74.00.1C")
    return version.upper()


def vbios_tlv_bytes(version: str) -> bytes:
    """The 8-byte opaque VBIOS_VERSION value for ``version`` (gpu-evidence.md §5.1).

    The string ``AA.BB.CC.DD.EE`` is the hex of bytes [3], [2], [1], [0], [4] of the TLV.
    """
    p = bytes.fromhex(check_vbios_version(version).replace(".", ""))
    return bytes([p[3], p[2], p[1], p[0], p[4], 0, 0, 0])


def driver_rim_id(model: VirtualGpuModel, driver_version: str) -> str:
    """NVIDIA's driver RIM id (gpu-evidence.md §5.2): Hopper ``NV_GPU_DRIVER_GH100_<ver>``,
    Blackwell ``NV_GPU_CC_DRIVER_<CHIP_INFO>_<ver>``."""
    if model.architecture is Architecture.HOPPER:
        return f"NV_GPU_DRIVER_GH100_{driver_version}"
    return f"NV_GPU_CC_DRIVER_{model.chip_info or 'GB100'}_{driver_version}"


def vbios_rim_id(model: VirtualGpuModel, vbios_version: str) -> str:
    """NVIDIA's VBIOS RIM id: ``NV_GPU_VBIOS_<PROJECT>_<PROJECT_SKU>_<CHIP_SKU>_<VBIOS hex>``."""
    hexv = check_vbios_version(vbios_version).replace(".", "")
    return f"NV_GPU_VBIOS_{model.project}_{model.project_sku}_{model.chip_sku}_{hexv}"
