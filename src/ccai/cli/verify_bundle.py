"""``ccai verify BUNDLE`` (also ``ccai verify bundle BUNDLE``): verify a composite evidence bundle.

Parses the arguments, builds a :class:`ccai.verify.Verifier` and calls
:meth:`~ccai.verify.Verifier.verify_bundle`, which checks the CPU quote/report, the binding and
every GPU (docs/composite-evidence.md). Collateral comes from ``--collateral FILE`` (a collateral
bundle, or an evidence bundle carrying one), else from the bundle itself, else — unless
``--offline`` — from Intel PCS / AMD KDS / NVIDIA's RIM service and OCSP responder (URLs
configurable; GPU collateral is fetched after the GPU evidence is authenticated). Exit codes as
``ccai verify gpu``: 0 pass, 1 evidence, binding or policy failure, 2 usage, 3 collateral unavailable.

``--service URL`` sends the bundle to an attestation service (``POST URL/v1/attest``) instead and
verifies the token it returns (``ccai.cli._remote``); the bundle's nonce must be one the service
issued (``ccai attest --service URL``), which the service consumes, so ``--nonce`` is optional there.

``--nonce`` (the nonce the verifier issued) is required: only it proves the bundle is fresh, not a
replay. ``--skip-freshness-check`` verifies without it, by name: the result then says
``freshness: not checked`` (JSON ``"freshness": "not checked"``, claims ``x-ccai-freshness``) and
people get a warning line, but the exit code stays 0 when everything else passes — the user asked
for exactly this check to be left out, and scripts read the ``freshness`` field.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ccai._json import load_json
from ccai.cli._help import CcaiGroup
from ccai.cli._options import (
    AllowSimulatedOpt,
    ApiKeyOpt,
    AtOpt,
    KdsUrlOpt,
    NonceOpt,
    OcspUrlOpt,
    PcsUrlOpt,
    RimServiceUrlOpt,
    ServiceUrlOpt,
    network_sources,
    parse_nonce,
    verification_time,
)
from ccai.cli._output import err_console, print_json, read_input
from ccai.cli._steps import outcome_document, print_pass, print_step_table, rows_from_trace
from ccai.errors import Error, MalformedEvidence, UsageError

if TYPE_CHECKING:
    from ccai.collateral import CollateralBundle
    from ccai.verify import VerifiedEvidence

__all__ = ["VerifyGroup", "bundle_command"]


class VerifyGroup(CcaiGroup):
    """The ``ccai verify`` group: a first argument that is not a sub-command is a bundle path, so
    ``ccai verify b.json`` means ``ccai verify bundle b.json``; its help shows both forms."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.epilog:
            self.epilog = (
                "ccai verify BUNDLE [OPTIONS] verifies a composite evidence bundle (ccai attest -o): "
                "it is short for ccai verify bundle BUNDLE [OPTIONS]; see ccai verify bundle --help."
            )

    def format_usage(self, ctx: Any, formatter: Any) -> None:  # Typer's vendored click types
        """``ccai verify [OPTIONS] COMMAND [ARGS]...``, then ``or: ccai verify BUNDLE [OPTIONS]``."""
        super().format_usage(ctx, formatter)
        formatter.write_usage(ctx.command_path, "BUNDLE [OPTIONS]", prefix="   or: ")

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # Typer's vendored click Context
        """Route ``ccai verify [OPTIONS] BUNDLE`` to the ``bundle`` command."""
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["bundle", *args]
        return super().parse_args(ctx, args)


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


_NOT_FRESH = "freshness NOT checked (--skip-freshness-check): this bundle may be a replay"


def _report(
    verified: VerifiedEvidence | None,
    error: Error | None,
    *,
    as_json: bool,
    freshness_checked: bool,
) -> None:
    from ccai.verify import COMPOSITE_STEPS

    results = verified.steps if verified is not None else (error.steps if error is not None else ())
    if results:
        rows = [{"step": r.step, "status": r.status, "detail": r.detail} for r in results]
    else:
        # An error before any step ran (unreadable collateral file): nothing was checked.
        rows = rows_from_trace(COMPOSITE_STEPS, [], error, failed=None)
        if not as_json:
            return  # the error message says what is wrong
    if as_json:
        claims = None
        simulated = {}
        if verified is not None:
            simulated = {"simulated": verified.simulated}
            claims = {
                "overall": dict(verified.overall_claims),
                "cpu": dict(verified.cpu_claims or {}),
                **{f"GPU-{g.index}": dict(g.claims) for g in verified.gpus},
                **{f"SWITCH-{s.index}": dict(s.claims) for s in verified.switches},
            }
        freshness = "checked" if freshness_checked else "not checked"
        print_json(outcome_document(rows, error, claims=claims, freshness=freshness, **simulated))
        return
    print_step_table("composite evidence", rows)
    if verified is not None:
        if not freshness_checked:
            err_console.print(f"[bold yellow]warning:[/] {_NOT_FRESH}", highlight=False, soft_wrap=True)
        print_pass(
            simulated="virtual TEE and GPUs, test PKI" if verified.simulated else None,
            caveats=() if freshness_checked else ("freshness NOT checked",),
        )


