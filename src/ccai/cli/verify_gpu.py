"""``ccai verify gpu``: verify NVIDIA GPU evidence offline or online (docs/gpu-verification.md).

The command reads the evidence (NVIDIA's evidence JSON, or a raw report plus its PEM chain), builds
the collateral from explicit RIM files, a RIM directory, an offline bundle and — unless
``--offline`` — NVIDIA's RIM service and OCSP responder, then calls
:func:`ccai.verify.verify_gpu_evidence`. People get a per-step ✓/✗ table; ``--json`` prints the
steps, the claims and the detached EAT signed with the key under ``$CCAI_HOME``.

Exit codes: 0 genuine and policy satisfied; 1 evidence or policy failed; 2 usage; 3 collateral
unavailable (``ccai.cli._errors``).
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
    AtOpt,
    ClaimsVersionOpt,
    GpuCollateralOpt,
    GpuPolicyOpt,
    JsonClaimsOpt,
    NonceOpt,
    OfflineOpt,
    RimDirOpt,
    check_claims_version,
    gpu_collateral_source,
    parse_nonce,
    verification_time,
)
from ccai.cli._output import print_json, read_input
from ccai.cli._steps import failed_row, outcome_document, print_pass, print_step_table
from ccai.errors import CollateralUnavailable, Error, UsageError

if TYPE_CHECKING:
    from ccai.collateral import GpuCollateral
    from ccai.evidence import GpuEvidence
    from ccai.verify import GpuTrustAnchors, Policy, VerifiedEvidence

__all__ = [
    "build_policy",
    "evidence_failure",
    "gpu_command",
    "report_outcome",
    "run_verification",
    "simulated_anchors",
]


class _ExplicitRims:
    """RIM files given on the command line, served under the ids the reports select."""

    def __init__(self, rims: dict[str, bytes]) -> None:
        self.rims = rims

    def rim(self, rim_id: str) -> bytes:
        try:
            return self.rims[rim_id]
        except KeyError:
            raise CollateralUnavailable(f"no RIM {rim_id} given on the command line") from None

    def ocsp(self, cert: object, issuer: object, *, nonce: bytes | None) -> bytes:
        del cert, issuer, nonce
        raise CollateralUnavailable("RIM files carry no OCSP responses")


def simulated_anchors() -> GpuTrustAnchors:
    """The virtual GPU's test roots from ``$CCAI_HOME`` (only used with ``--allow-simulated``)."""
    from ccai.verify import GpuTrustAnchors
    from ccai.virtual import VirtualGpuBackend

    roots = VirtualGpuBackend.open().trust_anchors()
    return GpuTrustAnchors.simulated_from_pem(
        device_root_pem=roots.device_root_pem, rim_root_pem=roots.rim_root_pem
    )


def build_policy(path: Path | None, *, revocation_checked: bool) -> Policy:
    """The appraisal policy: ccai's default, an NVIDIA JSON policy combined with the CC-mode guard,
    or the GPU rules of a ccai policy file (docs/policies.md).

    NVIDIA's policies do not check CC mode or DevTools (gpu-evidence.md §12.2); ccai adds those two
    rules to every NVIDIA policy loaded from a file, and accepts "revocation not checked" only when
    the user chose an offline run without OCSP responses. A ccai policy file says itself whether
    unchecked revocation is acceptable (``gpu.allow_unchecked_revocation``).
    """
    from ccai.verify import (
        AllOf,
        CcModeOn,
        DevToolsOff,
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
            rules,
        )
    )


def _load_items(
    evidence: Path | None, report: Path | None, certs: Path | None, nonce: bytes
) -> tuple[GpuEvidence, ...]:
    from ccai.evidence import (
        GpuEvidence,
        device_arch,
        load_report,
        parse_attestation_report,
        parse_evidence_json,
    )

    if evidence is not None:
        if report is not None or certs is not None:
            raise UsageError("give either EVIDENCE.json or --report/--certs, not both")
        return parse_evidence_json(read_input(evidence, what="evidence"))
    if report is None or certs is None:
        raise UsageError("give EVIDENCE.json, or both --report and --certs")
    raw = load_report(read_input(report, what="report"))
    arch = device_arch(parse_attestation_report(raw))
    return (
        GpuEvidence(
            arch=arch, nonce=nonce, report=raw, certificate_chain=read_input(certs, what="certificates")
        ),
    )


