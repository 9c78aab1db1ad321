"""A JSON-friendly summary of a collateral bundle, for ``ccai collateral inspect``.

It parses what is inside (RIM metadata, OCSP response fields) without verifying anything: it tells
a person what a bundle holds and until when it is usable, not whether to trust it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.x509 import ocsp

from ccai.collateral._bundle import BUNDLE_VERSION, CollateralBundle
from ccai.errors import CollateralError, EvidenceError
from ccai.evidence import load_ocsp_response, parse_rim

__all__ = ["inspect_bundle"]


def _cn(name: x509.Name) -> str:
    cns = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else name.rfc4514_string()


def _rim_summary(rim_id: str, xml: bytes, now: datetime) -> dict[str, Any]:
    summary: dict[str, Any] = {"id": rim_id, "size": len(xml)}
    try:
        rim = parse_rim(xml)
    except EvidenceError as exc:
        summary["error"] = exc.message
        return summary
    certs = rim.certificates
    not_before = max((c.not_valid_before_utc for c in certs), default=None)
    not_after = min((c.not_valid_after_utc for c in certs), default=None)
    summary.update(
        {
            "product": rim.product,
            "version": rim.colloquial_version,
            "active_measurements": len(rim.active_measurements),
            "signer": _cn(certs[0].subject) if certs else None,
            "chain_valid_from": not_before.isoformat() if not_before else None,
            "chain_valid_until": not_after.isoformat() if not_after else None,
            "chain_valid_now": bool(not_before and not_after and not_before <= now <= not_after),
        }
    )
    return summary


def _ocsp_summary(key: str, der: bytes, now: datetime) -> dict[str, Any]:
    summary: dict[str, Any] = {"key": key}
    try:
        response = load_ocsp_response(der, what="OCSP response", step="collateral")
    except CollateralError as exc:
        summary["error"] = exc.message
        return summary
    summary["response_status"] = response.response_status.name.lower()
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        return summary
    singles = list(response.responses)
    summary["produced_at"] = response.produced_at_utc.isoformat()
    summary["responder"] = (
        response.responder_name.rfc4514_string()
        if response.responder_name is not None
        else f"key:{(response.responder_key_hash or b'').hex()}"
    )
    if singles:
        single = singles[0]
        summary["serial"] = f"{single.serial_number:x}"
        summary["status"] = single.certificate_status.name.lower()
        summary["this_update"] = single.this_update_utc.isoformat()
        summary["next_update"] = single.next_update_utc.isoformat() if single.next_update_utc else None
        if single.certificate_status is ocsp.OCSPCertStatus.REVOKED:
            reason = single.revocation_reason
            summary["revocation_reason"] = reason.value if reason else "unspecified"
            summary["revocation_time"] = (
                single.revocation_time_utc.isoformat() if single.revocation_time_utc else None
            )
        summary["current"] = single.this_update_utc <= now and (
            single.next_update_utc is None or now <= single.next_update_utc
        )
    return summary


def inspect_bundle(bundle: CollateralBundle, *, now: datetime) -> dict[str, Any]:
    """Describe a bundle: its RIMs (product, version, signer-chain validity) and OCSP responses
    (status, thisUpdate/nextUpdate, reason, whether current at ``now``).

    Args:
        bundle: The bundle.
        now: The time "current" and "valid now" are judged at.

    Returns:
        A JSON-serialisable dict.
    """
    rims = [_rim_summary(rim_id, xml, now) for rim_id, xml in sorted(bundle.gpu.rims.items())]
    responses = [_ocsp_summary(key, der, now) for key, der in sorted(bundle.gpu.ocsp.items())]
    next_updates = [r["next_update"] for r in responses if r.get("next_update")]
    return {
        "version": BUNDLE_VERSION,
        "created_at": bundle.created_at.isoformat() if bundle.created_at else None,
        "gpu": {
            "rims": rims,
            "ocsp": responses,
            "ocsp_checked": bundle.gpu.ocsp_checked,
            "usable_until": min(next_updates) if next_updates else None,
        },
        "cpu": sorted(bundle.cpu),
    }
