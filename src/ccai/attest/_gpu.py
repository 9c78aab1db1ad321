"""Collect this machine's GPU evidence for a verifier nonce (the attest stage, GPU only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ccai.errors import DeviceNotSupported
from ccai.evidence import GpuEvidence

if TYPE_CHECKING:
    from ccai.device import GpuBackend

__all__ = ["collect_gpu_evidence"]

# NVIDIA's evidence JSON names the architecture in upper case (gpu-evidence.md §13.3).
_EVIDENCE_ARCH = {"hopper": "HOPPER", "blackwell": "BLACKWELL"}


def collect_gpu_evidence(backend: GpuBackend, nonce: bytes) -> list[GpuEvidence]:
    """Collect every GPU's attestation report and certificate chain for ``nonce``.

    Args:
        backend: An open backend (NVML, or the virtual CC GPU).
        nonce: 32 bytes, placed verbatim in each GPU's SPDM request.

    Returns:
        One :class:`~ccai.evidence.GpuEvidence` per GPU, in index order.

    Raises:
        DeviceNotSupported: no GPU, a GPU is neither Hopper nor Blackwell, or it cannot attest (CC off).
        DeviceError: the driver failed.
    """
    status = backend.status()
    if not status.gpus:
        raise DeviceNotSupported("no GPU found")
    items = []
    for gpu in status.gpus:
        arch = _EVIDENCE_ARCH.get(gpu.architecture.value)
        if arch is None:
            raise DeviceNotSupported(
                f"GPU {gpu.index} ({gpu.name}) is not a Hopper or Blackwell GPU: it has no CC attestation",
                index=gpu.index,
            )
        items.append(
            GpuEvidence(
                arch=arch,
                nonce=nonce,
                report=backend.attestation_report(gpu.index, nonce),
                certificate_chain=backend.certificate_chain(gpu.index),
            )
        )
    return items
