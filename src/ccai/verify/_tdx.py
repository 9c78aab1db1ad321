"""Verify an Intel TDX quote against pinned roots and signed Intel collateral (no I/O).

The checklist (:data:`TDX_STEPS`) follows Intel QVL (``QuoteVerifier.cpp``, ``TcbLevelCheck.cpp``,
``TdxModuleCheck.cpp``), dcap-qvl ``verify.rs`` and go-tdx-guest ``verify.go``:

 (1) parse the quote (v4/v5, TDX, ECDSA-P256, certification data 6 → 5)
 (2) PCK certificate chain to the pinned Intel SGX Root CA, valid at ``now``
 (3) Root CA CRL and PCK CRL: signature, window, the PCK CA and leaf not revoked
 (4) QE report signature by the PCK leaf key
 (5) QE report data binds the attestation key: SHA-256(key ‖ QE auth data) ‖ 32 zero bytes
 (6) quote signature by the attestation key over header ‖ body
 (7) TCB Info: issuer chain, signature over the raw JSON, window, FMSPC / PCE-ID / type
 (8) QE Identity: issuer chain, signature, window; the QE report matches it; QE TCB status
 (9) TCB level: platform level, TDX module identity and level, converged status + advisories
(10) event log: replay to RTMR0..3 (when an event log is given)
(11) policy: the claims judged by a :class:`~ccai.verify.Policy` (default
     :func:`~ccai.verify.tdx_rules`: TCB status, revocation checked, debug, attributes, …)

Steps 3 and 7–9 need collateral. Without it (or without a CRL) they are skipped and the claims
say so (``x-ccai-revocation-checked``, ``x-ccai-tcb-evaluated``); the policy decides, and the
default raises :class:`CollateralUnavailable` (signatures-only mode is ``allow_missing_collateral``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from ccai._json import load_json
from ccai.collateral import TdxCollateral
from ccai.errors import (
    BindingError,
    CollateralUnavailable,
    MalformedEvidence,
    MeasurementMismatch,
    PolicyViolation,
    SignatureError,
    SimulatedEvidenceRejected,
    TcbError,
    UsageError,
)
from ccai.evidence import (
    INTEL_QE_VENDOR_ID,
    PckExtensions,
    TdxEvent,
    TdxQuote,
    load_crl,
    load_pem_certificates,
    parse_pck_extensions,
    parse_tdx_quote,
)
from ccai.verify._anchors_cpu import intel_sgx_root_ca
from ccai.verify._cpu_chain import check_crl, cn_of, verify_chain, verify_ecdsa_raw
from ccai.verify._cpu_policy import tdx_rules
from ccai.verify._policy import Appraisal, Policy, appraise
from ccai.verify._result import _CAPABILITY, _VerifierCapability
from ccai.verify._steps import StepResult, results_from_trace
from ccai.verify._trust import TrustAnchors, names_test_pki

__all__ = ["TDX_STEPS", "TdxTcbEvaluation", "TdxVerified", "replay_rtmrs", "verify_tdx_quote"]

TDX_STEPS = (
    "(1) parse quote",
    "(2) PCK certificate chain",
    "(3) CRLs and revocation",
    "(4) QE report signature",
    "(5) QE report data binding",
    "(6) quote signature",
    "(7) TCB Info",
    "(8) QE Identity",
    "(9) TCB level",
    "(10) event log replay",
    "(11) policy",
)
S_PARSE, S_CHAIN, S_CRL, S_QE_SIG, S_QE_BIND, S_QUOTE_SIG, S_TCB_INFO, S_QE_ID, S_TCB, S_LOG, S_POLICY = (
    TDX_STEPS
)

_ZERO48 = bytes(48)


@dataclass(frozen=True, slots=True, kw_only=True)
class TdxTcbEvaluation:
    """The outcome of TCB evaluation against Intel's TCB Info and QE Identity.

    Attributes:
        status: Converged status (``UpToDate``, ``OutOfDate``, …).
        platform_status: Status of the matched platform TCB level.
        tdx_module_status: Status of the TDX module (``TDX_%02X`` identity), when evaluated.
        tdx_module_id: The module identity used (``TDX_01``…), or ``None`` for ``tdxModule``.
        qe_status: Status of the quoting enclave.
        advisory_ids: Intel-SA ids of the matched levels.
        tcb_date: ``tcbDate`` of the matched platform level.
        latest_tcb_date: The newest ``tcbDate`` in TCB Info.
        tcb_evaluation_data_number: Of the TCB Info used.
    """

    status: str
    platform_status: str
    tdx_module_status: str | None
    tdx_module_id: str | None
    qe_status: str
    advisory_ids: tuple[str, ...]
    tcb_date: str
    latest_tcb_date: str
    tcb_evaluation_data_number: int

    @property
    def days_behind(self) -> int:
        """Days between the matched level's tcbDate and the newest level's (0 = current)."""
        return (_iso(self.latest_tcb_date) - _iso(self.tcb_date)).days


@dataclass(frozen=True, slots=True, kw_only=True)
class TdxVerified:
    """A TDX quote that passed every step. Only :func:`verify_tdx_quote` creates it.

    Attributes:
        quote: The parsed quote.
        claims: Claims named after the TDX spec fields (``mr_td``, ``rtmr0``, ``report_data``…),
            plus ``tcb_status``/``advisory_ids`` and ``x-ccai-*`` extras (``x-ccai-revocation-checked``,
            ``x-ccai-tcb-evaluated``, ``x-ccai-event-log-replayed``, ``x-ccai-trailing-data-zero`` …).
        tcb: The TCB evaluation, or ``None`` in signatures-only mode.
        pck_extensions: The SGX extension of the PCK certificate (FMSPC, SVNs).
        verified_at: The ``now`` every check used.
        steps: (step, outcome) for each checklist step: ``"ok"`` or ``"skipped: <why>"``.
        simulated: True when the PCK chain leads to the virtual TEE's test root.
    """

    quote: TdxQuote
    claims: Mapping[str, Any]
    tcb: TdxTcbEvaluation | None
    pck_extensions: PckExtensions
    verified_at: datetime
    steps: tuple[tuple[str, str], ...]
    simulated: bool = False
    _capability: _VerifierCapability = field(repr=False, compare=False, default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self._capability is not _CAPABILITY:
            raise UsageError("TdxVerified can only be created by ccai.verify")

    @property
    def step_results(self) -> tuple[StepResult, ...]:
        """:attr:`steps` as :class:`~ccai.verify.StepResult` rows (every step ``ok`` or ``skipped``)."""
        return results_from_trace(TDX_STEPS, self.steps)


def _iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def replay_rtmrs(events: Sequence[TdxEvent]) -> tuple[bytes, bytes, bytes, bytes]:
    """Replay measured events: ``RTMR[i] = SHA-384(RTMR[i] ‖ digest)`` from 48 zero bytes.

    Events whose ``rtmr`` is ``None`` (EV_NO_ACTION, MRTD) extend nothing.
    """
    regs = [_ZERO48] * 4
    for event in events:
        if event.rtmr is not None:
            regs[event.rtmr] = hashlib.sha384(regs[event.rtmr] + event.digest).digest()
    return (regs[0], regs[1], regs[2], regs[3])


def _pem_chain(pem: str, what: str, step: str) -> list[x509.Certificate]:
    try:
        data = pem.encode()
    except UnicodeEncodeError:
        raise MalformedEvidence(f"{what} issuer chain is not PEM", step=step) from None
    return list(load_pem_certificates(data, what=f"{what} issuer chain", step=step))


def _check_signed_json(
    text: str,
    signature: bytes,
    chain_pem: str,
    root: x509.Certificate,
    now: datetime,
    *,
    step: str,
    what: str,
) -> tuple[dict[str, Any], x509.Certificate]:
    chain = _pem_chain(chain_pem, what, step)
    verify_chain(chain, root, now, step=step)
    signer = chain[0].public_key()
    if not isinstance(signer, ec.EllipticCurvePublicKey):
        raise SignatureError(f"{what} signer key is not ECDSA", step=step)
    verify_ecdsa_raw(
        signer,
        int.from_bytes(signature[:32], "big"),
        int.from_bytes(signature[32:], "big"),
        text.encode(),
        hashes.SHA256(),
        step=step,
        what=f"{what} signature",
    )
    try:
        doc = load_json(text, what="text")
    except MalformedEvidence as exc:
        raise MalformedEvidence(
            f"{what} is not valid JSON with issueDate/nextUpdate: {exc.message}", step=step
        ) from None
    try:
        issue, nxt = _iso(doc["issueDate"]), _iso(doc["nextUpdate"])
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedEvidence(
            f"{what} is not valid JSON with issueDate/nextUpdate: {exc}", step=step
        ) from None
    if now < issue:
        raise CollateralUnavailable(
            f"{what} issue date is in the future",
            step=step,
            expected=f">= {issue.isoformat()}",
            actual=now.isoformat(),
        )
    if now > nxt:
        raise CollateralUnavailable(
            f"{what} expired (nextUpdate passed); fetch fresh collateral",
            step=step,
            expected=f"<= {nxt.isoformat()}",
            actual=now.isoformat(),
        )
    if not isinstance(doc, dict):
        raise MalformedEvidence(f"{what} is not a JSON object", step=step)
    return doc, chain[0]


def _first_level(levels: list[dict[str, Any]], svn: int) -> dict[str, Any] | None:
    for level in levels:
        if int(level["tcb"]["isvsvn"]) <= svn:
            return level
    return None


def _masked_eq(value: bytes, expected_hex: str, mask_hex: str) -> bool:
    expected, mask = bytes.fromhex(expected_hex), bytes.fromhex(mask_hex)
    if len(expected) != len(value) or len(mask) != len(value):
        return False
    return all((v & m) == e for v, m, e in zip(value, mask, expected, strict=True))


def _converge_module(platform: str, module: str) -> str:
    # Intel QVL TdxModuleCheck: an OutOfDate module degrades the platform status.
    if module == "Revoked":
        return "Revoked"
    if module == "OutOfDate":
        if platform in ("UpToDate", "SWHardeningNeeded"):
            return "OutOfDate"
        if platform in ("ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"):
            return "OutOfDateConfigurationNeeded"
    return platform


def _converge_qe(platform: str, qe: str) -> str:
    # Intel QVL convergeTcbStatusWithQeTcbStatus.
    if qe == "Revoked":
        return "Revoked"
    if qe == "OutOfDate":
        if platform in ("UpToDate", "SWHardeningNeeded"):
            return "OutOfDate"
        if platform in ("ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"):
            return "OutOfDateConfigurationNeeded"
    return platform


def _evaluate_tcb(
    quote: TdxQuote, pck: PckExtensions, tcb_info: dict[str, Any], qe_status: str, qe_advisories: list[str]
) -> TdxTcbEvaluation:
    svn = quote.body.tee_tcb_svn
    levels: list[dict[str, Any]] = tcb_info["tcbLevels"]
    start = 2 if svn[1] > 0 else 0
    matched: dict[str, Any] | None = None
    first_miss = ""
    for level in levels:
        tcb = level["tcb"]
        sgx = [int(c["svn"]) for c in tcb["sgxtcbcomponents"]]
        tdx = [int(c["svn"]) for c in tcb["tdxtcbcomponents"]]
        misses = [
            f"PCK CPUSVN component[{i}]={pck.cpusvn_components[i]} < {sgx[i]}"
            for i in range(16)
            if pck.cpusvn_components[i] < sgx[i]
        ]
        if pck.pcesvn < int(tcb["pcesvn"]):
            misses.append(f"PCESVN {pck.pcesvn} < {tcb['pcesvn']}")
        misses += [f"TEE_TCB_SVN[{i}]={svn[i]} < {tdx[i]}" for i in range(start, 16) if svn[i] < tdx[i]]
        if not misses:
            matched = level
            break
        first_miss = misses[0]
    if matched is None:
        raise TcbError(
            "no TCB level in TCB Info matches this platform (TCB status NotSupported)",
            step=S_TCB,
            expected="a matching tcbLevel",
            actual=f"below the lowest level: {first_miss}",
        )
    platform_status = str(matched["tcbStatus"])
    advisories = list(matched.get("advisoryIDs") or [])

    # TDX module identity (Intel QVL TdxModuleCheck / dcap-qvl verify.rs).
    module_status: str | None = None
    module_id: str | None = None
    if svn[1] > 0:
        module_id = f"TDX_{svn[1]:02X}"
        identities = {m["id"]: m for m in tcb_info.get("tdxModuleIdentities") or []}
        identity = identities.get(module_id)
        if identity is None:
            raise TcbError(
                f"TCB Info has no identity for TDX module {module_id}", step=S_TCB, actual=module_id
            )
        module_level = _first_level(identity["tcbLevels"], svn[0])
        if module_level is None:
            raise TcbError(
                f"TDX module {module_id} SVN {svn[0]} is below every level (NotSupported)",
                step=S_TCB,
                actual=svn[0],
            )
        module_status = str(module_level["tcbStatus"])
        advisories += list(module_level.get("advisoryIDs") or [])
        reference = identity
    else:
        reference = tcb_info["tdxModule"]
    if not hmac.compare_digest(quote.body.mr_signer_seam, bytes.fromhex(reference["mrsigner"])):
        raise TcbError(
            "MRSIGNERSEAM differs from the TDX module identity",
            step=S_TCB,
            expected=reference["mrsigner"].lower(),
            actual=quote.body.mr_signer_seam.hex(),
        )
    if not _masked_eq(quote.body.seam_attributes, reference["attributes"], reference["attributesMask"]):
        raise TcbError(
            "SEAMATTRIBUTES do not match the TDX module identity",
            step=S_TCB,
            expected=reference["attributes"],
            actual=quote.body.seam_attributes.hex(),
        )

    status = platform_status if module_status is None else _converge_module(platform_status, module_status)
    status = _converge_qe(status, qe_status)
    seen: dict[str, None] = dict.fromkeys([*advisories, *qe_advisories])
    dates = [str(level["tcbDate"]) for level in levels]
    return TdxTcbEvaluation(
        status=status,
        platform_status=platform_status,
        tdx_module_status=module_status,
        tdx_module_id=module_id,
        qe_status=qe_status,
        advisory_ids=tuple(seen),
        tcb_date=str(matched["tcbDate"]),
        latest_tcb_date=max(dates, key=_iso),
        tcb_evaluation_data_number=int(tcb_info["tcbEvaluationDataNumber"]),
    )


def _claims(
    quote: TdxQuote,
    pck: PckExtensions,
    tcb: TdxTcbEvaluation | None,
    *,
    replayed: bool,
    unchecked: list[str],
) -> dict[str, Any]:
    body = quote.body
    claims: dict[str, Any] = {
        "x-ccai-tee": "tdx",
        "version": quote.version,
        "body_type": quote.body_type,
        "tee_tcb_svn": body.tee_tcb_svn.hex(),
        "mr_seam": body.mr_seam.hex(),
        "mr_signer_seam": body.mr_signer_seam.hex(),
        "seam_attributes": body.seam_attributes.hex(),
        "td_attributes": body.td_attributes.hex(),
        "td_attributes_flags": [f.name for f in body.td_attributes_flags if f.name],
        "xfam": body.xfam.hex(),
        "mr_td": body.mr_td.hex(),
        "mr_config_id": body.mr_config_id.hex(),
        "mr_owner": body.mr_owner.hex(),
        "mr_owner_config": body.mr_owner_config.hex(),
        "rtmr0": body.rtmr0.hex(),
        "rtmr1": body.rtmr1.hex(),
        "rtmr2": body.rtmr2.hex(),
        "rtmr3": body.rtmr3.hex(),
        "report_data": body.report_data.hex(),
        "debug": body.debug,
        "fmspc": pck.fmspc.hex(),
        "pce_id": pck.pce_id.hex(),
        "x-ccai-event-log-replayed": replayed,
        "x-ccai-revocation-checked": not unchecked,
        "x-ccai-revocation-unchecked": list(unchecked),
        "x-ccai-trailing-data-zero": quote.trailing_is_zero,
        "x-ccai-trailing-data-length": len(quote.trailing),
    }
    if body.tee_tcb_svn_2 is not None:
        claims["tee_tcb_svn_2"] = body.tee_tcb_svn_2.hex()
    if body.mr_servicetd is not None:
        claims["mr_servicetd"] = body.mr_servicetd.hex()
    if tcb is None:
        claims["tcb_status"] = None
        claims["x-ccai-tcb-evaluated"] = False
    else:
        claims.update(
            {
                "tcb_status": tcb.status,
                "advisory_ids": list(tcb.advisory_ids),
                "platform_tcb_status": tcb.platform_status,
                "tdx_module_tcb_status": tcb.tdx_module_status,
                "qe_tcb_status": tcb.qe_status,
                "tcb_date": tcb.tcb_date,
                "tcb_evaluation_data_number": tcb.tcb_evaluation_data_number,
                "x-ccai-tcb-evaluated": True,
                "x-ccai-tcb-latest-date": tcb.latest_tcb_date,
                "x-ccai-tcb-days-behind": tcb.days_behind,
            }
        )
    return claims


def verify_tdx_quote(
    quote: TdxQuote | bytes,
    collateral: TdxCollateral | None,
    *,
    now: datetime,
    policy: Policy | None = None,
    event_log: Sequence[TdxEvent] | None = None,
    trace: list[tuple[str, str]] | None = None,
    anchors: TrustAnchors | None = None,
    allow_simulated: bool = False,
) -> TdxVerified:
    """Verify a TDX quote and appraise its claims with ``policy``.

    Args:
        quote: The quote, raw or parsed.
        collateral: Intel collateral for the quote's FMSPC; ``None`` skips CRLs and TCB
            evaluation (the claims say so, and the default policy then fails).
        now: The verification time (timezone-aware), captured once by the caller.
        policy: The appraisal policy over the claims (``Appraisal.cpu``); default
            :func:`ccai.verify.tdx_rules`: no debug TD, status UpToDate only, revocation checked.
        event_log: Measured events to replay against RTMR0..3.
        trace: If given, (step, outcome) pairs are appended as steps complete, so a caller can
            show how far verification got when it raises.
        anchors: The roots to trust; default :meth:`TrustAnchors.vendor`. A test-PKI set's SGX
            root (the virtual TEE's ``ccai TEST SGX Root CA``) is used, for the PCK chain and the
            collateral, only for quotes whose chain leads to it and only with ``allow_simulated``.
        allow_simulated: Accept a quote of ccai's virtual TDX guest. Never in production.

    Returns:
        The verified quote with its claims.

    Raises:
        MalformedEvidence, UnsupportedEvidence: step 1 or unreadable collateral.
        SimulatedEvidenceRejected: a quote of the virtual TDX guest without ``allow_simulated``.
        ChainError, CertificateExpired, CertificateRevoked: steps 2, 3, 7, 8.
        SignatureError: steps 4, 6, 7, 8.
        BindingError: step 5, or REPORTDATA differs from the policy's.
        CollateralUnavailable: collateral for another platform or outside its window; or (the
            policy) CRLs or TCB evaluation missing.
        TcbError: step 9 or a TCB status the policy does not accept.
        MeasurementMismatch: step 10 or reference values in step 11.
        PolicyViolation: step 11.
    """
    steps: list[tuple[str, str]] = trace if trace is not None else []
    verified = _check_tdx_quote(
        quote,
        collateral,
        now=now,
        event_log=event_log,
        steps=steps,
        anchors=anchors,
        allow_simulated=allow_simulated,
    )
    # (11) policy
    appraise(tdx_rules() if policy is None else policy, Appraisal(overall={}, cpu=verified.claims))
    steps.append((S_POLICY, "ok"))
    return replace(verified, steps=tuple(steps))


def _check_tdx_quote(
    quote: TdxQuote | bytes,
    collateral: TdxCollateral | None,
    *,
    now: datetime,
    event_log: Sequence[TdxEvent] | None,
    steps: list[tuple[str, str]],
    anchors: TrustAnchors | None,
    allow_simulated: bool,
) -> TdxVerified:
    """Steps 1–10 (the evidence checks) and the claims, without appraisal."""
    if now.tzinfo is None:
        raise UsageError("now must be timezone-aware")

    def done(step: str, outcome: str = "ok") -> None:
        steps.append((step, outcome))

    # (1) parse
    if not isinstance(quote, TdxQuote):
        quote = parse_tdx_quote(quote)
    if not hmac.compare_digest(quote.header.qe_vendor_id, INTEL_QE_VENDOR_ID):
        raise PolicyViolation(
            "quote was not produced by Intel's quoting enclave",
            step=S_PARSE,
            expected=INTEL_QE_VENDOR_ID.hex(),
            actual=quote.header.qe_vendor_id.hex(),
        )
    done(S_PARSE)

    # (2) PCK chain to the pinned Intel SGX Root CA
    chain = quote.pck_chain
    root, simulated = _sgx_root(chain, anchors, allow_simulated=allow_simulated)
    if len(chain) != 3:
        raise MalformedEvidence(
            "PCK chain must hold leaf, intermediate and root", step=S_CHAIN, expected=3, actual=len(chain)
        )
    verify_chain(chain, root, now, step=S_CHAIN)
    pck_leaf, pck_ca = chain[0], chain[1]
    try:
        pck = parse_pck_extensions(pck_leaf)
    except MalformedEvidence as exc:
        raise MalformedEvidence(exc.message, step=S_CHAIN) from None
    done(S_CHAIN)

    # (3) CRLs (what is missing becomes x-ccai-revocation-unchecked; the policy decides)
    unchecked: list[str] = []
    if collateral is None:
        unchecked.append("collateral")
        done(S_CRL, "skipped: no collateral (signatures only)")
    else:
        if collateral.root_ca_crl is None:
            unchecked.append("Root CA CRL")
        else:
            check_crl(
                _load_crl(collateral.root_ca_crl, "Root CA CRL"),
                root,
                now,
                [pck_ca],
                step=S_CRL,
                what="Intel SGX Root CA CRL",
            )
        if collateral.pck_crl is None:
            unchecked.append("PCK CRL")
        else:
            check_crl(
                _load_crl(collateral.pck_crl, "PCK CRL"),
                pck_ca,
                now,
                [pck_leaf],
                step=S_CRL,
                what=f"{cn_of(pck_ca)} CRL",
            )
        if unchecked:
            done(S_CRL, f"ok ({' and '.join(unchecked)} absent: revocation not checked)")
        else:
            done(S_CRL)

    # (4) QE report signature by the PCK leaf key
    pck_key = pck_leaf.public_key()
    if not isinstance(pck_key, ec.EllipticCurvePublicKey):
        raise SignatureError("PCK key is not ECDSA", step=S_QE_SIG)
    sig = quote.qe_report_signature
    verify_ecdsa_raw(
        pck_key,
        int.from_bytes(sig[:32], "big"),
        int.from_bytes(sig[32:], "big"),
        quote.qe_report_raw,
        hashes.SHA256(),
        step=S_QE_SIG,
        what="QE report signature",
    )
    done(S_QE_SIG)

    # (5) QE report data = SHA-256(attestation key ‖ QE auth data) ‖ 32 zero bytes (all 64 checked)
    expected = hashlib.sha256(quote.attestation_key + quote.qe_auth_data).digest() + bytes(32)
    if not hmac.compare_digest(quote.qe_report.report_data, expected):
        raise BindingError(
            "QE report does not bind the attestation key",
            step=S_QE_BIND,
            expected=expected.hex(),
            actual=quote.qe_report.report_data.hex(),
        )
    done(S_QE_BIND)

    # (6) quote signature, with the attestation key trusted through step 5
    try:
        att_key = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), b"\x04" + quote.attestation_key
        )
    except ValueError:
        raise SignatureError("attestation key is not a P-256 point", step=S_QUOTE_SIG) from None
    sig = quote.signature
    verify_ecdsa_raw(
        att_key,
        int.from_bytes(sig[:32], "big"),
        int.from_bytes(sig[32:], "big"),
        quote.signed_bytes,
        hashes.SHA256(),
        step=S_QUOTE_SIG,
        what="quote signature",
    )
    done(S_QUOTE_SIG)

    # (7)-(9) collateral
    tcb: TdxTcbEvaluation | None = None
    if collateral is None:
        for step in (S_TCB_INFO, S_QE_ID, S_TCB):
            done(step, "skipped: no collateral (signatures only)")
    else:
        tcb_info, _ = _check_signed_json(
            collateral.tcb_info,
            collateral.tcb_info_signature,
            collateral.tcb_info_issuer_chain,
            root,
            now,
            step=S_TCB_INFO,
            what="TCB Info",
        )
        try:
            if tcb_info.get("id") != "TDX" or int(tcb_info.get("version", 0)) != 3:
                raise CollateralUnavailable(
                    "TCB Info is not TDX TCB Info version 3",
                    step=S_TCB_INFO,
                    actual=f"id={tcb_info.get('id')} version={tcb_info.get('version')}",
                )
            if (
                bytes.fromhex(tcb_info["fmspc"]) != pck.fmspc
                or bytes.fromhex(tcb_info["pceId"]) != pck.pce_id
            ):
                raise CollateralUnavailable(
                    "TCB Info is for another platform",
                    step=S_TCB_INFO,
                    expected=f"fmspc {pck.fmspc.hex()} pceId {pck.pce_id.hex()}",
                    actual=f"fmspc {tcb_info['fmspc'].lower()} pceId {tcb_info['pceId']}",
                )
        except (KeyError, ValueError, TypeError) as exc:
            raise MalformedEvidence(f"TCB Info lacks a field: {exc}", step=S_TCB_INFO) from None
        done(S_TCB_INFO)

        qe_id, _ = _check_signed_json(
            collateral.qe_identity,
            collateral.qe_identity_signature,
            collateral.qe_identity_issuer_chain,
            root,
            now,
            step=S_QE_ID,
            what="QE Identity",
        )
        qe_status, qe_advisories = _check_qe_identity(quote, qe_id)
        done(S_QE_ID)

        try:
            tcb = _evaluate_tcb(quote, pck, tcb_info, qe_status, qe_advisories)
        except (KeyError, ValueError, TypeError) as exc:
            raise MalformedEvidence(f"TCB Info is malformed: {exc}", step=S_TCB) from None
        done(S_TCB, tcb.status)

    # (10) event log replay
    replayed = False
    if event_log is not None:
        regs = replay_rtmrs(event_log)
        for i, (got, want) in enumerate(zip(regs, quote.body.rtmrs, strict=True)):
            if not hmac.compare_digest(got, want):
                raise MeasurementMismatch(
                    f"event log does not replay to RTMR{i}",
                    step=S_LOG,
                    index=f"RTMR{i}",
                    expected=want.hex(),
                    actual=got.hex(),
                )
        replayed = True
        done(S_LOG)
    else:
        done(S_LOG, "skipped: no event log")

    return TdxVerified(
        quote=quote,
        claims=_claims(quote, pck, tcb, replayed=replayed, unchecked=unchecked),
        tcb=tcb,
        pck_extensions=pck,
        verified_at=now,
        steps=tuple(steps),
        simulated=simulated,
        _capability=_CAPABILITY,
    )


def _sgx_root(
    chain: Sequence[x509.Certificate], anchors: TrustAnchors | None, *, allow_simulated: bool
) -> tuple[x509.Certificate, bool]:
    """The root to validate ``chain`` against, and whether it is a test root.

    The pinned Intel root, unless the caller's anchors are a test PKI whose SGX root issued the
    chain's top certificate; that one is used only with ``allow_simulated``.
    """
    hint = "pass allow_simulated=True (CLI: --allow-simulated) to verify virtual-TEE evidence"
    anchors = anchors if anchors is not None else TrustAnchors.vendor()
    test = anchors.intel_sgx_root if anchors.simulated else None
    top = chain[-1] if chain else None
    if test is not None and top is not None and top.issuer == test.subject:
        if not allow_simulated:
            raise SimulatedEvidenceRejected(
                "the TDX quote's PCK chain leads to a simulated root", step=S_CHAIN, hint=hint
            )
        return test, True
    if names_test_pki(chain) and not allow_simulated:
        raise SimulatedEvidenceRejected(
            "the TDX quote's PCK chain is issued by ccai's virtual-TEE test PKI, not by Intel",
            step=S_CHAIN,
            hint=hint,
        )
    if anchors.simulated:
        return intel_sgx_root_ca(), False
    if anchors.intel_sgx_root is None:
        raise UsageError(f"the trust anchors {anchors.name!r} hold no Intel SGX root")
    return anchors.intel_sgx_root, False


def _load_crl(der: bytes, what: str) -> x509.CertificateRevocationList:
    return load_crl(der, what=what, step=S_CRL)


def _check_qe_identity(quote: TdxQuote, qe_id: dict[str, Any]) -> tuple[str, list[str]]:
    qe = quote.qe_report
    try:
        if qe_id.get("id") != "TD_QE":
            raise CollateralUnavailable(
                "QE Identity is not for the TD QE", step=S_QE_ID, actual=qe_id.get("id")
            )
        misc = qe.misc_select.to_bytes(4, "big")
        if not _masked_eq(misc, qe_id["miscselect"], qe_id["miscselectMask"]):
            raise TcbError(
                "QE MISCSELECT does not match QE Identity",
                step=S_QE_ID,
                expected=qe_id["miscselect"],
                actual=misc.hex(),
            )
        if not _masked_eq(qe.attributes, qe_id["attributes"], qe_id["attributesMask"]):
            raise TcbError(
                "QE ATTRIBUTES do not match QE Identity",
                step=S_QE_ID,
                expected=qe_id["attributes"],
                actual=qe.attributes.hex(),
            )
        if not hmac.compare_digest(qe.mr_signer, bytes.fromhex(qe_id["mrsigner"])):
            raise TcbError(
                "QE MRSIGNER is not Intel's",
                step=S_QE_ID,
                expected=qe_id["mrsigner"].lower(),
                actual=qe.mr_signer.hex(),
            )
        if qe.isv_prod_id != int(qe_id["isvprodid"]):
            raise TcbError(
                "QE ISVPRODID differs from QE Identity",
                step=S_QE_ID,
                expected=qe_id["isvprodid"],
                actual=qe.isv_prod_id,
            )
        level = _first_level(qe_id["tcbLevels"], qe.isv_svn)
    except (KeyError, ValueError, TypeError) as exc:
        raise MalformedEvidence(f"QE Identity is malformed: {exc}", step=S_QE_ID) from None
    if level is None:
        raise TcbError("QE ISVSVN is below every QE Identity level", step=S_QE_ID, actual=qe.isv_svn)
    return str(level["tcbStatus"]), list(level.get("advisoryIDs") or [])