def _verify_with_service(
    url: str,
    api_key: str | None,
    data: bytes,
    *,
    nonce: str | None,
    policy: Path | None,
    allow_simulated: bool,
    as_json: bool,
) -> None:
    """``--service``: POST the bundle to ``URL/v1/attest`` (its nonce must be one the service
    issued: ``ccai attest --service URL``), verify the returned EAT against the service's JWKS and
    render the steps it records (``ccai.cli._remote``)."""
    from ccai.cli._remote import report_service_answer, service_client
    from ccai.evidence import load_evidence_bundle

    loaded = load_evidence_bundle(data)
    if nonce is not None and parse_nonce(nonce) != loaded.nonce:
        raise UsageError("the bundle is not bound to --nonce", expected=nonce, actual=loaded.nonce.hex())
    rules = _policies(policy).get("policy")
    client = service_client(url, api_key)
    try:
        answer = client.attest_bundle(data)
        report_service_answer(
            client,
            answer,
            nonce=loaded.nonce,
            allow_simulated=allow_simulated,
            policy=rules,
            as_json=as_json,
            title="composite evidence",
        )
    finally:
        client.close()


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
    skip_freshness_check: Annotated[
        bool,
        typer.Option(
            "--skip-freshness-check",
            help="DANGEROUS: verify without --nonce; a replayed bundle passes (the result says "
            "'freshness: not checked').",
        ),
    ] = False,
    scheme: Annotated[
        str, typer.Option("--scheme", help="Binding scheme: ccai/composite/v1 or secretvm/nonce-only.")
    ] = "ccai/composite/v1",
    pcs_url: PcsUrlOpt = None,
    kds_url: KdsUrlOpt = None,
    rim_service_url: RimServiceUrlOpt = None,
    ocsp_url: OcspUrlOpt = None,
    service: ServiceUrlOpt = None,
    api_key: ApiKeyOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print steps, claims and any error as JSON.")
    ] = False,
) -> None:
    """Verify a composite evidence bundle: CPU quote/report, every GPU and the binding."""
    from ccai.collateral import load_embedded_collateral
    from ccai.evidence import load_evidence_bundle
    from ccai.verify import Verifier

    if service is not None:
        from ccai.cli._remote import check_service_options

        check_service_options(
            offline=offline,
            collateral=collateral,
            at=at,
            skip_freshness_check=skip_freshness_check,
            pcs_url=pcs_url,
            kds_url=kds_url,
            rim_service_url=rim_service_url,
            ocsp_url=ocsp_url,
        )
        if scheme != "ccai/composite/v1":
            raise UsageError("--service verifies the ccai/composite/v1 binding only", actual=scheme)
        _verify_with_service(
            service,
            api_key,
            read_input(bundle, what="evidence bundle"),
            nonce=nonce,
            policy=policy,
            allow_simulated=allow_simulated,
            as_json=as_json,
        )
        return
    if nonce is None and not skip_freshness_check:
        raise UsageError(
            "--nonce is required: the nonce you issued; without it a replayed bundle passes",
            hint="or --skip-freshness-check to verify without it (the result then says "
            "freshness: not checked)",
        )
    if nonce is not None and skip_freshness_check:
        raise UsageError("give --nonce or --skip-freshness-check, not both")
    now = verification_time(at)
    expected = parse_nonce(nonce) if nonce is not None else None
    loaded = load_evidence_bundle(read_input(bundle, what="evidence bundle"))
    embedded = load_embedded_collateral(loaded)
    policies = _policies(policy)
    verified = None
    try:
        coll = _load_collateral(collateral) if collateral is not None else None
        anchors = None
        if allow_simulated:
            from ccai.virtual import virtual_trust_anchors

            cpu = loaded.cpu.type if loaded.cpu is not None else None
            anchors = virtual_trust_anchors(gpu=bool(loaded.gpus), tdx=cpu == "tdx", snp=cpu == "snp")
        sources: dict[str, Any] = {}
        if not offline and coll is None and embedded is None:
            sources = network_sources(
                pcs_url=pcs_url, kds_url=kds_url, rim_service_url=rim_service_url, ocsp_url=ocsp_url
            )
        verifier = Verifier(
            anchors=anchors,
            allow_simulated=allow_simulated,
            gpu_source=sources.get("gpu_source"),
            pcs=sources.get("pcs"),
            kds=sources.get("kds"),
            **policies,
        )
        verified = verifier.verify_bundle(
            loaded,
            now=now,
            expected_nonce=expected,
            skip_freshness_check=skip_freshness_check,
            scheme=scheme,
            collateral=coll,
        )
    except Error as exc:
        _report(None, exc, as_json=as_json, freshness_checked=expected is not None)
        raise
    _report(verified, None, as_json=as_json, freshness_checked=expected is not None)
