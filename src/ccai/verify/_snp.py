"""Verify an AMD SEV-SNP attestation report against AMD's pinned roots (no I/O).

The checklist (:data:`SNP_STEPS`) follows go-sev-guest ``verify.SnpAttestation`` +
``validate.SnpAttestation`` and virtee ``(&chain, &report).verify()``:

 (1) parse the report (1184 bytes, version >= 2, MBZ fields, ECDSA P-384)
 (2) product and signing key: CPUID (v3+) or the certificate's productName; VCEK or VLEK present
 (3) certificate chain: pinned ARK → ASK (VCEK) or ASVK (VLEK) → VCEK/VLEK, RSA-PSS/SHA-384, each
     link with ``verify_directly_issued_by`` (``x509.verification`` refuses PSS); validity at
     ``now``; CNs; the ARK CRL when bundled
 (4) report signature: ECDSA P-384/SHA-384 over bytes 0x000..0x29F, r and s little-endian
 (5) TCB and identity binding: REPORTED_TCB equals the certificate's SPLs; CHIP_ID equals hwID
     (VCEK), or is zero (VLEK)
 (6) policy: the claims judged by a :class:`~ccai.verify.Policy` (default
     :func:`~ccai.verify.snp_rules`: debug, migration agent, revocation checked, …)

Without the ARK CRL the chain step records ``x-ccai-revocation-checked: false``; the default
policy then fails (:class:`CollateralUnavailable`), as for TDX.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from ccai.collateral import SnpCollateral, load_certificates
from ccai.errors import (
    BindingError,
    ChainError,
    CollateralUnavailable,
    MalformedEvidence,
    SimulatedEvidenceRejected,
    TcbError,
    UnsupportedEvidence,
    UsageError,
)
from ccai.evidence import (
    SnpGuestPolicy,
    SnpProduct,
    SnpReport,
    SnpSigningKey,
    SnpTcbVersion,
    VcekExtensions,
    load_crl,
    parse_snp_report,
    parse_vcek_extensions,
)
from ccai.verify._anchors_cpu import AmdRoots, amd_roots
from ccai.verify._cpu_chain import check_crl, check_validity, cn_of, same_cert, verify_ecdsa_raw, verify_link
from ccai.verify._cpu_policy import snp_rules
from ccai.verify._policy import Appraisal, Policy, appraise
from ccai.verify._result import _CAPABILITY, _VerifierCapability
from ccai.verify._steps import StepResult, results_from_trace
from ccai.verify._trust import TrustAnchors, names_test_pki

__all__ = ["SNP_STEPS", "SnpVerified", "verify_snp_report"]

SNP_STEPS = (
    "(1) parse report",
    "(2) product and signing key",
    "(3) certificate chain",
    "(4) report signature",
    "(5) TCB and chip binding",
    "(6) policy",
)
S_PARSE, S_PRODUCT, S_CHAIN, S_SIG, S_BIND, S_POLICY = SNP_STEPS


@dataclass(frozen=True, slots=True, kw_only=True)
class SnpVerified:
    """An SEV-SNP report that passed every step. Only :func:`verify_snp_report` creates it.

    Attributes:
        report: The parsed report.
        claims: Claims named after the ABI spec fields (``measurement``, ``host_data``,
            ``report_data``, ``reported_tcb``…) plus ``x-ccai-*`` extras.
        product: The EPYC generation the report was verified for.
        signing_key: ``"VCEK"`` or ``"VLEK"``.
        extensions: The VCEK/VLEK extensions (SPLs, hwID, csp_id).
        verified_at: The ``now`` every check used.
        steps: (step, outcome) for each checklist step.
        simulated: True when the VCEK chains to the virtual TEE's test ARK.
    """

    report: SnpReport
    claims: Mapping[str, Any]
    product: SnpProduct
    signing_key: str
    extensions: VcekExtensions
    verified_at: datetime
    steps: tuple[tuple[str, str], ...]
    simulated: bool = False
    _capability: _VerifierCapability = field(repr=False, compare=False, default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self._capability is not _CAPABILITY:
            raise UsageError("SnpVerified can only be created by ccai.verify")

    @property
    def step_results(self) -> tuple[StepResult, ...]:
        """:attr:`steps` as :class:`~ccai.verify.StepResult` rows (every step ``ok``)."""
        return results_from_trace(SNP_STEPS, self.steps)


def _one(der: bytes | None, what: str) -> x509.Certificate | None:
    if der is None:
        return None
    certs = load_certificates(der)
    if len(certs) != 1:
        raise MalformedEvidence(f"{what} must be one certificate", step=S_CHAIN, actual=len(certs))
    return certs[0]


def _tcb_dict(tcb: SnpTcbVersion) -> dict[str, int]:
    return tcb.as_dict()


def _claims(
    report: SnpReport, product: SnpProduct, key: str, ext: VcekExtensions, *, crl_checked: bool
) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "x-ccai-tee": "sev-snp",
        "version": report.version,
        "guest_svn": report.guest_svn,
        "policy": f"0x{report.policy:x}",
        "policy_abi_major": report.policy_abi_major,
        "policy_abi_minor": report.policy_abi_minor,
        "policy_smt": bool(report.policy & SnpGuestPolicy.SMT),
        "policy_migrate_ma": bool(report.policy & SnpGuestPolicy.MIGRATE_MA),
        "policy_debug": report.debug,
        "policy_single_socket": bool(report.policy & SnpGuestPolicy.SINGLE_SOCKET),
        "family_id": report.family_id.hex(),
        "image_id": report.image_id.hex(),
        "vmpl": report.vmpl,
        "signature_algo": report.signature_algo,
        "current_tcb": _tcb_dict(report.tcb("current", product)),
        "platform_info": f"0x{report.platform_info:x}",
        "platform_info_flags": [f.name for f in report.platform_info_flags if f.name],
        "signing_key": key,
        "author_key_en": report.author_key_en,
        "mask_chip_key": report.mask_chip_key,
        "report_data": report.report_data.hex(),
        "measurement": report.measurement.hex(),
        "host_data": report.host_data.hex(),
        "id_key_digest": report.id_key_digest.hex(),
        "author_key_digest": report.author_key_digest.hex(),
        "report_id": report.report_id.hex(),
        "report_id_ma": report.report_id_ma.hex(),
        "reported_tcb": _tcb_dict(report.tcb("reported", product)),
        "chip_id": report.chip_id.hex(),
        "committed_tcb": _tcb_dict(report.tcb("committed", product)),
        "current_version": f"{report.current_major}.{report.current_minor}.{report.current_build}",
        "current_major": report.current_major,
        "current_minor": report.current_minor,
        "current_build": report.current_build,
        "committed_major": report.committed_major,
        "committed_minor": report.committed_minor,
        "committed_build": report.committed_build,
        "committed_version": f"{report.committed_major}.{report.committed_minor}.{report.committed_build}",
        "launch_tcb": _tcb_dict(report.tcb("launch", product)),
        "x-ccai-product": product.value,
        "x-ccai-product-name": ext.product_name,
        "x-ccai-committed-equals-current": report.committed_tcb_raw == report.current_tcb_raw,
        "x-ccai-revocation-checked": crl_checked,
        "x-ccai-revocation-unchecked": [] if crl_checked else ["ARK CRL"],
    }
    if report.cpuid_fam_id is not None:
        claims["cpuid_fam_id"] = report.cpuid_fam_id
        claims["cpuid_mod_id"] = report.cpuid_mod_id
        claims["cpuid_step"] = report.cpuid_step
    if report.launch_mit_vector is not None:
        claims["launch_mit_vector"] = f"0x{report.launch_mit_vector:x}"
        claims["current_mit_vector"] = f"0x{report.current_mit_vector:x}"
    if ext.csp_id is not None:
        claims["csp_id"] = ext.csp_id
    return claims


def verify_snp_report(
    report: SnpReport | bytes,
    collateral: SnpCollateral,
    *,
    now: datetime,
    policy: Policy | None = None,
    trace: list[tuple[str, str]] | None = None,
    anchors: TrustAnchors | None = None,
    allow_simulated: bool = False,
) -> SnpVerified:
    """Verify an SEV-SNP report and appraise its claims with ``policy``.

    Args:
        report: The report, raw (1184 bytes) or parsed.
        collateral: The VCEK or VLEK (and optionally ASK/ASVK, ARK, CRL) for the report.
        now: The verification time (timezone-aware), captured once by the caller.
        policy: The appraisal policy over the claims (``Appraisal.cpu``); default
            :func:`ccai.verify.snp_rules`: no debuggable guest, no migration agent, revocation
            checked (the ARK CRL is required).
        trace: If given, (step, outcome) pairs are appended as steps complete.
        anchors: The roots to trust; default :meth:`TrustAnchors.vendor`. A test-PKI set's ARK/ASK
            (the virtual SNP guest's) are used only for a VCEK they issued, and only with
            ``allow_simulated``.
        allow_simulated: Accept a report of ccai's virtual SNP guest. Never in production.

    Returns:
        The verified report with its claims.

    Raises:
        MalformedEvidence, UnsupportedEvidence: step 1, or an unknown product (step 2).
        SimulatedEvidenceRejected: a report of the virtual SNP guest without ``allow_simulated``.
        CollateralUnavailable: the VCEK/VLEK the report needs is not in ``collateral``, or the
            ARK CRL is outside its validity window; or (the policy) no ARK CRL was given.
        ChainError, CertificateExpired, CertificateRevoked: step 3.
        SignatureError: step 4.
        TcbError: step 5 (reported TCB differs from the certificate) or a TCB below the policy's minimum.
        BindingError: CHIP_ID differs from hwID, or REPORT_DATA differs from the policy's.
        MeasurementMismatch, PolicyViolation: step 6.
    """
    steps: list[tuple[str, str]] = trace if trace is not None else []
    verified = _check_snp_report(
        report, collateral, now=now, steps=steps, anchors=anchors, allow_simulated=allow_simulated
    )
    # (6) policy
    appraise(snp_rules() if policy is None else policy, Appraisal(overall={}, cpu=verified.claims))
    steps.append((S_POLICY, "ok"))
    return replace(verified, steps=tuple(steps))


def _check_snp_report(
    report: SnpReport | bytes,
    collateral: SnpCollateral,
    *,
    now: datetime,
    steps: list[tuple[str, str]],
    anchors: TrustAnchors | None,
    allow_simulated: bool,
) -> SnpVerified:
    """Steps 1–5 (the evidence checks) and the claims, without appraisal."""
    if now.tzinfo is None:
        raise UsageError("now must be timezone-aware")

    # (1) parse
    if not isinstance(report, SnpReport):
        report = parse_snp_report(report)
    steps.append((S_PARSE, "ok"))

    # (2) product and signing key
    signing_key = report.signing_key
    if signing_key not in (SnpSigningKey.VCEK, SnpSigningKey.VLEK):
        raise UnsupportedEvidence(
            "report is not signed by a VCEK or VLEK",
            step=S_PRODUCT,
            expected="VCEK | VLEK",
            actual=signing_key,
        )
    key_name = "VCEK" if signing_key == SnpSigningKey.VCEK else "VLEK"
    leaf = _one(collateral.vcek if key_name == "VCEK" else collateral.vlek, key_name)
    if leaf is None:
        raise CollateralUnavailable(
            f"the report is {key_name}-signed but no {key_name} certificate was given",
            step=S_PRODUCT,
            hint="pass --vcek with the VCEK/VLEK certificate (KDS or the host's certificate table)",
        )
    try:
        ext = parse_vcek_extensions(leaf)
    except MalformedEvidence as exc:
        raise MalformedEvidence(exc.message, step=S_PRODUCT) from None
    product = report.product or ext.product
    if product is None:
        raise UnsupportedEvidence(
            "cannot tell the EPYC product from the report or the certificate",
            step=S_PRODUCT,
            actual=f"cpuid {report.cpuid_fam_id}/{report.cpuid_mod_id}, productName {ext.product_name!r}",
        )
    if ext.product is not None and ext.product is not product:
        raise ChainError(
            f"{key_name} is for another product",
            step=S_PRODUCT,
            expected=product.value,
            actual=ext.product_name,
        )
    steps.append((S_PRODUCT, f"{product.value}, {key_name}"))

    # (3) chain: pinned ARK -> ASK/ASVK -> VCEK/VLEK
    roots, simulated = _amd_roots(leaf, product, anchors, allow_simulated=allow_simulated)
    if roots.product is not product:
        raise ChainError("the supplied roots are for another product", step=S_CHAIN, expected=product.value)
    supplied_ark = _one(collateral.ark, "ARK")
    if supplied_ark is not None and not same_cert(supplied_ark, roots.ark):
        raise ChainError(
            "supplied ARK is not AMD's pinned ARK",
            step=S_CHAIN,
            index="ARK",
            expected=f"ARK-{product.value}",
            actual=supplied_ark.subject.rfc4514_string(),
        )
    intermediate = _one(collateral.ask if key_name == "VCEK" else collateral.asvk, "ASK/ASVK")
    if intermediate is None:
        intermediate = roots.ask if key_name == "VCEK" else roots.asvk
    expected_cn = f"SEV-{product.value}" if key_name == "VCEK" else f"SEV-VLEK-{product.value}"
    if cn_of(intermediate) != expected_cn:
        raise ChainError(
            "intermediate certificate has the wrong name",
            step=S_CHAIN,
            index=1,
            expected=expected_cn,
            actual=cn_of(intermediate),
        )
    if cn_of(leaf) != f"SEV-{key_name}":
        raise ChainError(
            "leaf certificate has the wrong name",
            step=S_CHAIN,
            index=0,
            expected=f"SEV-{key_name}",
            actual=cn_of(leaf),
        )
    check_validity(roots.ark, now, step=S_CHAIN, index="ARK")
    verify_link(roots.ark, roots.ark, step=S_CHAIN, index="ARK")
    check_validity(intermediate, now, step=S_CHAIN, index=1)
    verify_link(intermediate, roots.ark, step=S_CHAIN, index=1)
    check_validity(leaf, now, step=S_CHAIN, index=0)
    verify_link(leaf, intermediate, step=S_CHAIN, index=0)
    leaf_key = leaf.public_key()
    if not isinstance(leaf_key, ec.EllipticCurvePublicKey) or leaf_key.curve.name != "secp384r1":
        raise ChainError(f"{key_name} key is not ECDSA P-384", step=S_CHAIN, index=0)
    if collateral.crl is not None:
        crl = load_crl(collateral.crl, what="AMD CRL", step=S_CHAIN)
        check_crl(crl, roots.ark, now, [intermediate], step=S_CHAIN, what=f"ARK-{product.value} CRL")
        steps.append((S_CHAIN, "ok (CRL checked)"))
    else:
        # Recorded as x-ccai-revocation-checked: false; the default policy refuses it.
        steps.append((S_CHAIN, "ok (no CRL bundled: ASK revocation not checked)"))

    # (4) report signature over 0x000..0x29F
    verify_ecdsa_raw(
        leaf_key,
        report.signature_r,
        report.signature_s,
        report.signed_bytes,
        hashes.SHA384(),
        step=S_SIG,
        what="report signature",
    )
    steps.append((S_SIG, "ok"))

    # (5) REPORTED_TCB == certificate SPLs; CHIP_ID == hwID
    reported = report.tcb("reported", product)
    cert_tcb = {"blSPL": ext.bl_spl, "teeSPL": ext.tee_spl, "snpSPL": ext.snp_spl, "ucodeSPL": ext.ucode_spl}
    if product is SnpProduct.TURIN:
        cert_tcb["fmcSPL"] = ext.fmc_spl if ext.fmc_spl is not None else -1
    if reported.as_dict() != cert_tcb:
        raise TcbError(
            f"REPORTED_TCB differs from the {key_name}'s TCB",
            step=S_BIND,
            expected=cert_tcb,
            actual=reported.as_dict(),
        )
    if key_name == "VCEK":
        if not report.mask_chip_key:
            hw_id = ext.hw_id or b""
            width = 8 if product is SnpProduct.TURIN else 64
            if len(hw_id) != width or not hmac.compare_digest(report.chip_id[:width], hw_id):
                raise BindingError(
                    "CHIP_ID differs from the VCEK's hwID",
                    step=S_BIND,
                    expected=hw_id.hex(),
                    actual=report.chip_id[:width].hex(),
                )
    elif any(report.chip_id):
        raise BindingError(
            "a VLEK-signed report must have a zero CHIP_ID", step=S_BIND, actual=report.chip_id.hex()
        )
    steps.append((S_BIND, "ok"))

    return SnpVerified(
        report=report,
        claims=_claims(report, product, key_name, ext, crl_checked=collateral.crl is not None),
        product=product,
        signing_key=key_name,
        extensions=ext,
        verified_at=now,
        steps=tuple(steps),
        simulated=simulated,
        _capability=_CAPABILITY,
    )


def _amd_roots(
    leaf: x509.Certificate, product: SnpProduct, anchors: TrustAnchors | None, *, allow_simulated: bool
) -> tuple[AmdRoots, bool]:
    """The roots for ``leaf``, and whether they are a test PKI's (used only with ``allow_simulated``)."""
    hint = "pass allow_simulated=True (CLI: --allow-simulated) to verify virtual-TEE evidence"
    anchors = anchors if anchors is not None else TrustAnchors.vendor()
    test = anchors.amd.get(product) if anchors.simulated else None
    if test is not None and leaf.issuer in (test.ask.subject, test.asvk.subject):
        if not allow_simulated:
            raise SimulatedEvidenceRejected(
                "the SEV-SNP report's VCEK leads to a simulated ARK", step=S_CHAIN, hint=hint
            )
        return test, True
    if names_test_pki([leaf]) and not allow_simulated:
        raise SimulatedEvidenceRejected(
            "the SEV-SNP report's VCEK is issued by ccai's virtual-TEE test PKI, not by AMD",
            step=S_CHAIN,
            hint=hint,
        )
    if anchors.simulated:
        return amd_roots(product), False
    roots = anchors.amd.get(product)
    if roots is None:
        raise UsageError(f"the trust anchors {anchors.name!r} hold no AMD roots for {product.value}")
    return roots, False
