"""NVIDIA's GPU evidence JSON, as ``nvattest collect-evidence`` writes it and NRAS accepts it.

A JSON list with one object per device::

    [{"arch": "HOPPER", "nonce": "<64 hex>", "evidence": "<base64 report>",
      "certificate": "<base64 of the PEM chain>"}]

Newer NVAT files add ``"version": "1.0"``, ``"driver_version"`` and ``"vbios_version"``
(gpu-evidence.md §13.3, §16.2); they are kept when present. ``arch`` is ``HOPPER``, ``BLACKWELL``
or ``LS10`` (NVSwitch), in any ASCII case (``Blackwell`` occurs); anything else is refused. Other
keys are rejected: an edge that silently drops fields would make a round trip lossy. Nothing is
verified here — not even that ``nonce`` equals the nonce inside the report; that is the verifier's
step.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from ccai._json import load_json
from ccai.errors import MalformedEvidence
from ccai.evidence._certs import parse_cert_chain
from ccai.evidence._spdm import AttestationReport, parse_attestation_report

__all__ = ["KNOWN_ARCHES", "GpuEvidence", "dump_evidence_json", "parse_evidence_json"]

#: The ``arch`` values NVIDIA's evidence JSON uses (compared case-insensitively, ASCII only).
KNOWN_ARCHES = ("HOPPER", "BLACKWELL", "LS10")

_NONCE_SIZE = 32
_REQUIRED = ("arch", "nonce", "evidence", "certificate")
_OPTIONAL = ("version", "driver_version", "vbios_version")


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuEvidence:
    """One device's evidence in NVIDIA's JSON shape, decoded but not parsed further.

    Attributes:
        arch: ``"HOPPER"``, ``"BLACKWELL"`` or ``"LS10"`` as written by the producer.
        nonce: The 32-byte nonce the producer says it used.
        report: The raw attestation report (binary).
        certificate_chain: The device certificate chain, concatenated PEM, leaf first.
        version: The file format version (``"1.0"``) when the producer wrote one.
        driver_version: The unsigned driver version the producer added, if any (informational).
        vbios_version: The unsigned VBIOS version the producer added, if any (informational).
    """

    arch: str
    nonce: bytes
    report: bytes
    certificate_chain: bytes
    version: str | None = None
    driver_version: str | None = None
    vbios_version: str | None = None

    def parse_report(self) -> AttestationReport:
        """Parse :attr:`report`.

        Raises:
            MalformedEvidence: the report is malformed.
        """
        return parse_attestation_report(self.report)

    def certificates(self) -> tuple[x509.Certificate, ...]:
        """Parse :attr:`certificate_chain` (leaf first).

        Raises:
            MalformedEvidence: the chain is not PEM certificates.
        """
        return parse_cert_chain(self.certificate_chain)


def _b64(value: object, *, key: str, index: int) -> bytes:
    if not isinstance(value, str) or not value:
        raise MalformedEvidence(
            f"evidence JSON: item {index} '{key}' must be a non-empty base64 string",
            step="parse",
            index=index,
        )
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise MalformedEvidence(
            f"evidence JSON: item {index} '{key}' is not valid base64", step="parse", index=index
        ) from None


def _item(obj: object, index: int) -> GpuEvidence:
    if not isinstance(obj, dict):
        raise MalformedEvidence(f"evidence JSON: item {index} is not an object", step="parse", index=index)
    missing = [k for k in _REQUIRED if k not in obj]
    if missing:
        raise MalformedEvidence(
            f"evidence JSON: item {index} lacks {', '.join(missing)}", step="parse", index=index
        )
    unknown = sorted(set(obj) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise MalformedEvidence(
            f"evidence JSON: item {index} has unknown keys {', '.join(unknown)}",
            step="parse",
            index=index,
            hint=f"allowed keys: {', '.join(_REQUIRED + _OPTIONAL)}",
        )
    arch = obj["arch"]
    if not isinstance(arch, str) or not arch:
        raise MalformedEvidence(
            f"evidence JSON: item {index} 'arch' must be a string", step="parse", index=index
        )
    # Known names only, checked for ASCII before case-folding ("Lſ10".upper() == "LS10"): the
    # binding hashes ``arch`` as ASCII, and a producer-chosen string must not reach it unchecked.
    if not arch.isascii() or arch.upper() not in KNOWN_ARCHES:
        raise MalformedEvidence(
            f"evidence JSON: item {index} 'arch' is not a known architecture",
            step="parse",
            index=index,
            expected=" | ".join(KNOWN_ARCHES),
            actual=ascii(arch[:40]),
        )
    nonce_hex = obj["nonce"]
    try:
        if not isinstance(nonce_hex, str):
            raise ValueError
        nonce = bytes.fromhex(nonce_hex)
    except ValueError:
        raise MalformedEvidence(
            f"evidence JSON: item {index} 'nonce' is not hex", step="parse", index=index
        ) from None
    if len(nonce) != _NONCE_SIZE:
        raise MalformedEvidence(
            f"evidence JSON: item {index} 'nonce' has {len(nonce)} bytes, expected {_NONCE_SIZE}",
            step="parse",
            index=index,
        )
    optional: dict[str, str | None] = {}
    for key in _OPTIONAL:
        value = obj.get(key)
        if value is not None and not isinstance(value, str):
            raise MalformedEvidence(
                f"evidence JSON: item {index} '{key}' must be a string", step="parse", index=index
            )
        optional[key] = value
    return GpuEvidence(
        arch=arch,
        nonce=nonce,
        report=_b64(obj["evidence"], key="evidence", index=index),
        certificate_chain=_b64(obj["certificate"], key="certificate", index=index),
        version=optional["version"],
        driver_version=optional["driver_version"],
        vbios_version=optional["vbios_version"],
    )


def parse_evidence_json(data: bytes) -> tuple[GpuEvidence, ...]:
    """Parse NVIDIA's evidence JSON (a list of per-device objects).

    Args:
        data: The JSON document (UTF-8).

    Returns:
        One :class:`GpuEvidence` per list item, in order.

    Raises:
        MalformedEvidence: not JSON, not a non-empty list of objects, missing or unknown keys,
            a nonce that is not 32 bytes of hex, or invalid base64.
    """
    try:
        doc: Any = load_json(data, what="document")
    except MalformedEvidence as exc:
        raise MalformedEvidence(f"evidence JSON: not valid JSON: {exc.message}", step="parse") from None
    return evidence_from_json(doc)


def evidence_from_json(doc: Any) -> tuple[GpuEvidence, ...]:
    """:func:`parse_evidence_json` of an already decoded document (read with ``load_json``).

    Raises:
        MalformedEvidence: as :func:`parse_evidence_json`, for the shape and values.
    """
    if not isinstance(doc, list) or not doc:
        raise MalformedEvidence("evidence JSON: expected a non-empty list of device objects", step="parse")
    return tuple(_item(obj, i) for i, obj in enumerate(doc))


def dump_evidence_json(items: Iterable[GpuEvidence]) -> bytes:
    """Write evidence in NVIDIA's JSON shape (the inverse of :func:`parse_evidence_json`).

    Args:
        items: The devices' evidence, in order.

    Returns:
        UTF-8 JSON (indented, newline-terminated). Optional keys appear only when set.
    """
    out: list[dict[str, str]] = []
    for item in items:
        obj = {
            "arch": item.arch,
            "nonce": item.nonce.hex(),
            "evidence": base64.b64encode(item.report).decode("ascii"),
            "certificate": base64.b64encode(item.certificate_chain).decode("ascii"),
        }
        for key in _OPTIONAL:
            value = getattr(item, key)
            if value is not None:
                obj[key] = value
        out.append(obj)
    return (json.dumps(out, indent=2) + "\n").encode("utf-8")