def gather(
    items: Sequence[GpuEvidence],
    *,
    now: datetime,
    driver_rim: Path | None,
    vbios_rim: Path | None,
    rim_dir: Path | None,
    bundle: Path | None,
    offline: bool,
) -> GpuCollateral:
    """Collect RIMs and OCSP responses for ``items`` from the sources the options name."""
    from ccai.collateral import gather_gpu_collateral
    from ccai.evidence import driver_rim_id, vbios_rim_id

    explicit: dict[str, bytes] = {}
    for item in items:
        parsed = item.parse_report()
        if driver_rim is not None:
            explicit[driver_rim_id(parsed)] = read_input(driver_rim, what="driver RIM")
        if vbios_rim is not None:
            explicit[vbios_rim_id(parsed)] = read_input(vbios_rim, what="VBIOS RIM")
    source, check_revocation = gpu_collateral_source(
        collateral=bundle, rim_dir=rim_dir, offline=offline, first=_ExplicitRims(explicit)
    )
    return gather_gpu_collateral(items, source, now=now, check_revocation=check_revocation)


def evidence_failure(
    items: Sequence[GpuEvidence], *, nonce: bytes, now: datetime, allow_simulated: bool
) -> Error | None:
    """Run the evidence-only steps (1)-(5) with no collateral; the error they raise, if any.

    Used when collateral could not be gathered: a forged, foreign or unbound report is reported
    as evidence failure (exit 1) at its step, and only genuine-looking evidence as "collateral
    unavailable" (exit 3).
    """
    from ccai.collateral import GpuCollateral
    from ccai.errors import CollateralError
    from ccai.verify import default_policy, verify_gpu_evidence

    try:
        verify_gpu_evidence(
            items,
            nonce=nonce,
            collateral=GpuCollateral(ocsp_checked=False),
            now=now,
            policy=default_policy(allow_unchecked_revocation=True),
            allow_simulated=allow_simulated,
            simulated_anchors=simulated_anchors() if allow_simulated else None,
        )
    except CollateralError:
        return None
    except Error as exc:
        return exc
    return None


def _details(verified: VerifiedEvidence) -> dict[str, str]:
    claims = verified.gpus[0].claims
    n = len(verified.gpus)
    chain = claims.get("x-nvidia-gpu-attestation-report-cert-chain") or {}
    drv = claims.get("x-nvidia-gpu-driver-rim-cert-chain") or {}
    vb = claims.get("x-nvidia-gpu-vbios-rim-cert-chain") or {}
    records = claims.get("x-nvidia-mismatch-measurement-records") or []
    compared = len((claims.get("x-ccai-measurements") or {}).get("compared", []))
    return {
        "(1) device certificate chain": f"{n} GPU(s): {claims.get('hwmodel')} → pinned root"
        + (" (SIMULATED test PKI)" if verified.simulated else ""),
        "(2) report signature": "ECDSA P-384 / SHA-384 by the attestation key",
        "(3) report contents and FWID": "FWID matches the leaf certificate",
        "(4) nonce": f"eat_nonce {verified.nonce.hex()[:16]}…",
        "(5) revocation": f"device chain OCSP {chain.get('x-nvidia-cert-ocsp-status', 'n/a')}",
        "(6) RIM selection": f"{claims.get('x-ccai-gpu-driver-rim-id')}, "
        f"{claims.get('x-ccai-gpu-vbios-rim-id')}",
        "(7) RIM signature and chain": f"driver RIM OCSP {drv.get('x-nvidia-cert-ocsp-status', 'n/a')}, "
        f"VBIOS RIM OCSP {vb.get('x-nvidia-cert-ocsp-status', 'n/a')}",
        "(8) RIM version and product": f"driver {claims.get('x-nvidia-gpu-driver-version')}, "
        f"VBIOS {claims.get('x-nvidia-gpu-vbios-version')}",
        "(9) measurements": f"{compared} compared, measres {claims.get('measres')}"
        + (f", mismatches at {[r['index'] for r in records]}" if records else ""),
        "(10) multi-GPU mode": str(claims.get("x-ccai-gpu-feature-flag") or "single GPU"),
        "(11) claims": f"claims {verified.claims_version}",
        "(12) policy": "satisfied",
    }


