"""``ccai verify gpu``: verify NVIDIA GPU evidence offline or online (docs/gpu-verification.md).

The command parses its arguments, builds a :class:`ccai.verify.Verifier` (the pinned roots, or with
``--allow-simulated`` also the virtual GPU's test PKI; collateral from explicit RIM files, a RIM
directory, an offline bundle and — unless ``--offline`` — NVIDIA's RIM service and OCSP responder),
calls it, and renders the per-step results: a ✓/✗ table for people, or with ``--json`` the steps,
the claims and the detached EAT signed with the key under ``$CCAI_HOME``.

``--service URL`` sends the evidence to an attestation service (``POST URL/v4/attest/gpu``, or v3
with ``--claims-version 2.0``) instead, verifies the detached EAT it returns against
``URL/.well-known/jwks.json`` and renders the steps that token records (``ccai.cli._remote``);
``--policy`` is then applied to the token's claims. Exit 3 when the service answers 503, 2 for
its 4xx answers (bad request, API key).

Exit codes: 0 genuine and policy satisfied; 1 evidence or policy failed; 2 usage; 3 collateral
unavailable (``ccai.cli._errors``).

A pass never says more than was checked: offline without OCSP responses revocation is
``not-checked`` — the default policy of such a run accepts that, but NVIDIA's overall result
(``x-nvidia-overall-att-result``, which needs every OCSP status ``good``) is then false — so the
verdict reads ``PASS (revocation NOT checked: …; x-nvidia-overall-att-result: false)`` and the JSON
carries ``"revocation": "not-checked"`` and the same ``warnings``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ccai._json import load_json
from ccai.cli._options import (
    AllowSimulatedOpt,
    ApiKeyOpt,
    AtOpt,
    ClaimsVersionOpt,
    GpuCollateralOpt,
    GpuPolicyOpt,
    JsonClaimsOpt,
    NonceOpt,
    OcspUrlOpt,
    OfflineOpt,
    RimDirOpt,
    RimServiceUrlOpt,
    ServiceUrlOpt,
    check_claims_version,
    gpu_collateral_source,
    parse_nonce,
    verification_time,
)
from ccai.cli._output import print_json, read_input
from ccai.cli._steps import failed_row, outcome_document, print_pass, print_step_table
from ccai.errors import Error, UsageError

if TYPE_CHECKING:
    from ccai.collateral import CollateralSource
    from ccai.evidence import GpuEvidence
    from ccai.verify import Policy, StepResult, VerifiedEvidence, Verifier

__all__ = ["build_policy", "caveats", "gpu_command", "gpu_verifier", "report_outcome", "verify_and_report"]


def build_policy(path: Path | None, *, revocation_checked: bool) -> Policy:
    """The appraisal policy: ccai's default, an NVIDIA JSON policy combined with the CC-mode guard,
    or the GPU rules of a ccai policy file (docs/policies.md).

    NVIDIA's policies do not check CC mode or DevTools (gpu-evidence.md §12.2); ccai adds those two
    rules and distinct GPUs to every NVIDIA policy loaded from a file, and accepts "revocation not
    checked" only when the user chose an offline run without OCSP responses. A ccai policy file says
    itself whether unchecked revocation is acceptable (``gpu.allow_unchecked_revocation``).
    """
    from ccai.verify import (
        AllOf,
        CcModeOn,
        DevToolsOff,
        DistinctGpus,
        RevocationGood,
        default_policy,
        load_nvidia_policy,
        load_policy,
    )

    if path is None:
        return default_policy(allow_unchecked_revocation=not revocation_checked)
    data = read_input(path, what="policy")
    try:
        doc = load_json(data, what=f"policy {path}", error=UsageError)
    except UsageError:
        doc = None  # load_nvidia_policy below says what is wrong
    if isinstance(doc, dict) and "format" in doc:
        return load_policy(doc, part="gpu", name=str(path))
    rules = load_nvidia_policy(path)
    return AllOf(
        policies=(
            RevocationGood(allow_not_checked=not revocation_checked),
            CcModeOn(),
            DevToolsOff(),
            DistinctGpus(),
            rules,
        )
    )


def gpu_verifier(
    *,
    policy: Path | None,
    allow_simulated: bool,
    bundle: Path | None,
    rim_dir: Path | None,
    offline: bool,
    driver_rim: Path | None = None,
    vbios_rim: Path | None = None,
    rim_service_url: str | None = None,
    ocsp_url: str | None = None,
    last: CollateralSource | None = None,
) -> Verifier:
    """The verifier the GPU options describe (``ccai verify gpu``, ``ccai attest gpu``)."""
    from ccai.verify import Verifier

    source, check_revocation = gpu_collateral_source(
        collateral=bundle,
        rim_dir=rim_dir,
        offline=offline,
        rim_service_url=rim_service_url,
        ocsp_url=ocsp_url,
        last=last,
    )
    anchors = None
    if allow_simulated:
        from ccai.virtual import virtual_trust_anchors

        anchors = virtual_trust_anchors(gpu=True)
    return Verifier(
        anchors=anchors,
        allow_simulated=allow_simulated,
        policy=build_policy(policy, revocation_checked=check_revocation),
        gpu_source=source,
        check_revocation=check_revocation,
        driver_rim=read_input(driver_rim, what="driver RIM") if driver_rim is not None else None,
        vbios_rim=read_input(vbios_rim, what="VBIOS RIM") if vbios_rim is not None else None,
    )


def _load_items(
    evidence: Path | None, report: Path | None, certs: Path | None, nonce: bytes
) -> tuple[GpuEvidence, ...]:
    from ccai.evidence import GpuEvidence, load_report, parse_evidence_json

    if evidence is not None:
        if report is not None or certs is not None:
            raise UsageError("give either EVIDENCE.json or --report/--certs, not both")
        return parse_evidence_json(read_input(evidence, what="evidence"))
    if report is None or certs is None:
        raise UsageError("give EVIDENCE.json, or both --report and --certs")
    # A raw report carries no architecture label: the verifier takes it from the signed report
    # (nothing here parses the report before its signature is checked).
    return (
        GpuEvidence(
            arch="",
            nonce=nonce,
            report=load_report(read_input(report, what="report")),
            certificate_chain=read_input(certs, what="certificates"),
        ),
    )


def _row(result: StepResult) -> dict[str, str]:
    return {"step": result.step, "status": result.status, "detail": result.detail}


def _rows(verified: VerifiedEvidence | None, error: Error | None) -> list[dict[str, str]]:
    from ccai.verify import GPU_STEPS

    if verified is not None:
        return [_row(r) for r in verified.steps]
    assert error is not None
    if error.steps:
        return [_row(r) for r in error.steps]
    # An error before the checklist started (unreadable evidence): shown at the first step.
    failed = error.step if error.step in GPU_STEPS else None
    if failed is None and error.step in (None, "parse", "load"):
        failed = GPU_STEPS[0]
    return [
        failed_row(step, error) if step == failed else {"step": step, "status": "not run", "detail": ""}
        for step in GPU_STEPS
    ]


REVOCATION_NOT_CHECKED = "revocation NOT checked: offline without OCSP responses"


def caveats(verified: VerifiedEvidence, *, revocation_checked: bool) -> list[str]:
    """What a passed GPU verification does not cover, to print next to PASS.

    Args:
        verified: The passed verification.
        revocation_checked: Whether OCSP responses were fetched (False offline without a bundle).

    Returns:
        One phrase per caveat: revocation not checked, and NVIDIA's overall result being false
        (its rule needs every OCSP status ``good`` and every measurement matching).
    """
    found = [] if revocation_checked else [REVOCATION_NOT_CHECKED]
    if verified.overall_claims.get("x-nvidia-overall-att-result") is False:
        found.append("x-nvidia-overall-att-result: false")
    return found


def report_outcome(
    *,
    verified: VerifiedEvidence | None,
    error: Error | None,
    as_json: bool,
    title: str,
    eat: list[Any] | None = None,
    extra: dict[str, Any] | None = None,
    revocation_checked: bool = True,
) -> None:
    """Print the per-step table (people) or the JSON document (scripts) for one verification.

    ``revocation_checked`` False (offline without OCSP responses) is said next to PASS and in the
    JSON (``"revocation": "not-checked"`` and ``warnings``).
    """
    rows = _rows(verified, error)
    warnings = caveats(verified, revocation_checked=revocation_checked) if verified is not None else []
    if as_json:
        claims = None
        if verified is not None:
            claims = {
                "overall": dict(verified.overall_claims),
                **{f"GPU-{g.index}": dict(g.claims) for g in verified.gpus},
                **{f"SWITCH-{s.index}": dict(s.claims) for s in verified.switches},
            }
        revocation = "checked" if revocation_checked else "not-checked"
        print_json(
            outcome_document(
                rows,
                error,
                claims=claims,
                detached_eat=eat,
                revocation=revocation,
                warnings=warnings,
                **(extra or {}),
            )
        )
        return
    print_step_table(title, rows)
    if verified is not None:
        print_pass(simulated="virtual CC GPU, test PKI" if verified.simulated else None, caveats=warnings)


def verify_and_report(
    verifier: Verifier,
    items: Sequence[GpuEvidence],
    *,
    nonce: bytes,
    now: datetime,
    claims_version: str,
    reported_cc_mode: str | None,
    as_json: bool,
    title: str,
    extra: dict[str, Any] | None = None,
) -> VerifiedEvidence:
    """Verify, print the outcome, and (for ``--json``) issue the detached EAT.

    Raises:
        Error: the verification failed (after the outcome was printed).
    """
    from ccai.token import TokenSigner, issue_token

    try:
        verified = verifier.verify_gpu(
            items, nonce=nonce, now=now, claims_version=claims_version, reported_cc_mode=reported_cc_mode
        )
    except Error as exc:
        report_outcome(
            verified=None,
            error=exc,
            as_json=as_json,
            title=title,
            extra=extra,
            revocation_checked=verifier.check_revocation,
        )
        raise
    eat = None
    if as_json:
        signer = TokenSigner.load_or_create(development=verified.simulated)
        eat = issue_token(verified, signing_key=signer, now=now).to_json()
    report_outcome(
        verified=verified,
        error=None,
        as_json=as_json,
        title=title,
        eat=eat,
        extra=extra,
        revocation_checked=verifier.check_revocation,
    )
    return verified


def _verify_with_service(
    url: str,
    api_key: str | None,
    items: Sequence[GpuEvidence],
    *,
    nonce: bytes,
    claims_version: str,
    policy: Path | None,
    allow_simulated: bool,
    as_json: bool,
) -> None:
    """``--service``: POST the evidence to ``URL/v4|v3/attest/gpu``, verify the returned EAT
    against ``URL/.well-known/jwks.json`` and render the steps it records (``ccai.cli._remote``)."""
    from ccai.cli._remote import report_service_answer, service_client

    rules = build_policy(policy, revocation_checked=True) if policy is not None else None
    client = service_client(url, api_key)
    try:
        answer = client.attest_gpu(items, nonce=nonce, claims_version=claims_version)
        report_service_answer(
            client,
            answer,
            nonce=nonce,
            allow_simulated=allow_simulated,
            policy=rules,
            as_json=as_json,
            title="GPU evidence",
        )
    finally:
        client.close()


def gpu_command(  # noqa: PLR0917 - Typer maps each parameter to a command-line option
    evidence: Annotated[
        Path | None,
        typer.Argument(help="NVIDIA evidence JSON (list of {arch, nonce, evidence, certificate})."),
    ] = None,
    nonce: NonceOpt = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Raw report (binary or hex).", metavar="F")
    ] = None,
    certs: Annotated[
        Path | None, typer.Option("--certs", help="PEM certificate chain, leaf first.", metavar="F")
    ] = None,
    driver_rim: Annotated[
        Path | None, typer.Option("--driver-rim", help="Driver RIM XML.", metavar="F")
    ] = None,
    vbios_rim: Annotated[Path | None, typer.Option("--vbios-rim", help="VBIOS RIM XML.", metavar="F")] = None,
    rim_dir: RimDirOpt = None,
    collateral: GpuCollateralOpt = None,
    offline: OfflineOpt = False,
    rim_service_url: RimServiceUrlOpt = None,
    ocsp_url: OcspUrlOpt = None,
    at: AtOpt = None,
    policy: GpuPolicyOpt = None,
    allow_simulated: AllowSimulatedOpt = False,
    claims_version: ClaimsVersionOpt = "3.0",
    service: ServiceUrlOpt = None,
    api_key: ApiKeyOpt = None,
    as_json: JsonClaimsOpt = False,
) -> None:
    """Verify NVIDIA GPU evidence: chain, signature, FWID, nonce, revocation, RIMs, measurements, policy."""
    if not nonce:
        raise UsageError("--nonce is required (the nonce the evidence must be bound to)")
    nonce_bytes = parse_nonce(nonce)
    check_claims_version(claims_version)
    if service is not None:
        from ccai.cli._remote import check_service_options

        check_service_options(
            driver_rim=driver_rim,
            vbios_rim=vbios_rim,
            rim_dir=rim_dir,
            collateral=collateral,
            offline=offline,
            rim_service_url=rim_service_url,
            ocsp_url=ocsp_url,
            at=at,
        )
        _verify_with_service(
            service,
            api_key,
            _load_items(evidence, report, certs, nonce_bytes),
            nonce=nonce_bytes,
            claims_version=claims_version,
            policy=policy,
            allow_simulated=allow_simulated,
            as_json=as_json,
        )
        return
    if offline and (rim_service_url is not None or ocsp_url is not None):
        raise UsageError("--offline never asks a RIM service or OCSP responder: drop it or the URLs")
    now = verification_time(at)
    items = _load_items(evidence, report, certs, nonce_bytes)
    verifier = gpu_verifier(
        policy=policy,
        allow_simulated=allow_simulated,
        bundle=collateral,
        rim_dir=rim_dir,
        offline=offline,
        driver_rim=driver_rim,
        vbios_rim=vbios_rim,
        rim_service_url=rim_service_url,
        ocsp_url=ocsp_url,
    )
    verify_and_report(
        verifier,
        items,
        nonce=nonce_bytes,
        now=now,
        claims_version=claims_version,
        reported_cc_mode=None,
        as_json=as_json,
        title="GPU evidence",
    )
