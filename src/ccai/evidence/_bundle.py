"""The composite evidence bundle: one versioned JSON document (layout in docs/composite-evidence.md).

::

    {
      "format": "ccai-evidence-bundle", "version": 1, "binding": "ccai/composite/v1",
      "nonce": "<64 hex>",
      "gpus": [{"arch": "HOPPER", "nonce": "<hex>", "evidence": "<b64>", "certificate": "<b64 PEM>"}],
      "switches": [{"arch": "LS10", "nonce": "<hex>", "evidence": "<b64>", "certificate": "<b64 PEM>"}]
                  | absent (only present when the bundle carries NVSwitch evidence),
      "cpu": {"type": "tdx" | "snp", "evidence": "<b64>", "certificates": "<b64 PEM>" | absent},
      "keys": {"tls_spki_sha256": "<64 hex>" | null, "hpke_public_key": "<b64>" | null},
      "collateral": {"version": 1, "gpu": {...}, "cpu": {"tdx": {...}} | {"snp": {...}}} | absent
    }

``gpus`` and ``switches`` items are NVIDIA's evidence-JSON items (:func:`ccai.evidence.dump_evidence_json`);
``collateral`` is ccai's offline collateral bundle whose ``cpu`` part holds Intel collateral in the
dcap-qvl ``QuoteCollateralV3`` layout or AMD certificates as base64 DER. This module keeps that
section opaque (:attr:`EvidenceBundle.collateral_json`): :mod:`ccai.collateral` owns its format and
reads it (:func:`ccai.collateral.load_embedded_collateral`), and ``collateral`` imports
``evidence``, never the other way round. Nothing in a bundle is trusted: the verifier checks every
item.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from ccai._json import load_json
from ccai.errors import MalformedEvidence, UnsupportedEvidence, UsageError
from ccai.evidence._binding import BINDING_NONCE_ONLY
from ccai.evidence._nvidia_json import (
    GpuEvidence,
    dump_evidence_json,
    evidence_from_json,
    parse_evidence_json,
)

__all__ = [
    "BUNDLE_FORMAT",
    "EVIDENCE_BUNDLE_VERSION",
    "CpuEvidence",
    "EvidenceBundle",
    "bundle_from_nonce_only_pair",
    "dump_evidence_bundle",
    "load_evidence_bundle",
]

BUNDLE_FORMAT = "ccai-evidence-bundle"
EVIDENCE_BUNDLE_VERSION = 1
_CPU_TYPES = ("tdx", "snp")
#: ``attestation_token`` (optional; an EAT string or the detached-EAT JSON list): an attestation service's
#: token a serving gateway adds to its attestation document; not covered by the binding, never read by
#: verification (docs/composite-evidence.md).
_TOP_KEYS = {
    "format",
    "version",
    "binding",
    "nonce",
    "gpus",
    "switches",
    "cpu",
    "keys",
    "collateral",
    "attestation_token",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class CpuEvidence:
    """The CPU TEE item of a bundle.

    Attributes:
        type: ``"tdx"`` (a DCAP quote) or ``"snp"`` (an ATTESTATION_REPORT).
        evidence: The raw quote / report.
        certificates: PEM certificates the host supplied (SNP certificate table), or ``None``.
    """

    type: str
    evidence: bytes
    certificates: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EvidenceBundle:
    """A composite evidence bundle (unverified: every field is a claim until ``ccai.verify`` checks it).

    Attributes:
        nonce: The verifier's 32-byte nonce.
        binding: The binding scheme the producer used (``ccai/composite/v1``).
        gpus: GPU evidence in NVIDIA's shape, in order.
        cpu: The CPU TEE evidence, or ``None`` for a GPU-only bundle.
        tls_spki_sha256: SHA-256 of the bound TLS SubjectPublicKeyInfo, or ``None``.
        hpke_public_key: The bound raw HPKE public key, or ``None``.
        collateral_json: The embedded collateral for offline verification, as the JSON text of
            the ``collateral`` member (opaque here; :func:`ccai.collateral.load_embedded_collateral`
            parses it), or ``None``.
        switches: NVSwitch (LS10) evidence of a protected-PCIe system, in NVIDIA's shape, in
            order; empty when the bundle carries none (the ``switches`` member is then absent).
    """

    nonce: bytes
    binding: str
    gpus: tuple[GpuEvidence, ...]
    cpu: CpuEvidence | None
    tls_spki_sha256: bytes | None = None
    hpke_public_key: bytes | None = None
    collateral_json: bytes | None = None
    switches: tuple[GpuEvidence, ...] = ()


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise MalformedEvidence(f"evidence bundle: {what} must be a base64 string", step="parse")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedEvidence(f"evidence bundle: {what} is not valid base64", step="parse") from None


def _hex(value: Any, what: str, size: int) -> bytes:
    try:
        if not isinstance(value, str):
            raise ValueError
        raw = bytes.fromhex(value)
    except ValueError:
        raise MalformedEvidence(f"evidence bundle: {what} must be hex", step="parse") from None
    if len(raw) != size:
        raise MalformedEvidence(
            f"evidence bundle: {what} must be {size} bytes", step="parse", expected=size, actual=len(raw)
        )
    return raw


def _collateral_object(data: bytes) -> dict[str, Any]:
    section = load_json(data, what="evidence bundle: collateral_json", error=UsageError)
    if not isinstance(section, dict):
        raise UsageError("evidence bundle: collateral_json must be a JSON object")
    return section


def dump_evidence_bundle(bundle: EvidenceBundle) -> bytes:
    """Serialise a bundle to its JSON layout (UTF-8, indented, newline-terminated).

    Raises:
        UsageError: ``collateral_json`` is set but is not a JSON object.
    """
    doc: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "version": EVIDENCE_BUNDLE_VERSION,
        "binding": bundle.binding,
        "nonce": bundle.nonce.hex(),
        "gpus": json.loads(dump_evidence_json(bundle.gpus)) if bundle.gpus else [],
    }
    if bundle.switches:
        doc["switches"] = json.loads(dump_evidence_json(bundle.switches))
    doc |= {
        "cpu": None,
        "keys": {
            "tls_spki_sha256": bundle.tls_spki_sha256.hex() if bundle.tls_spki_sha256 else None,
            "hpke_public_key": base64.b64encode(bundle.hpke_public_key).decode()
            if bundle.hpke_public_key
            else None,
        },
    }
    if bundle.cpu is not None:
        cpu: dict[str, str] = {
            "type": bundle.cpu.type,
            "evidence": base64.b64encode(bundle.cpu.evidence).decode(),
        }
        if bundle.cpu.certificates:
            cpu["certificates"] = base64.b64encode(bundle.cpu.certificates).decode()
        doc["cpu"] = cpu
    if bundle.collateral_json is not None:
        doc["collateral"] = _collateral_object(bundle.collateral_json)
    return (json.dumps(doc, indent=2) + "\n").encode()


def load_evidence_bundle(data: bytes) -> EvidenceBundle:
    """Parse a composite evidence bundle.

    Raises:
        MalformedEvidence: not JSON, unknown or missing fields, bad hex/base64, bad GPU items.
        UnsupportedEvidence: another format or version.
    """
    try:
        doc = load_json(data, what="evidence bundle")
    except MalformedEvidence as exc:
        raise MalformedEvidence(exc.message, step="parse") from None
    return evidence_bundle_from_json(doc)


def evidence_bundle_from_json(doc: Any) -> EvidenceBundle:
    """:func:`load_evidence_bundle` of an already decoded document.

    For a caller that read a larger JSON document holding the bundle (a key broker's attest
    request) with :func:`ccai._json.load_json`: the bundle is checked exactly as
    :func:`load_evidence_bundle` checks it, without encoding and decoding it again.

    Raises:
        MalformedEvidence: unknown or missing fields, bad hex/base64, bad GPU items.
        UnsupportedEvidence: another format or version.
    """
    if not isinstance(doc, dict):
        raise MalformedEvidence("evidence bundle must be a JSON object", step="parse")
    if doc.get("format") != BUNDLE_FORMAT:
        raise UnsupportedEvidence(
            "not a ccai evidence bundle", step="parse", expected=BUNDLE_FORMAT, actual=doc.get("format")
        )
    if doc.get("version") != EVIDENCE_BUNDLE_VERSION:
        raise UnsupportedEvidence(
            "evidence bundle version not supported",
            step="parse",
            expected=EVIDENCE_BUNDLE_VERSION,
            actual=doc.get("version"),
        )
    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown:
        raise MalformedEvidence(f"evidence bundle has unknown fields {unknown}", step="parse")
    if not isinstance(doc.get("attestation_token", ""), str | list):
        raise MalformedEvidence("evidence bundle: attestation_token must be a string or a list", step="parse")
    binding = doc.get("binding")
    if not isinstance(binding, str):
        raise MalformedEvidence("evidence bundle: binding must be a string", step="parse")
    gpus_raw = doc.get("gpus")
    if not isinstance(gpus_raw, list):
        raise MalformedEvidence("evidence bundle: gpus must be a list", step="parse")
    gpus = evidence_from_json(gpus_raw) if gpus_raw else ()
    switches_raw = doc.get("switches")
    if "switches" in doc and (not isinstance(switches_raw, list) or not switches_raw):
        raise MalformedEvidence(
            "evidence bundle: switches must be a non-empty list (absent when there are none)", step="parse"
        )
    switches = evidence_from_json(switches_raw) if switches_raw else ()
    cpu_raw = doc.get("cpu")
    cpu: CpuEvidence | None = None
    if cpu_raw is not None:
        if not isinstance(cpu_raw, dict) or set(cpu_raw) - {"type", "evidence", "certificates"}:
            raise MalformedEvidence(
                "evidence bundle: cpu must be {type, evidence[, certificates]}", step="parse"
            )
        if cpu_raw.get("type") not in _CPU_TYPES:
            raise UnsupportedEvidence(
                "evidence bundle: unknown CPU evidence type",
                step="parse",
                expected=list(_CPU_TYPES),
                actual=cpu_raw.get("type"),
            )
        certs = cpu_raw.get("certificates")
        cpu = CpuEvidence(
            type=str(cpu_raw["type"]),
            evidence=_b64(cpu_raw.get("evidence"), "cpu.evidence"),
            certificates=_b64(certs, "cpu.certificates") if certs is not None else None,
        )
    keys = doc.get("keys") or {}
    if not isinstance(keys, dict) or set(keys) - {"tls_spki_sha256", "hpke_public_key"}:
        raise MalformedEvidence(
            "evidence bundle: keys must be {tls_spki_sha256, hpke_public_key}", step="parse"
        )
    tls = keys.get("tls_spki_sha256")
    hpke = keys.get("hpke_public_key")
    collateral_raw = doc.get("collateral")
    if collateral_raw is not None and not isinstance(collateral_raw, dict):
        raise MalformedEvidence("evidence bundle: collateral must be a JSON object", step="parse")
    return EvidenceBundle(
        nonce=_hex(doc.get("nonce"), "nonce", 32),
        binding=binding,
        gpus=tuple(gpus),
        cpu=cpu,
        tls_spki_sha256=_hex(tls, "keys.tls_spki_sha256", 32) if tls is not None else None,
        hpke_public_key=_b64(hpke, "keys.hpke_public_key") if hpke is not None else None,
        collateral_json=json.dumps(collateral_raw).encode() if collateral_raw is not None else None,
        switches=tuple(switches),
    )


def bundle_from_nonce_only_pair(
    cpu_quote: bytes, gpu_json: bytes, *, tls_spki_sha256: bytes | None = None
) -> EvidenceBundle:
    """Wrap a foreign nonce-only pair (a TDX quote and NVIDIA SDK GPU JSON ``{nonce, arch,
    evidence_list}``, as SecretVM / NEAR produce) in a bundle with binding ``secretvm/nonce-only``.

    Args:
        cpu_quote: The raw TDX quote.
        gpu_json: The SDK JSON; its ``nonce`` becomes the bundle nonce.
        tls_spki_sha256: The TLS SPKI hash the quote's report_data[0:32] should carry, if known.

    Raises:
        MalformedEvidence: the GPU JSON is not in the SDK layout.
    """
    try:
        doc = load_json(gpu_json, what="GPU SDK JSON")
    except MalformedEvidence as exc:
        raise MalformedEvidence(exc.message, step="parse") from None
    try:
        nonce = bytes.fromhex(doc["nonce"])
        arch = str(doc["arch"])
        items = [{"arch": arch, "nonce": doc["nonce"], **item} for item in doc["evidence_list"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedEvidence(
            f"GPU SDK JSON is not {{nonce, arch, evidence_list}}: {exc}", step="parse"
        ) from None
    gpus = parse_evidence_json(json.dumps(items).encode())
    if len(nonce) != 32:
        raise MalformedEvidence("GPU SDK JSON nonce must be 32 bytes", step="parse", actual=len(nonce))
    return EvidenceBundle(
        nonce=nonce,
        binding=BINDING_NONCE_ONLY,
        gpus=gpus,
        cpu=CpuEvidence(type="tdx", evidence=cpu_quote),
        tls_spki_sha256=tls_spki_sha256,
    )