def report_outcome(
    *,
    verified: VerifiedEvidence | None,
    error: Error | None,
    as_json: bool,
    title: str,
    eat: list[Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Print the per-step table (people) or the JSON document (scripts) for one verification."""
    from ccai.verify import GPU_STEPS

    details = _details(verified) if verified is not None else {}
    failed = error.step if error is not None and error.step in GPU_STEPS else None
    if error is not None and failed is None:
        failed = GPU_STEPS[0] if error.step in (None, "parse", "load") else None
    rows: list[dict[str, str]] = []
    reached = True
    for step in GPU_STEPS:
        if error is None:
            rows.append({"step": step, "status": "ok", "detail": details.get(step, "")})
        elif step == failed:
            rows.append(failed_row(step, error))
            reached = False
        else:
            rows.append({"step": step, "status": "ok" if reached and failed else "not run", "detail": ""})
    if as_json:
        claims = None
        if verified is not None:
            claims = {
                "overall": dict(verified.overall_claims),
                **{f"GPU-{g.index}": dict(g.claims) for g in verified.gpus},
            }
        print_json(outcome_document(rows, error, claims=claims, detached_eat=eat, **(extra or {})))
        return
    print_step_table(title, rows)
    if verified is not None:
        print_pass(simulated="virtual CC GPU, test PKI" if verified.simulated else None)


def run_verification(
    items: Sequence[GpuEvidence],
    *,
    nonce: bytes,
    collateral: GpuCollateral,
    now: datetime,
    policy: Policy,
    allow_simulated: bool,
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
    from ccai.verify import verify_gpu_evidence

    anchors = simulated_anchors() if allow_simulated else None
    try:
        verified = verify_gpu_evidence(
            items,
            nonce=nonce,
            collateral=collateral,
            now=now,
            policy=policy,
            allow_simulated=allow_simulated,
            simulated_anchors=anchors,
            claims_version=claims_version,
            reported_cc_mode=reported_cc_mode,
        )
    except Error as exc:
        report_outcome(verified=None, error=exc, as_json=as_json, title=title, extra=extra)
        raise
    eat = None
    if as_json:
        signer = TokenSigner.load_or_create(development=verified.simulated)
        eat = issue_token(verified, signing_key=signer, now=now).to_json()
    report_outcome(verified=verified, error=None, as_json=as_json, title=title, eat=eat, extra=extra)
    return verified


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
    at: AtOpt = None,
    policy: GpuPolicyOpt = None,
    allow_simulated: AllowSimulatedOpt = False,
    claims_version: ClaimsVersionOpt = "3.0",
    as_json: JsonClaimsOpt = False,
) -> None:
    """Verify NVIDIA GPU evidence: chain, signature, FWID, nonce, revocation, RIMs, measurements, policy."""
    if not nonce:
        raise UsageError("--nonce is required (the nonce the evidence must be bound to)")
    nonce_bytes = parse_nonce(nonce)
    check_claims_version(claims_version)
    now = verification_time(at)
    items = _load_items(evidence, report, certs, nonce_bytes)
    try:
        gathered = gather(
            items,
            now=now,
            driver_rim=driver_rim,
            vbios_rim=vbios_rim,
            rim_dir=rim_dir,
            bundle=collateral,
            offline=offline,
        )
    except CollateralUnavailable:
        failure = evidence_failure(items, nonce=nonce_bytes, now=now, allow_simulated=allow_simulated)
        if failure is None:
            raise
        report_outcome(verified=None, error=failure, as_json=as_json, title="GPU evidence")
        raise failure from None
    run_verification(
        items,
        nonce=nonce_bytes,
        collateral=gathered,
        now=now,
        policy=build_policy(policy, revocation_checked=gathered.ocsp_checked),
        allow_simulated=allow_simulated,
        claims_version=claims_version,
        reported_cc_mode=None,
        as_json=as_json,
        title="GPU evidence",
    )
