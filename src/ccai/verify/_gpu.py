"""Verify NVIDIA GPU evidence: one numbered checklist, no I/O, ``now`` injected.

:func:`verify_gpu_evidence` runs, for each GPU (gpu-evidence.md §2.2, §15):

(1)  device certificate chain → pinned ``NVIDIA Device Identity CA`` (validity at ``now``:
     :class:`~ccai.errors.CertificateExpired`; simulated roots only with ``allow_simulated``)
(2)  report signature: ECDSA P-384 / SHA-384 over everything but the last 96 bytes, raw ``r‖s``,
     with the leaf key — **before** the report is parsed, as NVAT does, so that any change to the
     signed bytes reads as a signature failure and never reaches a parser
(3)  report contents and FWID: parse the authenticated report; the leaf certificate's FWID
     (Hopper or Blackwell encoding) must equal opaque TLV 20 when the report carries one
(4)  nonce: the signed request nonce equals the verifier's nonce (constant time)
(5)  revocation of the device chain (OCSP responses from the collateral; ``not-checked`` when the
     collateral deliberately has none — the policy decides whether that is acceptable)
(6)  RIM selection: driver and VBIOS RIM ids built from the **signed** opaque data
(7)  RIM authentication: signing chain → pinned ``NVIDIA CoRIM signing Root CA``, validity at
     ``now``, enveloped XMLDSig, and the RIM chains' revocation
(8)  RIM version and product match the report (``colloquialVersion``, ``product``)
(9)  measurement comparison → ``x-nvidia-mismatch-measurement-records``

then, over all GPUs:

(10) multi-GPU mode: all GPUs single-GPU passthrough, or none (mixed SPT/MPT is refused)
(11) claims (NVIDIA claims 3.0, or 2.0 on request)
(12) policy appraisal: the first failure raises its error class

Verified chains and RIM signatures are cached by the exact bytes verified (see
:mod:`ccai.verify._gpu_certs`, :mod:`ccai.verify._rim_check`); time-dependent checks always run.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ccai.collateral import GpuCollateral
from ccai.errors import (
    ChainError,
    CollateralUnavailable,
    Error,
    FwidMismatch,
    MalformedEvidence,
    NonceMismatch,
    PolicyViolation,
    RimMismatch,
    SignatureError,
    SimulatedEvidenceRejected,
    UnsupportedEvidence,
    UsageError,
)
from ccai.evidence import (
    AttestationReport,
    GpuEvidence,
    device_arch,
    driver_rim_id,
    parse_attestation_report,
    parse_cert_chain,
    vbios_rim_id,
)
from ccai.verify._anchors import GpuTrustAnchors, nvidia_gpu_anchors
from ccai.verify._claims import CLAIMS_VERSIONS, ChainFacts, GpuFacts, gpu_claims, overall_claims
from ccai.verify._gpu_certs import VerifiedChain, common_name, leaf_fwid, verify_device_chain
from ccai.verify._measurements import compare_measurements
from ccai.verify._ocsp_check import check_chain_ocsp
from ccai.verify._policy import DEFER_APPRAISAL, Appraisal, Policy, appraise, default_policy
from ccai.verify._result import VerifiedEvidence, VerifiedGpu, _issue
from ccai.verify._rim_check import CheckedRim, check_rim

__all__ = ["GPU_STEPS", "verify_gpu_evidence"]

STEP_CHAIN = "(1) device certificate chain"
STEP_SIGNATURE = "(2) report signature"
STEP_FWID = "(3) report contents and FWID"
STEP_NONCE = "(4) nonce"
STEP_REVOCATION = "(5) revocation"
STEP_RIM_SELECT = "(6) RIM selection"
STEP_RIM_AUTH = "(7) RIM signature and chain"
STEP_RIM_MATCH = "(8) RIM version and product"
STEP_MEASUREMENTS = "(9) measurements"
STEP_MODES = "(10) multi-GPU mode"
STEP_CLAIMS = "(11) claims"
STEP_POLICY = "(12) policy"

#: The checklist, in order (the CLI prints it as a ✓/✗ table).
GPU_STEPS = (
    STEP_CHAIN,
    STEP_SIGNATURE,
    STEP_FWID,
    STEP_NONCE,
    STEP_REVOCATION,
    STEP_RIM_SELECT,
    STEP_RIM_AUTH,
    STEP_RIM_MATCH,
    STEP_MEASUREMENTS,
    STEP_MODES,
    STEP_CLAIMS,
    STEP_POLICY,
)

_SIGNATURE_SIZE = 96
_SPDM_REQUEST_SIZE = 37
_NONCE_SIZE = 32
_SPT = 0  # FEATURE_FLAG: single-GPU passthrough
_ALL_REASONS = frozenset(r.value for r in x509.ReasonFlags)
_SIMULATED_ORG = "ccai TEST PKI"
_CC_MODES = ("on", "devtools", "off")


def _gpu_error(exc: Error, gpu: int) -> Error:
    """Prefix an error with the GPU it is about (keeps class, step and context)."""
    if exc.message.startswith("GPU-"):
        return exc
    exc.message = f"GPU-{gpu}: {exc.message}"
    exc.args = (exc.message,)
    return exc


def _looks_simulated(certs: Sequence[x509.Certificate]) -> bool:
    for cert in certs:
        for attr in (*cert.subject, *cert.issuer):
            if attr.oid == x509.NameOID.ORGANIZATION_NAME and attr.value == _SIMULATED_ORG:
                return True
    return False


def _chain_step(
    certs: Sequence[x509.Certificate],
    *,
    now: datetime,
    allow_simulated: bool,
    simulated_anchors: GpuTrustAnchors | None,
) -> VerifiedChain:
    anchors: list[GpuTrustAnchors] = [nvidia_gpu_anchors()]
    if simulated_anchors is not None:
        anchors.append(simulated_anchors)
    try:
        chain = verify_device_chain(certs, anchors=anchors, now=now, step=STEP_CHAIN)
    except ChainError as exc:
        if type(exc) is ChainError and _looks_simulated(certs) and not allow_simulated:
            raise SimulatedEvidenceRejected(
                "the device chain is issued by ccai's virtual-GPU test PKI, not by NVIDIA",
                step=STEP_CHAIN,
                actual=common_name(certs[-1]),
                hint="pass allow_simulated=True (CLI: --allow-simulated) to verify virtual-GPU evidence",
            ) from None
        raise
    if chain.anchors.simulated and not allow_simulated:
        raise SimulatedEvidenceRejected(
            f"the device chain leads to {chain.anchors.name!r}, a simulated root",
            step=STEP_CHAIN,
            actual=common_name(chain.certificates[-1]),
            hint="pass allow_simulated=True (CLI: --allow-simulated) to verify virtual-GPU evidence",
        )
    return chain


def _signature_step(raw: bytes, leaf: x509.Certificate) -> None:
    if len(raw) <= _SPDM_REQUEST_SIZE + _SIGNATURE_SIZE:
        raise MalformedEvidence(
            f"attestation report is {len(raw)} bytes, too short to hold a request and a signature",
            step=STEP_SIGNATURE,
        )
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise SignatureError(
            "the attestation leaf key is not an ECDSA P-384 key", step=STEP_SIGNATURE, index=0
        )
    sig = raw[-_SIGNATURE_SIZE:]
    der = encode_dss_signature(int.from_bytes(sig[:48], "big"), int.from_bytes(sig[48:], "big"))
    try:
        key.verify(der, raw[:-_SIGNATURE_SIZE], ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise SignatureError(
            f"attestation report signature does not verify with the key of {common_name(leaf)!r}",
            step=STEP_SIGNATURE,
            index=0,
            expected="ECDSA P-384/SHA-384 by the attestation leaf",
            actual=f"r‖s {sig[:8].hex()}…",
            hint="the report was changed, or it belongs to another GPU than this certificate chain",
        ) from None


def _fwid_step(raw: bytes, leaf: x509.Certificate) -> tuple[AttestationReport, bool]:
    try:
        report = parse_attestation_report(raw)
    except MalformedEvidence as exc:
        raise MalformedEvidence(exc.message, step=STEP_FWID, index=exc.index) from None
    reported = report.opaque_data.fwid
    if reported is None:
        # Reports of 535/545-era drivers carry no FWID; NVIDIA's verifiers then skip the check.
        return report, True
    certified = leaf_fwid(leaf)
    if certified is None:
        raise FwidMismatch(
            "the report carries an FWID but the leaf certificate has no FWID extension",
            step=STEP_FWID,
            index=0,
            expected=reported.hex(),
        )
    if not hmac.compare_digest(certified, reported):
        raise FwidMismatch(
            "the leaf certificate's FWID differs from the report's FWID (opaque TLV 20)",
            step=STEP_FWID,
            index=0,
            expected=certified.hex(),
            actual=reported.hex(),
        )
    return report, True


def _revocation(
    chain: Sequence[x509.Certificate],
    collateral: GpuCollateral,
    *,
    now: datetime,
    device: bool,
    roots: Sequence[x509.Certificate],
    expiration: datetime,
) -> ChainFacts:
    if not collateral.ocsp_checked:
        return ChainFacts(expiration=expiration, ocsp_status="not-checked")
    # Record revoked/unknown instead of raising here: the policy decides (a certificate hold can
    # be tolerated by name); broken or missing responses still raise.
    statuses = check_chain_ocsp(
        chain,
        collateral,
        now=now,
        skip_leaf=device,
        trusted_roots=roots,
        allow_revocation_reasons=_ALL_REASONS,
        allow_unknown=True,
    )
    # Report the first non-good status from the root side, as NVAT does.
    for status in reversed(statuses):
        if status.status.value != "good":
            return ChainFacts(
                expiration=expiration,
                ocsp_status=status.status.value,
                revocation_reason=status.revocation_reason,
            )
    return ChainFacts(expiration=expiration, ocsp_status="good")


def _expected_product(arch: str, report: AttestationReport) -> str:
    if arch == "HOPPER":
        return "GH100"
    return report.opaque_data.chip_info or "GB100"


def _rim_match_step(checked: CheckedRim, *, expected_version: str, product: str, kind: str) -> None:
    rim = checked.rim
    if rim.colloquial_version.strip().lower() != expected_version.strip().lower():
        raise RimMismatch(
            f"{kind} RIM {checked.rim_id} is for version {rim.colloquial_version}, "
            f"the report says {expected_version}",
            step=STEP_RIM_MATCH,
            expected=expected_version,
            actual=rim.colloquial_version,
        )
    if rim.product.upper() != product.upper():
        raise RimMismatch(
            f"{kind} RIM {checked.rim_id} is for product {rim.product}, the report is a {product}",
            step=STEP_RIM_MATCH,
            expected=product,
            actual=rim.product,
        )


def _rim_for(collateral: GpuCollateral, rim_id: str, kind: str) -> bytes:
    xml = collateral.rims.get(rim_id)
    if xml is None:
        raise CollateralUnavailable(
            f"the collateral has no {kind} RIM {rim_id}",
            step=STEP_RIM_SELECT,
            expected=rim_id,
            actual=", ".join(sorted(collateral.rims)) or "no RIMs",
            hint="fetch it from the RIM service, pass --driver-rim/--vbios-rim or --rim-dir, or use a bundle",
        )
    return xml


def _verify_one(
    gpu: int,
    item: GpuEvidence,
    *,
    nonce: bytes,
    collateral: GpuCollateral,
    now: datetime,
    allow_simulated: bool,
    simulated_anchors: GpuTrustAnchors | None,
    cc_mode: str | None,
) -> GpuFacts:
    # (1) device certificate chain to a pinned root
    try:
        supplied = parse_cert_chain(item.certificate_chain)
    except MalformedEvidence as exc:
        raise MalformedEvidence(exc.message, step=STEP_CHAIN, index=exc.index) from None
    chain = _chain_step(
        supplied, now=now, allow_simulated=allow_simulated, simulated_anchors=simulated_anchors
    )
    leaf = chain.certificates[0]

    # (2) report signature, over the raw bytes, before any parsing
    _signature_step(item.report, leaf)

    # (3) parse the authenticated report; FWID of the leaf vs the report
    report, fwid_match = _fwid_step(item.report, leaf)
    arch = device_arch(report)
    if arch == "LS10":
        raise UnsupportedEvidence("this is NVSwitch evidence, not GPU evidence", step=STEP_FWID)
    if item.arch.upper() != arch:
        raise MalformedEvidence(
            f"the evidence item says arch {item.arch}, the signed report is {arch}",
            step=STEP_FWID,
            expected=arch,
            actual=item.arch,
        )

    # (4) nonce: the signed request copy carries the verifier's nonce
    if not hmac.compare_digest(report.nonce, nonce):
        raise NonceMismatch(
            "the report is not bound to this verifier nonce",
            step=STEP_NONCE,
            expected=nonce.hex(),
            actual=report.nonce.hex(),
        )

    # (5) revocation of the device chain
    roots = [*chain.anchors.device_roots, *chain.anchors.rim_roots]
    device_facts = _revocation(
        chain.certificates, collateral, now=now, device=True, roots=roots, expiration=chain.expiration
    )

    # (6) RIM selection by ids from the signed opaque data
    try:
        driver_id, vbios_id = driver_rim_id(report), vbios_rim_id(report)
    except Error as exc:
        exc.step = STEP_RIM_SELECT
        raise
    driver_xml = _rim_for(collateral, driver_id, "driver")
    vbios_xml = _rim_for(collateral, vbios_id, "VBIOS")

    # (7) RIM signing chains, validity, XMLDSig, revocation — trusting only the anchor set the
    # device chain led to (NVIDIA evidence never validates against test RIMs and vice versa)
    anchors = [chain.anchors]
    driver_rim = check_rim(
        driver_id, driver_xml, anchors=anchors, now=now, step=STEP_RIM_AUTH, what=f"driver RIM {driver_id}"
    )
    vbios_rim = check_rim(
        vbios_id, vbios_xml, anchors=anchors, now=now, step=STEP_RIM_AUTH, what=f"VBIOS RIM {vbios_id}"
    )
    driver_facts = _revocation(
        driver_rim.chain, collateral, now=now, device=False, roots=roots, expiration=driver_rim.expiration
    )
    vbios_facts = _revocation(
        vbios_rim.chain, collateral, now=now, device=False, roots=roots, expiration=vbios_rim.expiration
    )

    # (8) RIM version and product match the signed report
    opaque = report.opaque_data
    product = _expected_product(arch, report)
    _rim_match_step(driver_rim, expected_version=opaque.driver_version or "", product=product, kind="driver")
    _rim_match_step(vbios_rim, expected_version=opaque.vbios_version or "", product=product, kind="VBIOS")

    # (9) measurements: golden (RIM index i) vs runtime (block i+1)
    comparison = compare_measurements(report, driver_rim=driver_rim.rim, vbios_rim=vbios_rim.rim)

    warnings = tuple(
        f"{name} certificate chain is revoked with reason {facts.revocation_reason}"
        for name, facts in (
            ("device", device_facts),
            ("driver RIM", driver_facts),
            ("VBIOS RIM", vbios_facts),
        )
        if facts.ocsp_status == "revoked"
    )
    return GpuFacts(
        index=gpu,
        arch=arch,
        nonce=nonce,
        driver_version=opaque.driver_version or "",
        vbios_version=(opaque.vbios_version or "").upper(),
        hwmodel=common_name(chain.certificates[1]) if len(chain.certificates) > 1 else "",
        ueid=str(leaf.serial_number),
        oemid=driver_rim.rim.firmware_manufacturer_id,
        fwid_match=fwid_match,
        device_chain=device_facts,
        driver_rim_chain=driver_facts,
        vbios_rim_chain=vbios_facts,
        driver_rim_id=driver_id,
        vbios_rim_id=vbios_id,
        comparison=comparison,
        simulated=chain.anchors.simulated,
        cc_mode=cc_mode,
        chip_info=opaque.chip_info,
        feature_flag=opaque.feature_flag,
        nvdec0_status=opaque.nvdec0_status,
        ppcie_status=opaque.protected_pcie_status,
        switch_pdis=opaque.switch_pdis or (),
        warnings=warnings,
    )


def verify_gpu_evidence(
    evidence: Sequence[GpuEvidence],
    *,
    nonce: bytes,
    collateral: GpuCollateral,
    now: datetime,
    policy: Policy | None = None,
    allow_simulated: bool = False,
    simulated_anchors: GpuTrustAnchors | None = None,
    claims_version: str = "3.0",
    reported_cc_mode: str | None = None,
) -> VerifiedEvidence:
    """Verify NVIDIA GPU evidence and appraise it (the checklist in the module docstring).

    Args:
        evidence: One item per GPU, in NVIDIA's evidence-JSON shape.
        nonce: The verifier's 32-byte nonce.
        collateral: RIMs and OCSP responses (see :func:`ccai.collateral.gather_gpu_collateral`).
        now: The verification time, captured once by the caller.
        policy: The appraisal policy; default :func:`ccai.verify.default_policy`.
        allow_simulated: Accept evidence from ccai's virtual GPU (its claims carry
            ``x-ccai-simulated: true``; the appraisal is told so by name, see
            :class:`ccai.verify.NotSimulated`). Never set this in production.
        simulated_anchors: The virtual GPU's test roots (required with ``allow_simulated``; when
            given without it, evidence that chains to them is rejected as simulated).
        claims_version: ``"3.0"`` (default) or ``"2.0"``.
        reported_cc_mode: The CC mode the platform reports (``on``/``devtools``/``off``) when the
            caller read it from the local driver; it is not signed, and is used by the
            CC-mode/DevTools policy rules (``x-ccai-cc-mode``).

    Returns:
        The verified evidence with per-GPU and overall claims.

    Raises:
        UsageError: bad arguments (nonce size, claims version, simulation without anchors).
        EvidenceError: malformed or unsupported evidence.
        VerificationError: the first failed step (``ChainError``, ``CertificateExpired``,
            ``SignatureError``, ``FwidMismatch``, ``NonceMismatch``, ``RimMismatch``,
            ``MeasurementMismatch``, ``CertificateRevoked``, ``SimulatedEvidenceRejected``,
            ``PolicyViolation`` …); its message names the GPU and the step.
        CollateralError: a RIM or OCSP response needed for a check is missing or unusable.
    """
    if len(nonce) != _NONCE_SIZE:
        raise UsageError("the verifier nonce must be 32 bytes", expected=_NONCE_SIZE, actual=len(nonce))
    if claims_version not in CLAIMS_VERSIONS:
        raise UsageError(f"unknown claims version {claims_version!r}", expected=list(CLAIMS_VERSIONS))
    if allow_simulated and simulated_anchors is None:
        raise UsageError("allow_simulated=True needs the virtual GPU's trust anchors (simulated_anchors)")
    if simulated_anchors is not None and not simulated_anchors.simulated:
        raise UsageError("simulated_anchors must be a simulated GpuTrustAnchors set")
    if reported_cc_mode is not None and reported_cc_mode not in _CC_MODES:
        raise UsageError(f"unknown CC mode {reported_cc_mode!r}", expected=list(_CC_MODES))
    if not evidence:
        raise UsageError("no GPU evidence to verify")
    if now.tzinfo is None:
        raise UsageError("now must be timezone-aware")
    policy = default_policy() if policy is None else policy

    facts: list[GpuFacts] = []
    for gpu, item in enumerate(evidence):
        try:
            facts.append(
                _verify_one(
                    gpu,
                    item,
                    nonce=nonce,
                    collateral=collateral,
                    now=now,
                    allow_simulated=allow_simulated,
                    simulated_anchors=simulated_anchors,
                    cc_mode=reported_cc_mode,
                )
            )
        except Error as exc:
            raise _gpu_error(exc, gpu) from None

    # (10) multi-GPU mode: mixing single-GPU and multi-GPU passthrough is not allowed
    spt = [f.index for f in facts if (f.feature_flag or _SPT) == _SPT]
    if spt and len(spt) != len(facts):
        other = next(f for f in facts if f.index not in spt)
        raise PolicyViolation(
            "the GPUs mix single-GPU passthrough with multi-GPU/protected-PCIe mode",
            step=STEP_MODES,
            index=f"GPU-{other.index}",
            expected="the same passthrough mode on every GPU",
            actual=f"SPT on GPU {spt}, FEATURE_FLAG {other.feature_flag} on GPU-{other.index}",
        )

    # (11) claims
    per_gpu = tuple(gpu_claims(f, version=claims_version) for f in facts)
    simulated = any(f.simulated for f in facts)
    overall = overall_claims(nonce=nonce, version=claims_version, gpus=per_gpu, simulated=simulated)

    # (12) policy appraisal (verify_composite defers it to its own step over all claims)
    if policy is not DEFER_APPRAISAL:
        appraise(policy, Appraisal(overall=overall, gpus=per_gpu, allow_simulated=allow_simulated))

    return _issue(
        nonce=bytes(nonce),
        gpus=tuple(VerifiedGpu(index=i, claims=c) for i, c in enumerate(per_gpu)),
        overall_claims=overall,
        verified_at=now,
        simulated=simulated,
        claims_version=claims_version,
    )
