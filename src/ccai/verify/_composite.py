"""Verify a composite evidence bundle: CPU TEE evidence + every GPU + the binding (no I/O).

:func:`verify_composite` (and :meth:`ccai.verify.Verifier.verify_bundle`) run the checklist
:data:`COMPOSITE_STEPS`:

(1) bundle: a known binding scheme (the foreign ``secretvm/nonce-only`` scheme only when the caller
    selects it by name); the bundle nonce equals the verifier's nonce (freshness). The nonce is
    required: only ``skip_freshness_check=True``, by name, verifies without one, and the overall
    claims then say ``x-ccai-freshness: "not-checked"`` (a replayed bundle passes such a check)
(2) CPU evidence: the evidence checks of :func:`verify_tdx_quote` / :func:`verify_snp_report`
    against the pinned Intel/AMD roots — or, only with ``allow_simulated=True``, the test roots of
    the caller's test-PKI anchors — without their own appraisal
(3) binding: recompute report_data from the nonce, the exact GPU (and NVSwitch) evidence and the
    bound keys and compare it with the verified CPU report's in constant time (:class:`BindingError`);
    every GPU and switch item names the derived GPU nonce (:class:`NonceMismatch`)
(4) GPU evidence: the GPU checklist with the derived GPU nonce, so each GPU's signed SPDM request
    nonce is checked too (no appraisal yet). A bundle with NVSwitch evidence runs the protected-PCIe
    checklist instead (``PPCIE_STEPS`` 1–5: every GPU, every switch, PPCIe mode on every GPU, the
    GPU↔switch topology of the devices present)
(5) policy: one :class:`~ccai.verify.Appraisal` of the overall, every GPU's, every switch's and the
    CPU claims, judged by one policy (default :func:`~ccai.verify.default_composite_policy`, with the
    PPCIe rules — switches verified, PPCIe mode, an 8-GPU / 4-switch topology — for a bundle with
    switches)
(6) result: one :class:`VerifiedEvidence` with per-GPU, per-switch, overall and CPU claims
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

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
    Error,
    MalformedEvidence,
    NonceMismatch,
    UnsupportedEvidence,
    UsageError,
)
from ccai.evidence import (
    BINDING_NONCE_ONLY,
    BINDING_V1,
    CpuEvidence,
    EvidenceBundle,
    GpuEvidence,
    check_report_data,
    derive_gpu_nonce,
    parse_snp_report,
    parse_tdx_quote,
)
from ccai.verify._caches import VerifierCaches
from ccai.verify._cpu_policy import default_composite_policy
from ccai.verify._gpu import run_gpu_checklist
from ccai.verify._policy import DEFER_APPRAISAL, Appraisal, Policy, appraise
from ccai.verify._ppcie import run_ppcie_checklist
from ccai.verify._result import VerifiedEvidence, _issue
from ccai.verify._snp import _check_snp_report
from ccai.verify._steps import Steps
from ccai.verify._tdx import _check_tdx_quote
from ccai.verify._trust import TrustAnchors

__all__ = [
    "COMPOSITE_STEPS",
    "GpuStage",
    "PpcieStage",
    "check_freshness_arguments",
    "run_composite",
    "verify_composite",
]

COMPOSITE_STEPS = (
    "(1) bundle and nonce",
    "(2) CPU evidence",
    "(3) binding",
    "(4) GPU evidence",
    "(5) policy",
    "(6) result",
)
S_BUNDLE, S_CPU, S_BINDING, S_GPU, S_POLICY, S_RESULT = COMPOSITE_STEPS

#: ``x-ccai-freshness`` of a bundle whose nonce was compared with the verifier's / was not.
FRESHNESS_CHECKED = "checked"
FRESHNESS_NOT_CHECKED = "not-checked"


def check_freshness_arguments(expected_nonce: bytes | None, *, skip_freshness_check: bool) -> None:
    """Refuse a composite verification that would not say whether the bundle is fresh.

    A bundle proves freshness only against the nonce the verifier issued; without one, a recorded
    bundle replays forever. So the nonce is required, and verifying without it takes the loudly
    named ``skip_freshness_check=True``.

    Raises:
        UsageError: neither, or both, of ``expected_nonce`` and ``skip_freshness_check``.
    """
    if expected_nonce is None and not skip_freshness_check:
        raise UsageError(
            "expected_nonce is required: the nonce you issued (without it a replayed bundle passes)",
            hint="pass skip_freshness_check=True to verify without it; the claims then say "
            'x-ccai-freshness: "not-checked"',
        )
    if expected_nonce is not None and skip_freshness_check:
        raise UsageError("give expected_nonce or skip_freshness_check=True, not both")


#: Verifies the bundle's GPU items for the derived GPU nonce (step 4).
GpuStage = Callable[[Sequence[GpuEvidence], bytes], VerifiedEvidence]
#: Verifies the bundle's GPU and NVSwitch items as one protected-PCIe system (step 4, with switches).
PpcieStage = Callable[[Sequence[GpuEvidence], Sequence[GpuEvidence], bytes], VerifiedEvidence]


def ppcie_stage_for(
    *,
    now: datetime,
    collateral: GpuCollateral,
    anchors: TrustAnchors,
    allow_simulated: bool,
    caches: VerifierCaches | None,
) -> PpcieStage:
    """The PPCIe stage of a composite verification: ``PPCIE_STEPS`` 1–5, appraisal deferred.

    The topology is checked for the devices present (every GPU links to exactly the verified
    switches, every switch lists the same GPUs); the counts a system must have are the policy's
    (:class:`~ccai.verify.PpcieTopology`).
    """

    def stage(gpus: Sequence[GpuEvidence], switches: Sequence[GpuEvidence], nonce: bytes) -> VerifiedEvidence:
        return run_ppcie_checklist(
            gpus,
            switches,
            nonce=nonce,
            switch_nonce=nonce,
            now=now,
            gpu_collateral=collateral,
            switch_collateral=collateral,
            policy=DEFER_APPRAISAL,
            expected_gpus=len(gpus),
            expected_switches=len(switches),
            anchors=anchors,
            allow_simulated=allow_simulated,
            caches=caches,
        )

    return stage


def _snp_collateral(bundle: EvidenceBundle, found: TdxCollateral | SnpCollateral | None) -> SnpCollateral:
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
    found: TdxCollateral | SnpCollateral | None,
    *,
    now: datetime,
    anchors: TrustAnchors,
    allow_simulated: bool,
) -> tuple[bytes, dict[str, Any], bool]:
    if cpu.type == "tdx":
        quote = parse_tdx_quote(cpu.evidence)
        if found is not None and not isinstance(found, TdxCollateral):  # pragma: no cover - typed by key
            raise MalformedEvidence("collateral bundle: cpu.tdx is not TDX collateral", step=S_CPU)
        verified = _check_tdx_quote(
            quote, found, now=now, event_log=None, steps=[], anchors=anchors, allow_simulated=allow_simulated
        )
        claims = dict(verified.claims)
        report_data, simulated = quote.body.report_data, verified.simulated
    elif cpu.type == "snp":
        report = parse_snp_report(cpu.evidence)
        snp_coll = _snp_collateral(bundle, found)
        if snp_coll.vcek is None and snp_coll.vlek is None:
            raise CollateralUnavailable(
                "no VCEK/VLEK for the SEV-SNP report in the bundle or its collateral",
                step=S_CPU,
                hint="attest --with-collateral, or verify online (AMD KDS)",
            )
        verified_snp = _check_snp_report(
            report, snp_coll, now=now, steps=[], anchors=anchors, allow_simulated=allow_simulated
        )
        claims = dict(verified_snp.claims)
        report_data, simulated = report.report_data, verified_snp.simulated
    else:  # pragma: no cover - load_evidence_bundle admits tdx and snp only
        raise UnsupportedEvidence(f"unknown CPU evidence type {cpu.type!r}", step=S_CPU)
    claims["x-ccai-simulated"] = simulated
    return report_data, claims, simulated


def run_composite(
    bundle: EvidenceBundle,
    *,
    now: datetime,
    collateral: CollateralBundle | None,
    cpu_collateral: Callable[[], TdxCollateral | SnpCollateral | None] | None,
    expected_nonce: bytes | None,
    skip_freshness_check: bool,
    scheme: str,
    policy: Policy | None,
    anchors: TrustAnchors,
    allow_simulated: bool,
    gpu_stage: GpuStage,
    trace: list[tuple[str, str]] | None = None,
    ppcie_stage: PpcieStage | None = None,
) -> VerifiedEvidence:
    """The composite checklist (for :func:`verify_composite` and the Verifier).

    Args:
        bundle: The bundle.
        now: The verification time.
        collateral: The collateral bundle to use (its CPU section), or ``None``.
        cpu_collateral: Called, when ``collateral`` has no CPU section, to fetch it (a Verifier
            with Intel PCS / AMD KDS clients); ``None`` when there is nowhere to fetch from.
        expected_nonce: The verifier's nonce (``None`` only with ``skip_freshness_check``).
        skip_freshness_check: Verify without a nonce (the claims say so).
        scheme: The binding scheme to require.
        policy: The appraisal policy over every claim (step 5); default
            :func:`~ccai.verify.default_composite_policy`.
        anchors: The roots to trust.
        allow_simulated: Accept virtual-hardware evidence (test-PKI anchors needed).
        gpu_stage: Verifies the GPU items for the derived GPU nonce, without appraisal.
        trace: If given, (step, outcome) pairs are appended as steps complete.
        ppcie_stage: Verifies GPU and NVSwitch items as one PPCIe system (bundles with switches).

    Returns:
        The verified evidence, with the per-step results.

    Raises:
        UsageError: bad arguments (no nonce without ``skip_freshness_check``, a naive ``now``).
        Error: the first failure, carrying the per-step results.
    """
    check_freshness_arguments(expected_nonce, skip_freshness_check=skip_freshness_check)
    if now.tzinfo is None:
        raise UsageError("now must be timezone-aware")
    steps = Steps(COMPOSITE_STEPS)
    completed: list[tuple[str, str]] = trace if trace is not None else []

    def done(step: str, outcome: str) -> None:
        completed.append((step, outcome))
        if outcome.startswith("skipped"):
            steps.skip(step, outcome)
        else:
            steps.ok(step, outcome)

    try:
        # (1) bundle and nonce
        steps.begin(S_BUNDLE)
        if scheme not in (BINDING_V1, BINDING_NONCE_ONLY):
            known = [BINDING_V1, BINDING_NONCE_ONLY]
            raise UsageError(f"unknown binding scheme {scheme!r}", expected=known)
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
        # Freshness: the bundle answers this verifier's nonce (skipped only by name, and said so).
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
        freshness = FRESHNESS_NOT_CHECKED if expected_nonce is None else FRESHNESS_CHECKED
        fresh = "freshness NOT checked (no nonce)" if expected_nonce is None else "nonce matches"
        switches = f", {len(bundle.switches)} NVSwitch(es)" if bundle.switches else ""
        done(S_BUNDLE, f"{scheme}, {len(bundle.gpus)} GPU(s){switches}, {bundle.cpu.type}, {fresh}")

        # (2) CPU evidence
        steps.begin(S_CPU)
        found = cpu_collateral_from_bundle(collateral, bundle.cpu.type)
        if found is None and cpu_collateral is not None:
            found = cpu_collateral()
        report_data, cpu_claims, cpu_simulated = _verify_cpu(
            bundle,
            bundle.cpu,
            found,
            now=now,
            anchors=anchors,
            allow_simulated=allow_simulated,
        )
        done(S_CPU, f"{bundle.cpu.type} ok" + (" (SIMULATED)" if cpu_simulated else ""))

        # (3) binding
        steps.begin(S_BINDING)
        for i, item in enumerate(bundle.gpus):
            if not hmac.compare_digest(item.nonce, gpu_nonce):
                raise NonceMismatch(
                    f"GPU-{i} evidence names another GPU nonce than the one derived from the bundle nonce",
                    step=S_BINDING,
                    index=f"GPU-{i}",
                    expected=gpu_nonce.hex(),
                    actual=item.nonce.hex(),
                )
        for i, item in enumerate(bundle.switches):
            if not hmac.compare_digest(item.nonce, gpu_nonce):
                raise NonceMismatch(
                    f"SWITCH-{i} evidence names another nonce than the GPU nonce derived from the "
                    "bundle nonce",
                    step=S_BINDING,
                    index=f"SWITCH-{i}",
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
            switches=bundle.switches,
        )
        what = "GPU and NVSwitch evidence" if bundle.switches else "GPU evidence"
        done(S_BINDING, f"report_data commits to the nonce, {what} and keys")

        # (4) GPU evidence
        steps.begin(S_GPU)
        gpus: tuple[Any, ...] = ()
        switch_results: tuple[Any, ...] = ()
        gpu_overall: dict[str, Any] = {}
        gpu_simulated = False
        if bundle.switches:
            if not bundle.gpus:
                raise UnsupportedEvidence(
                    "the bundle carries NVSwitch evidence but no GPU evidence (protected PCIe judges both)",
                    step=S_GPU,
                )
            if ppcie_stage is None:  # pragma: no cover - both callers pass one
                raise UsageError("this verification cannot check NVSwitch evidence")
            gpu_result = ppcie_stage(bundle.gpus, bundle.switches, gpu_nonce)
            switch_results = gpu_result.switches
        elif bundle.gpus:
            gpu_result = gpu_stage(bundle.gpus, gpu_nonce)
        if bundle.gpus:
            gpus = gpu_result.gpus
            gpu_overall = dict(gpu_result.overall_claims)
            gpu_simulated = gpu_result.simulated
            ppcie = f", {len(switch_results)} NVSwitch(es), PPCIe mode and topology" if switch_results else ""
            done(S_GPU, f"{len(gpus)} GPU(s){ppcie} ok")
        else:
            done(S_GPU, "skipped: no GPUs in the bundle")

        overall = {
            **gpu_overall,
            "x-ccai-binding": scheme,
            "x-ccai-freshness": freshness,
            "x-ccai-cpu-tee": bundle.cpu.type,
            "x-ccai-gpu-nonce": gpu_nonce.hex(),
            "x-ccai-tls-spki-sha256": bundle.tls_spki_sha256.hex() if bundle.tls_spki_sha256 else None,
            "x-ccai-hpke-public-key": bundle.hpke_public_key.hex() if bundle.hpke_public_key else None,
            "x-ccai-simulated": cpu_simulated or gpu_simulated,
        }

        # (5) policy: one appraisal of every claim
        steps.begin(S_POLICY)
        appraisal = Appraisal(
            overall=overall,
            gpus=tuple(g.claims for g in gpus),
            switches=tuple(s.claims for s in switch_results),
            cpu=cpu_claims,
            allow_simulated=allow_simulated,
        )
        appraise(
            default_composite_policy(ppcie=bool(switch_results)) if policy is None else policy, appraisal
        )
        done(S_POLICY, "satisfied")

        # (6) result
        steps.begin(S_RESULT)
        done(S_RESULT, "ok")
    except Error as exc:
        steps.attach(exc)
        raise
    return _issue(
        nonce=bundle.nonce,
        gpus=gpus,
        switches=switch_results,
        overall_claims=overall,
        cpu_claims=cpu_claims,
        verified_at=now,
        simulated=cpu_simulated or gpu_simulated,
        steps=steps.results(),
    )


def verify_composite(
    bundle: EvidenceBundle,
    *,
    now: datetime,
    collateral: CollateralBundle | None = None,
    expected_nonce: bytes | None = None,
    skip_freshness_check: bool = False,
    scheme: str = BINDING_V1,
    policy: Policy | None = None,
    anchors: TrustAnchors | None = None,
    allow_simulated: bool = False,
    trace: list[tuple[str, str]] | None = None,
) -> VerifiedEvidence:
    """Verify a composite bundle: CPU evidence, every GPU and the binding (:data:`COMPOSITE_STEPS`).

    The one-shot recipe for a bundle whose collateral is at hand (embedded or given); a
    :class:`~ccai.verify.Verifier` also fetches missing collateral and keeps caches.

    Args:
        bundle: The bundle (:func:`ccai.evidence.load_evidence_bundle`).
        now: The verification time, captured once by the caller.
        collateral: Collateral to use; default: the bundle's embedded collateral.
        expected_nonce: The nonce this verifier issued; the bundle must carry it. Required unless
            ``skip_freshness_check``.
        skip_freshness_check: Verify without a nonce. Dangerous: a recorded bundle then passes
            again and again; the overall claims say ``x-ccai-freshness: "not-checked"``.
        scheme: The binding scheme to require: ``ccai/composite/v1`` (default), or
            ``secretvm/nonce-only`` to check a foreign nonce-only pair (weaker: it does not commit
            to the GPU evidence).
        policy: The appraisal policy over the overall, every GPU's and the CPU claims (step 5);
            default :func:`ccai.verify.default_composite_policy`: CPU rules by TEE (no debug
            guest, TDX status UpToDate, revocation checked), at least one GPU, distinct GPUs,
            :func:`ccai.verify.default_policy` for every GPU, not simulated.
        anchors: The roots to trust; default :meth:`TrustAnchors.vendor`. Test-PKI anchors
            (:meth:`TrustAnchors.simulated_test_pki`) are used next to the vendor roots, and only
            with ``allow_simulated``.
        allow_simulated: Accept evidence from ccai's virtual TEE and virtual GPUs (claims carry
            ``x-ccai-simulated: true``). Never in production.
        trace: If given, (step, outcome) pairs are appended as steps complete.

    Returns:
        The verified evidence; ``cpu_claims`` holds the TDX/SNP claims, ``overall_claims`` adds
        ``x-ccai-binding``, ``x-ccai-freshness`` (``checked`` / ``not-checked``) and
        ``x-ccai-cpu-tee``; ``steps`` the per-step results.

    Raises:
        UsageError: bad arguments (no ``expected_nonce`` without ``skip_freshness_check``, unknown
            scheme, simulation without test anchors).
        NonceMismatch: the bundle is for another nonce, or a GPU item names another GPU nonce.
        BindingError: the CPU report_data does not commit to this nonce, GPU evidence and keys.
        SimulatedEvidenceRejected: virtual-hardware evidence without ``allow_simulated``.
        EvidenceError, VerificationError: the first failing CPU or GPU step, or the policy's first
            failure (its error class: PolicyViolation, TcbError, MeasurementMismatch …).
        CollateralError: collateral needed for a check is missing (or the policy requires
            revocation/TCB checks the collateral did not allow).
    """
    trusted = anchors if anchors is not None else TrustAnchors.vendor()
    coll = collateral if collateral is not None else load_embedded_collateral(bundle)

    def gpu_stage(items: Sequence[GpuEvidence], gpu_nonce: bytes) -> VerifiedEvidence:
        gpu_collateral = coll.gpu if coll is not None else GpuCollateral(rims={}, ocsp={}, ocsp_checked=False)
        return run_gpu_checklist(
            items,
            nonce=gpu_nonce,
            now=now,
            collateral=gpu_collateral,
            policy=DEFER_APPRAISAL,
            anchors=trusted,
            allow_simulated=allow_simulated and trusted.gpu is not None,
            claims_version="3.0",
            reported_cc_mode=None,
            caches=None,
        )

    return run_composite(
        bundle,
        now=now,
        collateral=coll,
        cpu_collateral=None,
        expected_nonce=expected_nonce,
        skip_freshness_check=skip_freshness_check,
        scheme=scheme,
        policy=policy,
        anchors=trusted,
        allow_simulated=allow_simulated,
        gpu_stage=gpu_stage,
        trace=trace,
        ppcie_stage=ppcie_stage_for(
            now=now,
            collateral=coll.gpu if coll is not None else GpuCollateral(rims={}, ocsp={}, ocsp_checked=False),
            anchors=trusted,
            allow_simulated=allow_simulated and trusted.gpu is not None,
            caches=None,
        ),
    )
