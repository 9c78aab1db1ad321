"""Collect the NVSwitch evidence of a protected-PCIe (HGX) system for a verifier nonce.

On real hardware NVIDIA exposes switch attestation through NSCQ (``libnvidia-nscq``, shipped with
the NVSwitch driver and Fabric Manager); ccai drives it with ctypes (:mod:`ccai.attest._nscq`) and
says plainly what is missing where it is absent; the
virtual HGX system (``ccai gpu init --simulate --gpus 8 --switches 4 --ppcie``) produces the same
evidence in the real LS10 format.
"""

from __future__ import annotations

from typing import Protocol

from ccai.attest._nscq import NscqSwitches, load_nscq_library
from ccai.errors import DeviceNotSupported
from ccai.evidence import GpuEvidence

__all__ = ["SwitchSource", "collect_switch_evidence", "nscq_switches"]


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


def nscq_switches(library: str | None = None) -> NscqSwitches:
    """The NVSwitches of this machine through NVIDIA's NSCQ library, checked ready for PPCIe.

    Loads ``libnvidia-nscq`` (or ``library`` / ``$CCAI_NSCQ_LIBRARY``), enumerates the switches and
    runs NVIDIA's ppcie-verifier switch pre-checks (every switch an LS10 in TNVL mode and locked).

    Args:
        library: An NSCQ library file to load instead of the system's.

    Raises:
        DriverNotFound: ``libnvidia-nscq`` is not installed (no NVSwitch driver / Fabric Manager),
            or cannot be loaded.
        DeviceError: an NSCQ call failed (the error names NSCQ's return code).
        DeviceNotSupported: no switch, or a switch not ready for protected PCIe.
    """
    source = NscqSwitches(load_nscq_library(library))
    source.check_ready()
    return source
