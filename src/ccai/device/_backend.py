"""The GPU confidential-computing control plane: one interface, two implementations.

:class:`GpuBackend` is what ``ccai gpu …`` and evidence collection talk to. ``NvmlBackend``
reads and writes a real driver through NVML (nvidia-ml-py); ``VirtualGpuBackend`` is the virtual CC
GPU whose state lives under ``$CCAI_HOME`` and whose evidence is signed by ccai's test PKI.

The fields follow what ``nvidia-smi conf-compute -q`` reports (gpu-evidence.md §3).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "Architecture",
    "CcMode",
    "CcStatus",
    "CpuCcCapability",
    "GpuBackend",
    "GpuInfo",
    "MultiGpuMode",
]


class Architecture(enum.StrEnum):
    """GPU architecture families with CC support (others are reported by name)."""

    HOPPER = "hopper"
    BLACKWELL = "blackwell"
    OTHER = "other"


class CcMode(enum.StrEnum):
    """The CC mode a GPU boots in: ``devtools`` is CC with debugging/profiling enabled (not secure)."""

    ON = "on"
    OFF = "off"
    DEVTOOLS = "devtools"


class MultiGpuMode(enum.StrEnum):
    """Multi-GPU CC mode: none, protected PCIe (PPCIe), or NVLink encryption."""

    NONE = "none"
    PROTECTED_PCIE = "protected-pcie"
    NVLINK_ENCRYPTION = "nvlink-encryption"


class CpuCcCapability(enum.StrEnum):
    """CPU confidential-computing capability as the driver sees it."""

    NONE = "none"
    SEV = "sev"
    SEV_SNP = "sev-snp"
    TDX = "tdx"


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuInfo:
    """One GPU's identity and CC-relevant memory facts.

    Memory sizes are in bytes; ``None`` where the driver does not report them.
    """

    index: int
    name: str
    uuid: str
    architecture: Architecture
    vbios_version: str
    board_id: int
    protected_memory_total: int | None = None
    protected_memory_used: int | None = None
    unprotected_memory_total: int | None = None
    unprotected_memory_used: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CcStatus:
    """System-wide CC state plus the GPUs: what ``ccai gpu status`` prints.

    Attributes:
        driver_version: NVIDIA driver version, e.g. ``"570.124.06"``.
        cc_feature: Whether the CC feature is on.
        devtools: Whether CC DevTools mode is on (measurements differ; never acceptable in production).
        environment: ``"production"``, ``"simulated"`` (virtual GPU) or ``"unknown"``.
        multi_gpu_mode: Protected PCIe / NVLink encryption / none.
        cpu_cc_capability: The CPU TEE the driver detected.
        gpu_cc_capable: Whether the GPUs support CC.
        gpus_ready: The "GPUs ready" gate that work submission waits on in CC mode.
        key_rotation_threshold: Max attacker advantage for key rotation, ``None`` if unsupported.
        gpus: Per-GPU facts, in index order.
        simulated: True for the virtual CC GPU. Simulated evidence is rejected unless asked for.
    """

    driver_version: str
    cc_feature: bool
    devtools: bool
    environment: str
    multi_gpu_mode: MultiGpuMode
    cpu_cc_capability: CpuCcCapability
    gpu_cc_capable: bool
    gpus_ready: bool
    key_rotation_threshold: int | None
    gpus: tuple[GpuInfo, ...]
    simulated: bool


@runtime_checkable
class GpuBackend(Protocol):
    """What ccai needs from a GPU driver. Implementations raise ``DeviceError`` subclasses."""

    def status(self) -> CcStatus:
        """Read the system and per-GPU CC state."""
        ...

    def attestation_report(self, index: int, nonce: bytes) -> bytes:
        """The signed SPDM attestation report of GPU ``index`` for a 32-byte ``nonce``."""
        ...

    def certificate_chain(self, index: int) -> bytes:
        """The attestation certificate chain of GPU ``index`` as concatenated PEM, leaf first."""
        ...

    def set_ready(self, ready: bool) -> None:
        """Set the system-wide GPUs-ready state."""
        ...

    def set_unprotected_memory(self, index: int, size: int) -> None:
        """Set GPU ``index``'s unprotected memory size in bytes."""
        ...

    def set_key_rotation_threshold(self, max_attacker_advantage: int) -> None:
        """Set the key-rotation threshold (maximum attacker advantage)."""
        ...

    def set_cc_mode(self, mode: CcMode) -> None:
        """Set the CC mode. Only the virtual GPU can do this; on real hardware it is a host operation."""
        ...
