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
from rich.markup import escape
from rich.table import Table

from ccai._time import parse_instant, utcnow
from ccai.cli._output import console, print_json, read_input
from ccai.errors import CollateralUnavailable, Error, UsageError

if TYPE_CHECKING:
    from ccai.collateral import GpuCollateral
    from ccai.evidence import GpuEvidence
    from ccai.verify import GpuTrustAnchors, Policy, VerifiedEvidence

__all__ = ["build_policy", "gpu_command", "report_outcome", "run_verification", "simulated_anchors"]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print claims and the detached EAT as JSON.")]


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
    from ccai.device import VirtualGpuBackend
    from ccai.verify import GpuTrustAnchors

    roots = VirtualGpuBackend.open().trust_anchors()
    return GpuTrustAnchors.simulated_from_pem(
        device_root_pem=roots.device_root_pem, rim_root_pem=roots.rim_root_pem
    )


def build_policy(path: Path | None, *, revocation_checked: bool) -> Policy:
    """The appraisal policy: ccai's default, or an NVIDIA JSON policy combined with the CC-mode guard.

    NVIDIA's policies do not check CC mode or DevTools (gpu-evidence.md §12.2); ccai adds those two
    rules to every policy loaded from a file, and accepts "revocation not checked" only when the
    user chose an offline run without OCSP responses.
    """
    from ccai.verify import AllOf, CcModeOn, DevToolsOff, RevocationGood, default_policy, load_nvidia_policy

    if path is None:
        return default_policy(allow_unchecked_revocation=not revocation_checked)
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
    from ccai.collateral import SourceChain, default_gpu_source, gather_gpu_collateral, read_bundle
    from ccai.evidence import driver_rim_id, vbios_rim_id

    explicit: dict[str, bytes] = {}
    for item in items:
        parsed = item.parse_report()
        if driver_rim is not None:
            explicit[driver_rim_id(parsed)] = read_input(driver_rim, what="driver RIM")
        if vbios_rim is not None:
            explicit[vbios_rim_id(parsed)] = read_input(vbios_rim, what="VBIOS RIM")
    loaded = read_bundle(bundle) if bundle is not None else None
    source = SourceChain(
        [_ExplicitRims(explicit), default_gpu_source(bundle=loaded, rim_dir=rim_dir, offline=offline)]
    )
    # Offline without a bundle there is nowhere to get OCSP responses from: say "not checked".
    check_revocation = not offline or loaded is not None
    return gather_gpu_collateral(items, source, now=now, check_revocation=check_revocation)


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
            rows.append(
                {"step": step, "status": "failed", "detail": f"{type(error).__name__}: {error.message}"}
            )
            reached = False
        else:
            rows.append({"step": step, "status": "ok" if reached and failed else "not run", "detail": ""})
    if as_json:
        doc: dict[str, Any] = {
            "result": "pass" if error is None else "fail",
            "steps": rows,
            "claims": None,
            "detached_eat": eat,
            "error": error.context() if error is not None else None,
        }
        if verified is not None:
            doc["claims"] = {
                "overall": dict(verified.overall_claims),
                **{f"GPU-{g.index}": dict(g.claims) for g in verified.gpus},
            }
        doc.update(extra or {})
        print_json(doc)
        return
    table = Table(title=title)
    table.add_column("", width=1)
    table.add_column("step")
    table.add_column("detail")
    marks = {"ok": "[green]✓[/]", "failed": "[bold red]✗[/]", "not run": "[dim]·[/]"}
    for row in rows:
        table.add_row(marks[row["status"]], row["step"], escape(row["detail"]))
    console.print(table)
    if verified is not None:
        if verified.simulated:
            console.print(
                "[bold yellow]SIMULATED — virtual CC GPU, test PKI; not evidence of real hardware[/]"
            )
        console.print("[bold green]PASS[/]")


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
        eat = issue_token(verified, signing_key=TokenSigner.load_or_create(), now=now).to_json()
    report_outcome(verified=verified, error=None, as_json=as_json, title=title, eat=eat, extra=extra)
    return verified


def gpu_command(  # noqa: PLR0917 - Typer maps each parameter to a command-line option
    evidence: Annotated[
        Path | None,
        typer.Argument(help="NVIDIA evidence JSON (list of {arch, nonce, evidence, certificate})."),
    ] = None,
    nonce: Annotated[
        str, typer.Option("--nonce", help="The verifier nonce, 64 hex digits.", metavar="HEX64")
    ] = "",
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
    rim_dir: Annotated[
        Path | None, typer.Option("--rim-dir", help="Directory of <id>.xml RIMs.", metavar="D")
    ] = None,
    collateral: Annotated[
        Path | None, typer.Option("--collateral", help="Offline collateral bundle.", metavar="BUNDLE")
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="No network. Without a bundle, revocation is 'not-checked'.")
    ] = False,
    at: Annotated[
        str | None, typer.Option("--at", help="Verification time (default now).", metavar="ISO8601")
    ] = None,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="NVIDIA JSON policy file.", metavar="F")
    ] = None,
    allow_simulated: Annotated[
        bool,
        typer.Option("--allow-simulated", help="Accept virtual-GPU evidence (test PKI under $CCAI_HOME)."),
    ] = False,
    claims_version: Annotated[str, typer.Option("--claims-version", help="3.0 or 2.0.")] = "3.0",
    as_json: JsonOpt = False,
) -> None:
    """Verify NVIDIA GPU evidence: chain, signature, FWID, nonce, revocation, RIMs, measurements, policy."""
    from ccai.cli.gpu import parse_nonce

    if not nonce:
        raise UsageError("--nonce is required (the nonce the evidence must be bound to)")
    nonce_bytes = parse_nonce(nonce)
    if claims_version not in ("3.0", "2.0"):
        raise UsageError("--claims-version must be 3.0 or 2.0", actual=claims_version)
    now = parse_instant(at) if at else utcnow()
    items = _load_items(evidence, report, certs, nonce_bytes)
    gathered = gather(
        items,
        now=now,
        driver_rim=driver_rim,
        vbios_rim=vbios_rim,
        rim_dir=rim_dir,
        bundle=collateral,
        offline=offline,
    )
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
