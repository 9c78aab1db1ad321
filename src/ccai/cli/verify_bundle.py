"""``ccai verify BUNDLE`` (also ``ccai verify bundle BUNDLE``): verify a composite evidence bundle.

Checks the CPU quote/report, every GPU and the binding with :func:`ccai.verify.verify_composite`
(docs/composite-evidence.md). Collateral comes from ``--collateral FILE`` (a collateral bundle, or an
evidence bundle carrying one), else from the bundle itself, else — unless ``--offline`` — from
Intel PCS / AMD KDS / NVIDIA's RIM service and OCSP responder (URLs configurable). Exit codes as
``ccai verify gpu``: 0 pass, 1 evidence, binding or policy failure, 2 usage, 3 collateral unavailable.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from ccai._json import load_json
from ccai.cli._options import (
    AllowSimulatedOpt,
    AtOpt,
    KdsUrlOpt,
    NonceOpt,
    OcspUrlOpt,
    PcsUrlOpt,
    RimServiceUrlOpt,
    network_sources,
    parse_nonce,
    verification_time,
)
from ccai.cli._output import print_json, read_input
from ccai.cli._steps import outcome_document, print_pass, print_step_table, rows_from_trace
from ccai.errors import Error, MalformedEvidence, UsageError

if TYPE_CHECKING:
    from ccai.collateral import CollateralBundle
    from ccai.verify import VerifiedEvidence
    from ccai.virtual import VirtualTeeAnchors

__all__ = ["VerifyGroup", "bundle_command", "simulated_cpu_anchors"]


class VerifyGroup(TyperGroup):
    """The ``ccai verify`` group: a first argument that is not a sub-command is a bundle path, so
    ``ccai verify b.json`` means ``ccai verify bundle b.json``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # Typer's vendored click Context
        """Route ``ccai verify [OPTIONS] BUNDLE`` to the ``bundle`` command."""
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["bundle", *args]
        return super().parse_args(ctx, args)


def simulated_cpu_anchors(cpu_type: str) -> VirtualTeeAnchors:
    """The virtual TEE's test roots from ``$CCAI_HOME`` (only used with ``--allow-simulated``)."""
    from ccai._home import ccai_home
    from ccai.virtual import SnpPlatform, VirtualCpuTee, VirtualTeeAnchors, VirtualTeePki

    home = ccai_home()
    pki = VirtualTeePki(VirtualCpuTee.open(home).seed, cache_dir=home)
    if cpu_type == "tdx":
        return VirtualTeeAnchors(tee="tdx", sgx_root=pki.sgx_root.certificate)
    product = SnpPlatform().product
    return VirtualTeeAnchors(
        tee="snp", ark=pki.ark(product).certificate, ask=pki.ask(product).certificate, product=product
    )


def _load_collateral(path: Path) -> CollateralBundle:
    from ccai.collateral import load_bundle, load_embedded_collateral
    from ccai.evidence import load_evidence_bundle

    data = read_input(path, what="collateral")
    try:
        kind = load_json(data, what="collateral").get("format")
    except (MalformedEvidence, AttributeError):
        kind = None  # load_bundle below says what is wrong
    if kind == "ccai-evidence-bundle":
        carried = load_embedded_collateral(load_evidence_bundle(data))
        if carried is None:
            raise UsageError(f"{path} is an evidence bundle without collateral")
        return carried
    return load_bundle(data)


