"""The trusted result of verification. Only the verifier constructs it (STYLE.md rule 5).

``VerifiedEvidence`` is the one type the token issuer and the key broker accept. Its constructor
requires a private capability object that only ``ccai.verify`` holds, so code elsewhere cannot
fabricate a "verified" result by accident.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ccai.errors import UsageError
from ccai.verify._steps import StepResult

__all__ = ["VerifiedEvidence", "VerifiedGpu", "VerifiedSwitch"]


class _VerifierCapability:
    """Marker held only by ccai.verify; passing it proves the object comes from the verifier."""

    __slots__ = ()


_CAPABILITY = _VerifierCapability()


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedGpu:
    """One GPU that passed verification.

    Attributes:
        index: The GPU's position in the evidence list (``GPU-<index>`` in tokens).
        claims: The per-GPU claims with NVIDIA's claims-3.0 (or 2.0) names.
    """

    index: int
    claims: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedSwitch:
    """One NVSwitch that passed verification.

    Attributes:
        index: The switch's position in the evidence list (``SWITCH-<index>`` in tokens).
        claims: The per-switch claims with NVIDIA's ``x-nvidia-switch-…`` names.
    """

    index: int
    claims: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedEvidence:
    """Evidence that passed every verification step and the appraisal policy.

    Attributes:
        nonce: The verifier nonce the evidence is bound to.
        gpus: Per-GPU results, in evidence order.
        overall_claims: Claims about the whole set (e.g. ``x-nvidia-overall-att-result``).
        cpu_claims: Claims of the CPU TEE evidence, when a CPU quote/report was verified.
        simulated: True when any evidence came from virtual hardware (``x-ccai-simulated``).
        verified_at: The verification time every validity check used.
        claims_version: ``"3.0"`` or ``"2.0"``.
        steps: The per-step results of the checklist that produced it (every step ``ok`` or
            ``skipped``), for renderers.
        switches: Per-NVSwitch results (switch and protected-PCIe verification), in evidence order.
    """

    nonce: bytes
    gpus: tuple[VerifiedGpu, ...]
    overall_claims: Mapping[str, Any]
    verified_at: datetime
    simulated: bool
    claims_version: str = "3.0"
    cpu_claims: Mapping[str, Any] | None = None
    steps: tuple[StepResult, ...] = ()
    switches: tuple[VerifiedSwitch, ...] = ()
    _capability: _VerifierCapability = field(repr=False, compare=False, default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self._capability is not _CAPABILITY:
            raise UsageError("VerifiedEvidence can only be created by ccai.verify")


def _issue(**fields: Any) -> VerifiedEvidence:
    """Create a :class:`VerifiedEvidence` (for ccai.verify's own use only)."""
    return VerifiedEvidence(**fields, _capability=_CAPABILITY)
