"""Collect the NVSwitch evidence of a protected-PCIe (HGX) system for a verifier nonce.

On real hardware NVIDIA exposes switch attestation through NSCQ (``libnvidia-nscq``, shipped with
the NVSwitch driver and Fabric Manager). ccai looks for it and says plainly what is missing; the
virtual HGX system (``ccai gpu init --simulate --gpus 8 --switches 4 --ppcie``) produces the same
evidence in the real LS10 format.
"""

from __future__ import annotations

import ctypes.util
from typing import Protocol

from ccai.errors import DeviceNotSupported, DriverNotFound
from ccai.evidence import GpuEvidence

__all__ = ["SwitchSource", "collect_switch_evidence", "nscq_switches"]

_NSCQ_LIBRARY = "nvidia-nscq"


class SwitchSource(Protocol):
    """Where NVSwitch evidence comes from (the virtual HGX system, or NSCQ on real hardware)."""

    def attested_switches(self) -> int:
        """How many switches answer an attestation request."""
        ...

    def switch_attestation_report(self, index: int, nonce: bytes) -> bytes:
        """Switch ``index``'s signed report for ``nonce``."""
        ...

    def switch_certificate_chain(self, index: int) -> bytes:
        """Switch ``index``'s PEM chain, leaf first."""
        ...


def collect_switch_evidence(source: SwitchSource, nonce: bytes) -> list[GpuEvidence]:
    """Collect every NVSwitch's attestation report and certificate chain for ``nonce``.

    Args:
        source: The switches.
        nonce: 32 bytes, placed verbatim in each switch's SPDM request.

    Returns:
        One evidence item (``arch`` ``LS10``) per switch that answered, in index order.

    Raises:
        DeviceNotSupported: no switch answered.
    """
    count = source.attested_switches()
    if count < 1:
        raise DeviceNotSupported("no NVSwitch answered an attestation request")
    return [
        GpuEvidence(
            arch="LS10",
            nonce=nonce,
            report=source.switch_attestation_report(i, nonce),
            certificate_chain=source.switch_certificate_chain(i),
        )
        for i in range(count)
    ]


def nscq_switches() -> SwitchSource:
    """The NVSwitches of this machine through NVIDIA's NSCQ library.

    Raises:
        DriverNotFound: ``libnvidia-nscq`` is not installed (no NVSwitch driver / Fabric Manager).
        DeviceNotSupported: NSCQ is present, but ccai does not drive it: collect the switch
            evidence with NVIDIA's tools (``nvattest collect-evidence --device nvswitch``) and
            verify it with ``ccai verify switch``.
    """
    found = ctypes.util.find_library(_NSCQ_LIBRARY)
    if found is None:
        raise DriverNotFound(
            "NVIDIA's NSCQ library (libnvidia-nscq) is not installed: this machine has no NVSwitch "
            "driver, so its switches cannot be attested",
            hint="install the NVSwitch driver and Fabric Manager of an HGX system, or use --simulate",
        )
    raise DeviceNotSupported(
        f"NSCQ is present ({found}), but ccai does not collect switch evidence through it",
        hint="collect it with NVIDIA's nvattest and run `ccai verify switch EVIDENCE.json`",
    )
