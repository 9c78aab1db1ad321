"""What every CPU TEE backend offers: CPU evidence for 64 report_data bytes.

:class:`~ccai.tee.ConfigfsTsm` (real TDX/SEV-SNP guests) and the virtual CPU TEE
(:class:`ccai.virtual.VirtualCpuTee`) both satisfy :class:`CpuTee`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["CpuQuote", "CpuTee"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CpuQuote:
    """CPU TEE evidence as collected in the guest.

    Attributes:
        type: ``"tdx"`` or ``"snp"``.
        evidence: The raw TDX quote or SEV-SNP report.
        provider: Who produced it (``tdx_guest``, ``sev_guest``, ``ccai-virtual-tdx`` …).
        certificates: PEM certificates the host supplied with the evidence (SNP: VCEK, ASK, ARK
            from the certificate table), or ``None``.
        simulated: True for the virtual CPU TEE.
    """

    type: str
    evidence: bytes
    provider: str
    certificates: bytes | None = None
    simulated: bool = False


class CpuTee(Protocol):
    """Anything that returns CPU evidence for 64 report_data bytes (configfs-tsm or the virtual TEE)."""

    def quote(self, report_data: bytes) -> CpuQuote:
        """A TDX quote or SNP report carrying ``report_data``."""
        ...
