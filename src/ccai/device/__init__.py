"""device stage of ccai: the GPU confidential-computing control plane (see docs/gpu-cc-control.md).

One interface, :class:`GpuBackend` (with its data types), and the real implementation
:class:`NvmlBackend` for an NVIDIA driver (through NVML). The virtual CC GPU that satisfies the
same interface lives in :mod:`ccai.virtual`.
"""

from __future__ import annotations

from ccai.device._backend import (
    Architecture,
    CcMode,
    CcStatus,
    CpuCcCapability,
    GpuBackend,
    GpuInfo,
    MultiGpuMode,
)
from ccai.device._nvml import NvmlBackend

__all__ = [
    "Architecture",
    "CcMode",
    "CcStatus",
    "CpuCcCapability",
    "GpuBackend",
    "GpuInfo",
    "MultiGpuMode",
    "NvmlBackend",
]
