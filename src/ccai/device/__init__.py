"""device stage of ccai: the GPU confidential-computing control plane (see docs/gpu-cc-control.md).

One interface, :class:`GpuBackend`, and two implementations: :class:`NvmlBackend` for a real
NVIDIA driver (through NVML) and the virtual CC GPU for tests, CI and the demo.
:func:`open_backend` picks one.
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
from ccai.device._virtual import VirtualFault, VirtualGpuBackend, VirtualTrustAnchors
from ccai.device._virtual_pki import PkiCredential, VirtualPki, VirtualRevocation

__all__ = [
    "Architecture",
    "CcMode",
    "CcStatus",
    "CpuCcCapability",
    "GpuBackend",
    "GpuInfo",
    "MultiGpuMode",
    "NvmlBackend",
    "PkiCredential",
    "VirtualFault",
    "VirtualGpuBackend",
    "VirtualPki",
    "VirtualRevocation",
    "VirtualTrustAnchors",
    "open_backend",
]


def open_backend(*, simulate: bool) -> GpuBackend:
    """Open the GPU backend a command asked for.

    Args:
        simulate: True for the virtual CC GPU under ``$CCAI_HOME``; False for the real driver (NVML).

    Raises:
        DriverNotFound: ``simulate`` is False and there is no NVIDIA driver.
        DeviceError: NVML failed to initialise, or the virtual GPU's state cannot be used.

    Returns:
        An open backend. An :class:`NvmlBackend` should be closed (it is a context manager).
    """
    if simulate:
        return VirtualGpuBackend.open()
    return NvmlBackend.open()
