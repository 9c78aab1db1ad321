"""Trustee's own RCAR evidence encoding: parse it and compute what it must commit to (no I/O).

Trustee's guest client (guest-components ``kbs_protocol``, ``rcar_client.rs``) and its KBS
(``kbs/src/attestation/backend.rs``) agree on this layout of ``tee-evidence``::

    {"primary_evidence": <the CPU TEE's evidence>, "additional_evidence": "<JSON string>"}

and on two commitments, both SHA-384 of canonical JSON (keys sorted, compact separators):

* **device runtime-data** ``{"nonce", "tee-pubkey"}`` — its digest is handed to every additional
  attester. Trustee's NVIDIA attester (``attester/src/nvidia``) puts the digest's first 32 bytes
  into every GPU's SPDM GET_MEASUREMENTS request as the nonce, and Trustee's NVIDIA verifier
  (``deps/verifier/src/nvidia``) expects exactly that nonce.
* **primary runtime-data** ``{"nonce", "tee-pubkey", "additional-evidence": <the string>}`` — its
  digest, zero-padded to 64 bytes, is the TDX quote's report_data. The CPU quote therefore
  commits to the challenge, the tee-pubkey and the exact GPU evidence at once.

Shapes: TDX primary evidence ``{"quote": base64, "cc_eventlog": base64 CCEL | null,
"aa_eventlog": string | null}`` (``deps/verifier/src/tdx``); additional evidence a JSON map of TEE
name → evidence, where ``"nvidia"`` is ``{"device_evidence_list": [{"arch", "uuid", "evidence":
base64 (or hex) SPDM report, "certificate": base64 of the PEM chain}]}``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeGuard

from ccai._json import load_json
from ccai.errors import MalformedEvidence, UnsupportedEvidence
from ccai.evidence import GpuEvidence
from ccai.kbs._jose import canonical_json

__all__ = [
    "TRUSTEE_BINDING",
    "TrusteeEvidence",
    "device_runtime_hash",
    "gpu_nonce",
    "is_trustee_encoding",
    "parse_trustee_evidence",
    "primary_report_data",
]

#: ``x-ccai-binding`` of evidence verified in Trustee's encoding.
TRUSTEE_BINDING = "trustee/rcar"
_REPORT_DATA_SIZE = 64
_SPDM_NONCE_SIZE = 32
_MAX_GPUS = 64
_KNOWN_ARCHES = {"hopper": "HOPPER", "blackwell": "BLACKWELL"}


@dataclass(frozen=True, slots=True, kw_only=True)
class TrusteeEvidence:
    """Trustee-encoded evidence, decoded but not verified.

    Attributes:
        tee: ``"tdx"`` (the only primary TEE ccai reads in this encoding).
        quote: The raw TDX quote.
        additional: The ``additional_evidence`` string exactly as sent (the report_data covers it).
        gpus: The NVIDIA devices of the additional evidence, with the expected SPDM nonce.
        uuids: Each device's ``uuid`` as the attester wrote it (unsigned, informational).
    """

    tee: str
    quote: bytes
    additional: str
    gpus: tuple[GpuEvidence, ...]
    uuids: tuple[str, ...]


def is_trustee_encoding(tee_evidence: object) -> TypeGuard[Mapping[str, Any]]:
    """Whether ``tee-evidence`` is Trustee's ``{"primary_evidence", "additional_evidence"}`` object."""
    return isinstance(tee_evidence, Mapping) and "primary_evidence" in tee_evidence


def _runtime(runtime: Mapping[str, Any]) -> dict[str, Any]:
    # Trustee rebuilds runtime-data from these two fields only (kbs_types::RuntimeData).
    return {"nonce": runtime.get("nonce"), "tee-pubkey": runtime.get("tee-pubkey")}


def device_runtime_hash(runtime: Mapping[str, Any]) -> bytes:
    """SHA-384 of the canonical device runtime-data ``{"nonce", "tee-pubkey"}`` (48 bytes)."""
    return hashlib.sha384(canonical_json(_runtime(runtime))).digest()


def gpu_nonce(runtime: Mapping[str, Any]) -> bytes:
    """The SPDM nonce every GPU must have signed: the first 32 bytes of :func:`device_runtime_hash`."""
    return device_runtime_hash(runtime)[:_SPDM_NONCE_SIZE]