def _policies(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    from ccai.verify import load_policy

    return {"policy": load_policy(read_input(path, what="policy"), name=str(path))}


def _report(
    trace: list[tuple[str, str]],
    verified: VerifiedEvidence | None,
    error: Error | None,
    *,
    as_json: bool,
    before_steps: bool = False,
) -> None:
    from ccai.verify import COMPOSITE_STEPS

    done = {step for step, _ in trace}
    # The composite verifier stops at the first step that raised: the first step it did not finish.
    # An error before it started (fetching collateral) belongs to no step.
    failed = None if before_steps else next((step for step in COMPOSITE_STEPS if step not in done), None)
    rows = rows_from_trace(COMPOSITE_STEPS, trace, error, failed=failed)
    if before_steps and not as_json:
        return  # nothing was checked; the error message says what is missing
    if as_json:
        claims = None
        simulated = {}
        if verified is not None:
            simulated = {"simulated": verified.simulated}
            claims = {
                "overall": dict(verified.overall_claims),
                "cpu": dict(verified.cpu_claims or {}),
                **{f"GPU-{g.index}": dict(g.claims) for g in verified.gpus},
            }
        print_json(outcome_document(rows, error, claims=claims, **simulated))
        return
    print_step_table("composite evidence", rows)
    if verified is not None:
        print_pass(simulated="virtual TEE and GPUs, test PKI" if verified.simulated else None)


def bundle_command(  # noqa: PLR0917 - Typer maps each parameter to a command-line option
    bundle: Annotated[Path, typer.Argument(help="Evidence bundle (ccai attest -o).", metavar="BUNDLE")],
    offline: Annotated[
        bool, typer.Option("--offline", help="No network: embedded or --collateral only.")
    ] = False,
    collateral: Annotated[
        Path | None,
        typer.Option("--collateral", help="Collateral bundle (or an evidence bundle carrying one)."),
    ] = None,
    at: AtOpt = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help="Policy JSON: a ccai policy (docs/policies.md), an NVIDIA authorization-rules file, "
            'or {"tdx": {…}, "snp": {…}}.',
        ),
    ] = None,
    allow_simulated: AllowSimulatedOpt = False,
    nonce: NonceOpt = None,
    scheme: Annotated[
        str, typer.Option("--scheme", help="Binding scheme: ccai/composite/v1 or secretvm/nonce-only.")
    ] = "ccai/composite/v1",
    pcs_url: PcsUrlOpt = None,
    kds_url: KdsUrlOpt = None,
    rim_service_url: RimServiceUrlOpt = None,
    ocsp_url: OcspUrlOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print steps, claims and any error as JSON.")
    ] = False,
) -> None:
    """Verify a composite evidence bundle: CPU quote/report, every GPU and the binding."""
    from ccai.cli.verify_gpu import simulated_anchors
    from ccai.collateral import load_embedded_collateral
    from ccai.evidence import load_evidence_bundle
    from ccai.verify import verify_composite

    now = verification_time(at)
    expected = parse_nonce(nonce) if nonce is not None else None
    loaded = load_evidence_bundle(read_input(bundle, what="evidence bundle"))
    embedded = load_embedded_collateral(loaded)
    kwargs = _policies(policy)
    trace: list[tuple[str, str]] = []
    verified = None
    verifying = False
    try:
        coll = _load_collateral(collateral) if collateral is not None else embedded
        if coll is None and not offline:
            from ccai.attest import gather_composite_collateral

            sources = network_sources(
                pcs_url=pcs_url, kds_url=kds_url, rim_service_url=rim_service_url, ocsp_url=ocsp_url
            )
            coll = gather_composite_collateral(loaded, now=now, **sources)
        sim: dict[str, Any] = {}
        if allow_simulated:
            sim = {
                "simulated_gpu_anchors": simulated_anchors() if loaded.gpus else None,
                "simulated_cpu_anchors": simulated_cpu_anchors(loaded.cpu.type) if loaded.cpu else None,
            }
        if coll is None:
            # Offline with nothing embedded: the verifier reports what is missing (exit 3).
            from ccai.collateral import CollateralBundle, GpuCollateral

            coll = CollateralBundle(gpu=GpuCollateral(rims={}, ocsp={}, ocsp_checked=False))
        verifying = True
        verified = verify_composite(
            loaded,
            now=now,
            collateral=coll,
            expected_nonce=expected,
            scheme=scheme,
            allow_simulated=allow_simulated,
            trace=trace,
            **sim,
            **kwargs,
        )
    except Error as exc:
        _report(trace, None, exc, as_json=as_json, before_steps=not verifying)
        raise
    _report(trace, verified, None, as_json=as_json)
