"""Verify a composite evidence bundle: CPU TEE evidence + every GPU + the binding (no I/O).

:func:`verify_composite` runs the checklist :data:`COMPOSITE_STEPS`:

(1) bundle: a known binding scheme (the foreign ``secretvm/nonce-only`` scheme only when the caller
    selects it by name); the bundle nonce equals the verifier's nonce when one is given
(2) CPU evidence: the evidence checks of :func:`verify_tdx_quote` / :func:`verify_snp_report`
    against the pinned Intel/AMD roots — or, only with ``allow_simulated=True``, the virtual TEE's
    test roots — without their own appraisal
(3) binding: recompute report_data from the nonce, the exact GPU evidence and the bound keys and
    compare it with the verified CPU report's in constant time (:class:`BindingError`); every GPU
    item names the derived GPU nonce (:class:`NonceMismatch`)
(4) GPU evidence: the evidence checks of :func:`verify_gpu_evidence` with the derived GPU nonce,
    so each GPU's signed SPDM request nonce is checked too (no appraisal yet)
(5) policy: one :class:`~ccai.verify.Appraisal` of the overall, every GPU's and the CPU claims,
    judged by one policy (default :func:`~ccai.verify.default_composite_policy`)
(6) result: one :class:`VerifiedEvidence` with per-GPU, overall and CPU claims
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cryptography import x509

from ccai.collateral import (
    CollateralBundle,
    GpuCollateral,
    SnpCollateral,
    TdxCollateral,
    cpu_collateral_from_bundle,
    load_certificates,
    load_embedded_collateral,
)
from ccai.collateral import snp_collateral_from_certificates as _sort_certs
from ccai.errors import (
    CollateralUnavailable,
    MalformedEvidence,
    NonceMismatch,
    SimulatedEvidenceRejected,
    UnsupportedEvidence,
    UsageError,
)
from ccai.evidence import (
    BINDING_NONCE_ONLY,
    BINDING_V1,
    CpuEvidence,
    EvidenceBundle,
    SnpProduct,
    check_report_data,
    derive_gpu_nonce,
    parse_snp_report,
    parse_tdx_quote,
)
from ccai.verify._anchors import GpuTrustAnchors
from ccai.verify._anchors_cpu import AmdRoots
from ccai.verify._cpu_policy import default_composite_policy
from ccai.verify._gpu import verify_gpu_evidence
from ccai.verify._policy import DEFER_APPRAISAL, Appraisal, Policy, appraise
from ccai.verify._result import VerifiedEvidence, _issue
from ccai.verify._snp import _check_snp_report
from ccai.verify._tdx import _check_tdx_quote
from ccai.virtual import TEST_ORG, VirtualTeeAnchors

__all__ = ["COMPOSITE_STEPS", "verify_composite"]

COMPOSITE_STEPS = (
    "(1) bundle and nonce",
    "(2) CPU evidence",
    "(3) binding",
    "(4) GPU evidence",
    "(5) policy",
    "(6) result",
)
S_BUNDLE, S_CPU, S_BINDING, S_GPU, S_POLICY, S_RESULT = COMPOSITE_STEPS


def _is_test_pki(certs: Sequence[x509.Certificate]) -> bool:
    for cert in certs:
        for attr in (*cert.subject, *cert.issuer):
            if attr.oid == x509.NameOID.ORGANIZATION_NAME and attr.value == TEST_ORG:
                return True
    return False


def _snp_collateral(bundle: EvidenceBundle, collateral: CollateralBundle | None) -> SnpCollateral:
    found = cpu_collateral_from_bundle(collateral, "snp")
    base = found if isinstance(found, SnpCollateral) else SnpCollateral()
    if bundle.cpu is not None and bundle.cpu.certificates:
        # The host's certificate table (VCEK, ASK, ARK): candidates only; the verifier pins the ARK.
        carried = _sort_certs(load_certificates(bundle.cpu.certificates))
        base = SnpCollateral(
            vcek=base.vcek or carried.vcek,
            vlek=base.vlek or carried.vlek,
            ask=base.ask or carried.ask,
            asvk=base.asvk or carried.asvk,
            ark=base.ark or carried.ark,
            crl=base.crl,
        )
    return base


def _verify_cpu(
    bundle: EvidenceBundle,
    cpu: CpuEvidence,
    collateral: CollateralBundle | None,
    *,
    now: datetime,
    allow_simulated: bool,
    anchors: VirtualTeeAnchors | None,
) -> tuple[bytes, dict[str, Any], bool]:
    hint = "pass allow_simulated=True (CLI: --allow-simulated) to verify virtual-TEE evidence"
    if cpu.type == "tdx":
        quote = parse_tdx_quote(cpu.evidence)
        simulated = _is_test_pki(quote.pck_chain)
        root = None
        if simulated:
            if not allow_simulated:
                raise SimulatedEvidenceRejected(
                    "the TDX quote's PCK chain is issued by ccai's virtual-TEE test PKI, not by Intel",
                    step=S_CPU,
                    hint=hint,
                )
            if anchors is None or anchors.sgx_root is None:
                raise UsageError("allow_simulated needs the virtual TDX test root (simulated_cpu_anchors)")
            root = anchors.sgx_root
        tdx_coll = cpu_collateral_from_bundle(collateral, "tdx")
        if tdx_coll is not None and not isinstance(
            tdx_coll, TdxCollateral
        ):  # pragma: no cover - typed by key
            raise MalformedEvidence("collateral bundle: cpu.tdx is not TDX collateral", step=S_CPU)
        verified = _check_tdx_quote(quote, tdx_coll, now=now, event_log=None, steps=[], simulated_root=root)
        claims = dict(verified.claims)
        report_data = quote.body.report_data
    elif cpu.type == "snp":
        report = parse_snp_report(cpu.evidence)
        snp_coll = _snp_collateral(bundle, collateral)
        leaf_der = snp_coll.vcek or snp_coll.vlek
        if leaf_der is None:
            raise CollateralUnavailable(
                "no VCEK/VLEK for the SEV-SNP report in the bundle or its collateral",
                step=S_CPU,
                hint="attest --with-collateral, or verify online (AMD KDS)",
            )
        simulated = _is_test_pki(load_certificates(leaf_der))
        roots = None
        if simulated:
            if not allow_simulated:
                raise SimulatedEvidenceRejected(
                    "the SEV-SNP report's VCEK is issued by ccai's virtual-TEE test PKI, not by AMD",
                    step=S_CPU,
                    hint=hint,
                )
            if anchors is None or anchors.ark is None or anchors.ask is None or anchors.product is None:
                raise UsageError("allow_simulated needs the virtual SNP test roots (simulated_cpu_anchors)")
            # The virtual TEE makes VCEK-signed reports only; the ASK stands in for the unused ASVK.
            roots = AmdRoots(
                product=SnpProduct(anchors.product), ark=anchors.ark, ask=anchors.ask, asvk=anchors.ask
            )
        verified_snp = _check_snp_report(report, snp_coll, now=now, steps=[], simulated_roots=roots)
        claims = dict(verified_snp.claims)
        report_data = report.report_data
    else:  # pragma: no cover - load_evidence_bundle admits tdx and snp only
        raise UnsupportedEvidence(f"unknown CPU evidence type {cpu.type!r}", step=S_CPU)
    claims["x-ccai-simulated"] = simulated
    return report_data, claims, simulated


def verify_composite(
    bundle: EvidenceBundle,
    *,
    now: datetime,
    collateral: CollateralBundle | None = None,
    expected_nonce: bytes | None = None,
    scheme: str = BINDING_V1,
    policy: Policy | None = None,
    allow_simulated: bool = False,
    simulated_gpu_anchors: GpuTrustAnchors | None = None,
    simulated_cpu_anchors: VirtualTeeAnchors | None = None,
    trace: list[tuple[str, str]] | None = None,
) -> VerifiedEvidence:
    """Verify a composite bundle: CPU evidence, every GPU and the binding (:data:`COMPOSITE_STEPS`).

    Args:
        bundle: The bundle (:func:`ccai.evidence.load_evidence_bundle`).
        now: The verification time, captured once by the caller.
        collateral: Collateral to use; default: the bundle's embedded collateral.
        expected_nonce: The nonce this verifier issued; when given the bundle must carry it.
        scheme: The binding scheme to require: ``ccai/composite/v1`` (default), or
            ``secretvm/nonce-only`` to check a foreign nonce-only pair (weaker: it does not commit
            to the GPU evidence).
        policy: The appraisal policy over the overall, every GPU's and the CPU claims (step 5);
            default :func:`ccai.verify.default_composite_policy`: CPU rules by TEE (no debug
            guest, TDX status UpToDate, revocation checked), at least one GPU, distinct GPUs,
            :func:`ccai.verify.default_policy` for every GPU, not simulated.
        allow_simulated: Accept evidence from ccai's virtual TEE and virtual GPUs (claims carry
            ``x-ccai-simulated: true``; the appraisal is told so by name). Never in production.
        simulated_gpu_anchors: The virtual GPUs' test roots (needed with ``allow_simulated``).
        simulated_cpu_anchors: The virtual TEE's test roots (needed with ``allow_simulated``).
        trace: If given, (step, outcome) pairs are appended as steps complete.

    Returns:
        The verified evidence; ``cpu_claims`` holds the TDX/SNP claims, ``overall_claims`` adds
        ``x-ccai-binding`` and ``x-ccai-cpu-tee``.

    Raises:
        UsageError: bad arguments (unknown scheme, simulation without anchors).
        NonceMismatch: the bundle is for another nonce, or a GPU item names another GPU nonce.
        BindingError: the CPU report_data does not commit to this nonce, GPU evidence and keys.
        SimulatedEvidenceRejected: virtual-hardware evidence without ``allow_simulated``.
        EvidenceError, VerificationError: the first failing CPU or GPU step, or the policy's first
            failure (its error class: PolicyViolation, TcbError, MeasurementMismatch …).
        CollateralError: collateral needed for a check is missing (or the policy requires
            revocation/TCB checks the collateral did not allow).
    """
    if now.tzinfo is None:
        raise UsageError("now must be timezone-aware")
    steps: list[tuple[str, str]] = trace if trace is not None else []
    if scheme not in (BINDING_V1, BINDING_NONCE_ONLY):
        raise UsageError(f"unknown binding scheme {scheme!r}", expected=[BINDING_V1, BINDING_NONCE_ONLY])
    collateral = collateral if collateral is not None else load_embedded_collateral(bundle)

    # (1) bundle and nonce
    if bundle.binding != scheme:
        raise UnsupportedEvidence(
            f"the bundle uses binding scheme {bundle.binding!r}, the verifier requires {scheme!r}",
            step=S_BUNDLE,
            expected=scheme,
            actual=bundle.binding,
            hint="select the foreign nonce-only scheme by name to check such a pair"
            if bundle.binding == BINDING_NONCE_ONLY
            else None,
        )
    if expected_nonce is not None and not hmac.compare_digest(bundle.nonce, expected_nonce):
        raise NonceMismatch(
            "the bundle is not for this verifier's nonce",
            step=S_BUNDLE,
            expected=expected_nonce.hex(),
            actual=bundle.nonce.hex(),
        )
    if bundle.cpu is None:
        raise UnsupportedEvidence("the bundle carries no CPU evidence to bind the GPUs to", step=S_BUNDLE)
    gpu_nonce = derive_gpu_nonce(bundle.nonce) if scheme == BINDING_V1 else bundle.nonce
    steps.append((S_BUNDLE, f"{scheme}, {len(bundle.gpus)} GPU(s), {bundle.cpu.type}"))

    # (2) CPU evidence
    report_data, cpu_claims, cpu_simulated = _verify_cpu(
        bundle,
        bundle.cpu,
        collateral,
        now=now,
        allow_simulated=allow_simulated,
        anchors=simulated_cpu_anchors,
    )
    steps.append((S_CPU, f"{bundle.cpu.type} ok" + (" (SIMULATED)" if cpu_simulated else "")))

    # (3) binding
    for i, item in enumerate(bundle.gpus):
        if not hmac.compare_digest(item.nonce, gpu_nonce):
            raise NonceMismatch(
                f"GPU-{i} evidence names another GPU nonce than the one derived from the bundle nonce",
                step=S_BINDING,
                index=f"GPU-{i}",
                expected=gpu_nonce.hex(),
                actual=item.nonce.hex(),
            )
    check_report_data(
        report_data,
        scheme=scheme,
        nonce=bundle.nonce,
        items=bundle.gpus,
        tls_spki_sha256=bundle.tls_spki_sha256,
        hpke_public_key=bundle.hpke_public_key,
        step=S_BINDING,
    )
    steps.append((S_BINDING, "report_data commits to the nonce, GPU evidence and keys"))

    # (4) GPU evidence
    gpus: tuple[Any, ...] = ()
    gpu_overall: dict[str, Any] = {}
    gpu_simulated = False
    if bundle.gpus:
        gpu_collateral = (
            collateral.gpu if collateral is not None else GpuCollateral(rims={}, ocsp={}, ocsp_checked=False)
        )
        gpu_result = verify_gpu_evidence(
            bundle.gpus,
            nonce=gpu_nonce,
            collateral=gpu_collateral,
            now=now,
            policy=DEFER_APPRAISAL,
            allow_simulated=allow_simulated,
            simulated_anchors=simulated_gpu_anchors if allow_simulated else None,
        )
        gpus = gpu_result.gpus
        gpu_overall = dict(gpu_result.overall_claims)
        gpu_simulated = gpu_result.simulated
        steps.append((S_GPU, f"{len(gpus)} GPU(s) ok"))
    else:
        steps.append((S_GPU, "skipped: no GPUs in the bundle"))

    overall = {
        **gpu_overall,
        "x-ccai-binding": scheme,
        "x-ccai-cpu-tee": bundle.cpu.type,
        "x-ccai-gpu-nonce": gpu_nonce.hex(),
        "x-ccai-tls-spki-sha256": bundle.tls_spki_sha256.hex() if bundle.tls_spki_sha256 else None,
        "x-ccai-hpke-public-key": bundle.hpke_public_key.hex() if bundle.hpke_public_key else None,
        "x-ccai-simulated": cpu_simulated or gpu_simulated,
    }

    # (5) policy: one appraisal of every claim
    appraisal = Appraisal(
        overall=overall,
        gpus=tuple(g.claims for g in gpus),
        cpu=cpu_claims,
        allow_simulated=allow_simulated,
    )
    appraise(default_composite_policy() if policy is None else policy, appraisal)
    steps.append((S_POLICY, "ok"))

    # (6) result
    steps.append((S_RESULT, "ok"))
    return _issue(
        nonce=bundle.nonce,
        gpus=gpus,
        overall_claims=overall,
        cpu_claims=cpu_claims,
        verified_at=now,
        simulated=cpu_simulated or gpu_simulated,
    )