def primary_report_data(runtime: Mapping[str, Any], additional: str) -> bytes:
    """The 64-byte report_data the TDX quote must carry: SHA-384 of the canonical primary
    runtime-data ``{"nonce", "tee-pubkey", "additional-evidence"}``, zero-padded."""
    digest = hashlib.sha384(canonical_json({**_runtime(runtime), "additional-evidence": additional})).digest()
    return digest + b"\0" * (_REPORT_DATA_SIZE - len(digest))


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise MalformedEvidence(f"Trustee evidence: {what} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedEvidence(f"Trustee evidence: {what} is not base64") from None


def _report(value: object, index: int) -> bytes:
    # Trustee's NVIDIA verifier accepts hex (the original encoding) and base64, hex first.
    if isinstance(value, str):
        try:
            return bytes.fromhex(value)
        except ValueError:
            pass
    return _b64(value, f"nvidia device {index} evidence")


def _nvidia(doc: object, nonce: bytes) -> tuple[tuple[GpuEvidence, ...], tuple[str, ...]]:
    devices = doc.get("device_evidence_list") if isinstance(doc, Mapping) else None
    if not isinstance(devices, list) or not devices or len(devices) > _MAX_GPUS:
        raise MalformedEvidence("Trustee evidence: nvidia needs a non-empty device_evidence_list")
    items, uuids = [], []
    for i, device in enumerate(devices):
        if not isinstance(device, Mapping):
            raise MalformedEvidence(f"Trustee evidence: nvidia device {i} is not an object")
        arch = device.get("arch")
        if not isinstance(arch, str) or arch.lower() not in _KNOWN_ARCHES:
            raise UnsupportedEvidence(
                f"Trustee evidence: nvidia device {i} is not a Hopper or Blackwell GPU", actual=str(arch)[:20]
            )
        uuid = device.get("uuid", "unknown")
        items.append(
            GpuEvidence(
                arch=_KNOWN_ARCHES[arch.lower()],
                nonce=nonce,
                report=_report(device.get("evidence"), i),
                certificate_chain=_b64(device.get("certificate"), f"nvidia device {i} certificate"),
            )
        )
        uuids.append(uuid if isinstance(uuid, str) else "unknown")
    return tuple(items), tuple(uuids)


def parse_trustee_evidence(
    tee_evidence: Mapping[str, Any], *, tee: str, runtime: Mapping[str, Any]
) -> TrusteeEvidence:
    """Decode Trustee-encoded ``tee-evidence`` for the session's ``tee``.

    Args:
        tee_evidence: ``{"primary_evidence", "additional_evidence"}``.
        tee: The TEE named in the auth request (Trustee picks the verifier by it).
        runtime: The request's runtime-data (gives the GPUs' expected SPDM nonce).

    Raises:
        UnsupportedEvidence: a primary TEE other than TDX, or additional evidence other than NVIDIA's.
        MalformedEvidence: anything else malformed.
    """
    if tee != "tdx":
        raise UnsupportedEvidence(
            "Trustee's evidence encoding is read for TDX guests only", expected="tdx", actual=tee[:32]
        )
    primary = tee_evidence.get("primary_evidence")
    if not isinstance(primary, Mapping):
        raise MalformedEvidence("Trustee evidence: primary_evidence must be an object")
    quote = _b64(primary.get("quote"), "primary_evidence.quote")
    additional = tee_evidence.get("additional_evidence", "")
    if not isinstance(additional, str):
        raise MalformedEvidence("Trustee evidence: additional_evidence must be a JSON string")
    gpus: tuple[GpuEvidence, ...] = ()
    uuids: tuple[str, ...] = ()
    if additional:
        extra = load_json(additional.encode("utf-8"), what="Trustee additional_evidence")
        if not isinstance(extra, dict):
            raise MalformedEvidence("Trustee evidence: additional_evidence must map TEE names to evidence")
        unknown = sorted(set(extra) - {"nvidia"})
        if unknown:
            raise UnsupportedEvidence(
                "Trustee evidence: only NVIDIA additional evidence is read", actual=", ".join(unknown)[:80]
            )
        if "nvidia" in extra:
            gpus, uuids = _nvidia(extra["nvidia"], gpu_nonce(runtime))
    return TrusteeEvidence(tee=tee, quote=quote, additional=additional, gpus=gpus, uuids=uuids)
