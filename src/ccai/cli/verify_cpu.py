"""``ccai verify tdx`` and ``ccai verify snp``: verify raw vendor CPU evidence (docs/cpu-evidence.md).

The commands read files, build the collateral and policy objects and a
:class:`ccai.verify.Verifier`, call :meth:`~ccai.verify.Verifier.verify_tdx` /
:meth:`~ccai.verify.Verifier.verify_snp` and render the per-step results: a ✓/✗ table for
people; ``--json`` prints the steps, the claims and any error. Exit codes: 0 pass, 1 evidence or
policy failure, 2 usage, 3 collateral unavailable (``ccai.cli._errors``).
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from ccai._json import load_json
from ccai.cli._options import AtOpt, JsonOpt, verification_time
from ccai.cli._output import console, print_json, read_input
from ccai.cli._steps import outcome_document, print_pass, print_step_table
from ccai.errors import Error, UsageError

if TYPE_CHECKING:
    from ccai.verify import Policy, StepResult

__all__ = ["read_evidence_bytes", "snp_command", "tdx_command"]

PolicyOpt = Annotated[
    Path | None,
    typer.Option(
        "--policy",
        help="Policy JSON: a ccai policy (docs/policies.md; its CPU rules apply), tdx_rules / snp_rules "
        'fields, or the layout {"tdx": {…}, "snp": {…}}.',
        metavar="FILE",
    ),
]


def read_evidence_bytes(data: bytes, *, what: str) -> bytes:
    """Raw evidence from a file that holds it as binary, hex text, base64 text or a JSON object
    with a ``quote``/``report`` field (dstack, teekit layouts).

    Raises:
        UsageError: the text is none of these.
    """
    stripped = data.strip()
    if not stripped or not all(32 <= b < 127 or b in b"\r\n\t" for b in stripped):
        return data
    text = stripped.decode("ascii")
    if text.startswith("{"):
        try:
            doc = load_json(text, what=what, error=UsageError)
        except UsageError:
            raise UsageError(f"{what} looks like JSON but does not parse") from None
        if isinstance(doc, dict) and isinstance(doc.get("tdx"), dict):
            doc = doc["tdx"]
        value = doc.get("quote") or doc.get("report") if isinstance(doc, dict) else None
        if not isinstance(value, str):
            raise UsageError(f"{what} JSON has no 'quote' or 'report' string field")
        text = value
    compact = "".join(text.split())
    try:
        return bytes.fromhex(compact)
    except ValueError:
        pass
    try:
        return base64.b64decode(compact, validate=True)
    except binascii.Error:
        raise UsageError(f"{what} is text but neither hex nor base64") from None


def _load_policy(path: Path | None, kind: str, relax: dict[str, bool]) -> Policy | None:
    """The CPU part of a policy file, with the command-line relaxations ``relax`` applied;
    ``None`` (the verifier's default) when there is neither."""
    from ccai.verify import load_policy

    if path is None:
        return load_policy({kind: relax}, part="cpu", name="command line") if relax else None
    data = load_json(read_input(path, what="policy"), what=f"policy {path}", error=UsageError)
    if not isinstance(data, dict):
        raise UsageError(f"policy {path} must be a JSON object")
    layout = "format" in data or "authorization-rules" in data or (data and set(data) <= {"tdx", "snp"})
    if not layout:
        data = {kind: data}  # the fields of tdx_rules / snp_rules
    if relax:
        if "format" in data:
            cpu = data.get("cpu", {})
            if isinstance(cpu, dict):
                data = {**data, "cpu": {**cpu, kind: {**(cpu.get(kind) or {}), **relax}}}
        elif "authorization-rules" not in data:
            data = {**data, kind: {**(data.get(kind) or {}), **relax}}
    return load_policy(data, part="cpu", name=str(path))


def _report(
    title: str,
    results: tuple[StepResult, ...],
    error: Error | None,
    *,
    claims: dict[str, Any] | None,
    summary: list[tuple[str, str]],
    as_json: bool,
) -> None:
    rows = [{"step": r.step, "status": r.status, "detail": r.detail} for r in results]
    if as_json:
        print_json(outcome_document(rows, error, claims=claims))
        return
    print_step_table(title, rows)
    for key, value in summary:
        console.print(f"  {key:<14} {escape(value)}", soft_wrap=True)
    if error is None:
        print_pass()


def tdx_command(  # noqa: PLR0917 - Typer maps each parameter to a command-line option
    quote: Annotated[Path, typer.Argument(help="TDX quote: binary, hex, base64 or JSON with 'quote'.")],
    collateral: Annotated[
        Path | None,
        typer.Option(
            "--collateral", help="Collateral JSON (dcap-qvl QuoteCollateralV3 layout).", metavar="FILE"
        ),
    ] = None,
    at: AtOpt = None,
    policy: PolicyOpt = None,
    event_log: Annotated[
        Path | None,
        typer.Option("--event-log", help="CCEL log (binary) or JSON event log to replay.", metavar="FILE"),
    ] = None,
    signatures_only: Annotated[
        bool,
        typer.Option("--signatures-only", help="No collateral: check signatures and chain only, skip TCB."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Verify an Intel TDX quote (v4/v5) against the pinned Intel root and Intel collateral."""
    from ccai.collateral import tdx_collateral_from_json
    from ccai.evidence import parse_ccel, parse_json_event_log
    from ccai.verify import Verifier

    now = verification_time(at)
    raw = read_evidence_bytes(read_input(quote, what="quote"), what="quote")
    coll = tdx_collateral_from_json(read_input(collateral, what="collateral")) if collateral else None
    pol = _load_policy(policy, "tdx", {"allow_missing_collateral": True} if signatures_only else {})
    events = None
    if event_log is not None:
        log = read_input(event_log, what="event log")
        events = parse_json_event_log(log) if log.lstrip()[:1] == b"[" else parse_ccel(log)
    try:
        result = Verifier(policy=pol).verify_tdx(raw, now=now, collateral=coll, event_log=events)
    except Error as exc:
        _report("TDX quote", exc.steps, exc, claims=None, summary=[], as_json=as_json)
        raise
    claims = dict(result.claims)
    summary = [
        ("time", now.isoformat()),
        ("FMSPC", claims["fmspc"]),
        ("TCB status", str(claims.get("tcb_status") or "not evaluated")),
        ("advisories", ", ".join(claims.get("advisory_ids") or []) or "none"),
        ("MRTD", claims["mr_td"]),
        ("REPORTDATA", claims["report_data"]),
    ]
    _report("TDX quote", result.step_results, None, claims=claims, summary=summary, as_json=as_json)


def snp_command(  # noqa: PLR0917 - Typer maps each parameter to a command-line option
    report: Annotated[Path, typer.Argument(help="SEV-SNP report: 1184 bytes binary, or hex text.")],
    vcek: Annotated[
        Path | None,
        typer.Option(
            "--vcek", help="VCEK or VLEK certificate (DER or PEM; PEM may hold ASK/ARK too).", metavar="F"
        ),
    ] = None,
    chain: Annotated[
        Path | None, typer.Option("--chain", help="ASK|ASVK and ARK (KDS cert_chain PEM).", metavar="F")
    ] = None,
    crl: Annotated[Path | None, typer.Option("--crl", help="ARK-signed CRL (DER).", metavar="F")] = None,
    offset: Annotated[
        int,
        typer.Option("--offset", help="Byte offset of the report in the file (32 for an Azure HCL report)."),
    ] = 0,
    at: AtOpt = None,
    policy: PolicyOpt = None,
    allow_unchecked_revocation: Annotated[
        bool,
        typer.Option(
            "--allow-unchecked-revocation",
            help="Accept the report without the ARK CRL (ASK/ASVK revocation NOT checked).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Verify an AMD SEV-SNP attestation report against AMD's pinned ARK/ASK."""
    from ccai.collateral import SnpCollateral, load_certificates, snp_collateral_from_certificates
    from ccai.verify import Verifier

    now = verification_time(at)
    raw = read_evidence_bytes(read_input(report, what="report"), what="report")
    if offset < 0 or offset >= len(raw):
        raise UsageError(f"--offset {offset} is outside the {len(raw)}-byte file")
    if offset:
        raw = raw[offset : offset + 1184]
    certs = []
    for path, what in ((vcek, "VCEK"), (chain, "certificate chain")):
        if path is not None:
            certs += load_certificates(read_input(path, what=what))
    crl_der = read_input(crl, what="CRL") if crl else None
    coll = snp_collateral_from_certificates(certs, crl=crl_der) if certs else SnpCollateral(crl=crl_der)
    pol = _load_policy(
        policy, "snp", {"allow_unchecked_revocation": True} if allow_unchecked_revocation else {}
    )
    try:
        result = Verifier(policy=pol).verify_snp(raw, now=now, collateral=coll)
    except Error as exc:
        _report("SEV-SNP report", exc.steps, exc, claims=None, summary=[], as_json=as_json)
        raise
    claims = dict(result.claims)
    summary = [
        ("time", now.isoformat()),
        ("product", f"{result.product.value} ({claims['x-ccai-product-name']}), {result.signing_key}"),
        ("reported TCB", json.dumps(claims["reported_tcb"])),
        ("policy", claims["policy"]),
        ("MEASUREMENT", claims["measurement"]),
        ("REPORT_DATA", claims["report_data"]),
    ]
    _report("SEV-SNP report", result.step_results, None, claims=claims, summary=summary, as_json=as_json)
