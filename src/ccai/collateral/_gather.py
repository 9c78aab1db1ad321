"""Gather everything the verifier needs for a set of GPU evidence items, in parallel.

For each item:

1. the driver and VBIOS RIM ids, from the report's **signed** opaque data (never from NVML or the
   unsigned ``driver_version`` / ``vbios_version`` fields of the JSON file);
2. both RIMs;
3. with revocation checking on, one OCSP response per certificate that NVIDIA checks
   (gpu-evidence.md §6.3): device chain indices 1 … n−2 (BROM, Provisioner ICA, Identity — the
   per-boot leaf is issued by the per-device BROM, which no responder serves, and the root is
   pinned) and each RIM's embedded chain indices 0 … n−2 (L4 signer, L3, CA).

Requests are deduplicated (RIM chains and CA certificates are shared between GPUs) and run
concurrently: NVIDIA's Python verifier makes these 11 round trips per GPU one after the other.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from cryptography import x509

from ccai.collateral._cache import DEFAULT_OCSP_TTL, ocsp_response_expiry
from ccai.collateral._ocsp import new_ocsp_nonce
from ccai.collateral._types import CollateralSource, GpuCollateral, ocsp_key
from ccai.errors import CollateralError, CollateralUnavailable, MalformedEvidence
from ccai.evidence import GpuEvidence, driver_rim_id, load_ocsp_response, parse_rim, vbios_rim_id

__all__ = ["gather_gpu_collateral", "ocsp_targets", "rim_ids_for"]

_MAX_WORKERS = 8


def rim_ids_for(item: GpuEvidence) -> tuple[str, ...]:
    """The (driver, VBIOS) RIM ids named by an evidence item's signed report; for an NVSwitch
    report, its BIOS RIM id alone.

    Raises:
        MalformedEvidence: the report cannot be parsed.
        UnsupportedEvidence: the report names an architecture ccai does not know.
    """
    report = item.parse_report()
    if report.opaque_data.device == "switch":
        return (vbios_rim_id(report),)
    return driver_rim_id(report), vbios_rim_id(report)


def ocsp_targets(
    chain: Sequence[x509.Certificate], *, skip_leaf: bool
) -> list[tuple[x509.Certificate, x509.Certificate]]:
    """(certificate, issuer) pairs of a leaf-first chain whose OCSP status is checked.

    Args:
        chain: Certificates, leaf first, root last.
        skip_leaf: True for device chains (start at index 1), False for RIM chains.
    """
    start = 1 if skip_leaf else 0
    return [(chain[i], chain[i + 1]) for i in range(start, len(chain) - 1)]


def gather_gpu_collateral(
    evidence_items: Sequence[GpuEvidence],
    source: CollateralSource,
    *,
    now: datetime,
    check_revocation: bool = True,
    rim_certificates: Callable[[bytes], Sequence[x509.Certificate]] | None = None,
) -> GpuCollateral:
    """Fetch the RIMs and OCSP responses for ``evidence_items`` from ``source``.

    Args:
        evidence_items: Parsed evidence JSON items (see :func:`ccai.evidence.parse_evidence_json`).
        source: Where to fetch from (a client, a :class:`SourceChain`, a cache, a bundle …).
        now: The verification time: OCSP responses past their ``nextUpdate`` at ``now`` are
            refused here, as "unavailable", rather than failing verification later.
        check_revocation: False to skip OCSP entirely (``ocsp_checked`` is then False and the
            verifier reports revocation as not checked).
        rim_certificates: The certificates a RIM embeds (default: parse it); a verifier passes
            one that remembers them by the RIM's bytes, so repeated requests do not re-parse.

    Returns:
        The collateral; ``ocsp_nonces`` lists the responses that echoed a fresh request nonce.

    Raises:
        MalformedEvidence: an evidence item's report or certificate chain cannot be parsed.
        UnsupportedEvidence: a report of an architecture ccai does not know.
        CollateralUnavailable: a RIM or OCSP response cannot be obtained, or is stale.
    """
    rim_ids: list[str] = []
    targets: dict[str, tuple[x509.Certificate, x509.Certificate]] = {}
    for item in evidence_items:
        for rim_id in rim_ids_for(item):
            if rim_id not in rim_ids:
                rim_ids.append(rim_id)
        if check_revocation:
            for cert, issuer in ocsp_targets(item.certificates(), skip_leaf=True):
                targets.setdefault(ocsp_key(cert), (cert, issuer))

    with ThreadPoolExecutor(max_workers=_MAX_WORKERS, thread_name_prefix="ccai-collateral") as pool:
        rim_futures = {rim_id: pool.submit(source.rim, rim_id) for rim_id in rim_ids}
        rims = {rim_id: future.result() for rim_id, future in rim_futures.items()}
        if not check_revocation:
            return GpuCollateral(rims=rims, ocsp={}, ocsp_checked=False)

        for xml in rims.values():
            try:
                rim_chain = rim_certificates(xml) if rim_certificates else parse_rim(xml).certificates
            except MalformedEvidence:
                # The verifier reports the malformed RIM at its RIM step, with full context.
                continue
            for cert, issuer in ocsp_targets(rim_chain, skip_leaf=False):
                targets.setdefault(ocsp_key(cert), (cert, issuer))

        nonces = {key: new_ocsp_nonce() for key in targets}
        ocsp_futures = {
            key: pool.submit(source.ocsp, cert, issuer, nonce=nonces[key])
            for key, (cert, issuer) in targets.items()
        }
        responses = {key: future.result() for key, future in ocsp_futures.items()}

    echoed: dict[str, bytes] = {}
    for key, der in responses.items():
        cert = targets[key][0]
        expires = ocsp_response_expiry(der, now=now, default_ttl=DEFAULT_OCSP_TTL)
        if expires is None or expires <= now:
            raise CollateralUnavailable(
                f"OCSP response for {cert.subject.rfc4514_string()} is unusable or stale",
                expected=f"nextUpdate after {now.isoformat()}",
                actual=f"nextUpdate {expires.isoformat()}" if expires else "no successful response",
                hint="fetch fresh collateral (online, or ccai collateral fetch for a new bundle)",
            )
        if _echoes(der, nonces[key]):
            echoed[key] = nonces[key]
    return GpuCollateral(rims=rims, ocsp=responses, ocsp_checked=True, ocsp_nonces=echoed)


def _echoes(response_der: bytes, nonce: bytes) -> bool:
    try:
        response = load_ocsp_response(response_der, what="OCSP response", step="collateral")
        value = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    except (CollateralError, ValueError, x509.ExtensionNotFound):
        # ValueError: an unsuccessful response has no extensions.
        return False
    return hmac.compare_digest(value, nonce)
