"""``ccai collateral …``: build and inspect offline collateral bundles (docs/collateral.md).

``fetch`` gathers the RIMs and OCSP responses a verifier needs for an evidence file and writes
them into one bundle, for verification on an air-gapped machine (``ccai verify gpu --collateral``).
``inspect`` shows what a bundle holds and until when it is usable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ccai.cli._options import (
    AtOpt,
    JsonOpt,
    OcspUrlOpt,
    RimDirOpt,
    RimServiceUrlOpt,
    collateral_http_limits,
    verification_time,
)
from ccai.cli._output import console, err_console, print_json, read_input
from ccai.errors import UsageError

__all__ = ["app"]

app = typer.Typer(
    name="collateral",
    help="Fetch and inspect offline collateral bundles (RIMs, OCSP responses).",
    no_args_is_help=True,
)


@app.command("fetch")
def fetch(  # noqa: PLR0917 - Typer maps each parameter to a command-line option
    evidence: Annotated[
        Path, typer.Argument(help="Evidence JSON (NVIDIA's list of {arch, nonce, evidence, certificate}).")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Bundle file to write.")],
    rim_service_url: RimServiceUrlOpt = None,
    ocsp_url: OcspUrlOpt = None,
    rim_dir: RimDirOpt = None,
    service_key: Annotated[
        str | None,
        typer.Option(
            "--service-key", envvar="NV_ATTESTATION_SERVICE_KEY", help="NVIDIA service key (Bearer)."
        ),
    ] = None,
    no_revocation: Annotated[
        bool, typer.Option("--no-revocation", help="Do not fetch OCSP responses (bundle says so).")
    ] = False,
    json_out: JsonOpt = False,
    rim_service_old: Annotated[
        str | None, typer.Option("--rim-service", hidden=True, help="Deprecated: --rim-service-url.")
    ] = None,
) -> None:
    """Fetch the RIMs and OCSP responses for EVIDENCE into one offline bundle.

    Each request is bounded: CCAI_COLLATERAL_MAX_BYTES (default 16M) and CCAI_COLLATERAL_DEADLINE
    (seconds, default 30).
    """
    from ccai._time import utcnow
    from ccai.collateral import (
        DEFAULT_OCSP_URL,
        DEFAULT_RIM_SERVICE_URL,
        CollateralBundle,
        default_gpu_source,
        gather_gpu_collateral,
        inspect_bundle,
        write_bundle,
    )
    from ccai.evidence import parse_evidence_json

    if rim_service_old is not None:
        # The old spelling; every other command says --rim-service-url.
        if rim_service_url is not None:
            raise UsageError("give --rim-service-url once (--rim-service is its deprecated spelling)")
        err_console.print("[yellow]warning:[/] --rim-service is deprecated: use --rim-service-url")
        rim_service_url = rim_service_old
    items = parse_evidence_json(read_input(evidence, what="evidence file"))
    source = default_gpu_source(
        rim_dir=rim_dir,
        rim_service_url=rim_service_url or DEFAULT_RIM_SERVICE_URL,
        ocsp_url=ocsp_url or DEFAULT_OCSP_URL,
        service_key=service_key,
        limits=collateral_http_limits(),
    )
    now = utcnow()
    collateral = gather_gpu_collateral(items, source, now=now, check_revocation=not no_revocation)
    bundle = CollateralBundle(gpu=collateral, created_at=now)
    path = write_bundle(output, bundle)
    summary = inspect_bundle(bundle, now=now)
    if json_out:
        print_json({"bundle": str(path), **summary})
        return
    console.print(
        f"wrote [bold]{path}[/]: {len(collateral.rims)} RIMs, {len(collateral.ocsp)} OCSP responses"
        + (f", usable until {summary['gpu']['usable_until']}" if summary["gpu"]["usable_until"] else "")
    )


def _rims_table(rims: list[dict[str, Any]]) -> Table:
    table = Table(title="RIMs", title_justify="left")
    for column in ("id", "product", "version", "signer chain valid", "until"):
        table.add_column(column)
    for rim in rims:
        if "error" in rim:
            table.add_row(rim["id"], "—", "—", f"[red]{rim['error']}[/]", "—")
            continue
        valid = "[green]yes[/]" if rim["chain_valid_now"] else "[red]no[/]"
        table.add_row(rim["id"], rim["product"], rim["version"], valid, rim["chain_valid_until"] or "—")
    return table


def _ocsp_table(entries: list[dict[str, Any]]) -> Table:
    table = Table(title="OCSP responses", title_justify="left")
    for column in ("certificate", "status", "reason", "thisUpdate", "nextUpdate", "current"):
        table.add_column(column)
    for entry in entries:
        status = entry.get("status", entry.get("response_status", entry.get("error", "?")))
        colour = "green" if status == "good" else "red"
        current = entry.get("current")
        table.add_row(
            entry["key"],
            f"[{colour}]{status}[/]",
            entry.get("revocation_reason") or "—",
            entry.get("this_update") or "—",
            entry.get("next_update") or "—",
            "—" if current is None else ("[green]yes[/]" if current else "[red]no (stale)[/]"),
        )
    return table


@app.command("inspect")
def inspect(
    bundle: Annotated[Path, typer.Argument(help="Collateral bundle file.")],
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show a bundle's RIMs (version, signer validity) and OCSP responses (status, times)."""
    from ccai.collateral import inspect_bundle, load_bundle

    now = verification_time(at)
    summary = inspect_bundle(load_bundle(read_input(bundle, what="collateral bundle")), now=now)
    if json_out:
        print_json(summary)
        return
    gpu = summary["gpu"]
    console.print(
        f"collateral bundle v{summary['version']}, created {summary['created_at'] or 'unknown'}; "
        f"revocation {'fetched' if gpu['ocsp_checked'] else '[yellow]not fetched[/]'}"
    )
    console.print(_rims_table(gpu["rims"]))
    if gpu["ocsp"]:
        console.print(_ocsp_table(gpu["ocsp"]))
    if gpu["usable_until"]:
        console.print(f"usable until {gpu['usable_until']} (earliest OCSP nextUpdate)")
    if summary["cpu"]:
        console.print(f"CPU collateral: {', '.join(summary['cpu'])}")
