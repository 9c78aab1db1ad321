"""Evidence in Trustee's encoding, collected from this machine's CPU TEE and GPUs.

:class:`TrusteeAttester` plays the part of Trustee's attestation-agent attesters for a TDX guest
with NVIDIA GPUs (guest-components ``attestation-agent/attester``): the guest client hands it
the digests it computed over the RCAR runtime-data, and it returns the evidence exactly as
Trustee's attesters encode it:

* :meth:`TrusteeAttester.additional_evidence` — ``{"nvidia": {"device_evidence_list": [...]}}``
  as a JSON string; every GPU's SPDM nonce is the first 32 bytes of the given digest (Trustee's
  NVIDIA attester: ``report_data[0..32]``);
* :meth:`TrusteeAttester.primary_evidence` — ``{"quote", "cc_eventlog", "aa_eventlog"}`` with the
  given digest zero-padded to 64 bytes as the TDX report_data (Trustee's TDX attester).
"""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

from ccai.errors import DeviceNotSupported, UsageError

if TYPE_CHECKING:
    from ccai.device import GpuBackend
    from ccai.tee import CpuTee

__all__ = ["TrusteeAttester"]

_REPORT_DATA_SIZE = 64
_SPDM_NONCE_SIZE = 32
_ARCH = {"hopper": "HOPPER", "blackwell": "BLACKWELL"}


class TrusteeAttester:
    """Trustee-encoded evidence from a TDX guest's CPU TEE and (optionally) its GPUs.

    Args:
        cpu: The CPU TEE (configfs-tsm, or the virtual TDX guest).
        gpu: The GPU backend (NVML, or the virtual GPUs); ``None`` for a CPU-only guest.
    """

    def __init__(self, *, cpu: CpuTee, gpu: GpuBackend | None = None) -> None:
        self.cpu, self.gpu = cpu, gpu

    def additional_evidence(self, runtime_data_hash: bytes) -> str:
        """Every GPU's evidence for the device runtime-data digest (``""`` without GPUs).

        Args:
            runtime_data_hash: The digest of the device runtime-data (at least 32 bytes; shorter
                is zero-padded, as Trustee's attester does).

        Raises:
            DeviceNotSupported: a GPU that cannot attest; DeviceError: the driver failed.
        """
        if self.gpu is None:
            return ""
        nonce = bytes(runtime_data_hash[:_SPDM_NONCE_SIZE]).ljust(_SPDM_NONCE_SIZE, b"\0")
        devices: list[dict[str, Any]] = []
        for info in self.gpu.status().gpus:
            arch = _ARCH.get(info.architecture.value)
            if arch is None:
                raise DeviceNotSupported(
                    f"GPU {info.index} ({info.name}) has no CC attestation", index=info.index
                )
            devices.append(
                {
                    "arch": arch,
                    "uuid": info.uuid,
                    "evidence": base64.b64encode(self.gpu.attestation_report(info.index, nonce)).decode(),
                    "certificate": base64.b64encode(self.gpu.certificate_chain(info.index)).decode(),
                }
            )
        if not devices:
            return ""
        return json.dumps({"nvidia": {"device_evidence_list": devices}}, separators=(",", ":"))

    def primary_evidence(self, report_data: bytes) -> dict[str, Any]:
        """The TDX quote carrying ``report_data`` (zero-padded to 64 bytes), Trustee-encoded.

        Raises:
            UsageError: more than 64 bytes, or the CPU TEE is not TDX (Trustee encodes SEV-SNP
                reports differently; ccai does not produce that encoding).
        """
        if len(report_data) > _REPORT_DATA_SIZE:
            raise UsageError("TDX report_data is at most 64 bytes", actual=len(report_data))
        quote = self.cpu.quote(bytes(report_data).ljust(_REPORT_DATA_SIZE, b"\0"))
        if quote.type != "tdx":
            raise UsageError("Trustee's evidence encoding is produced for TDX guests only", actual=quote.type)
        return {"quote": base64.b64encode(quote.evidence).decode(), "cc_eventlog": None, "aa_eventlog": None}
