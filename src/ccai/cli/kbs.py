"""``ccai kbs …``: administer a key broker over its admin API, and fetch a resource as a guest.

``put REPO/TYPE/TAG --from FILE``, ``rotate``, ``policy set NAME FILE --resource|--repo``,
``policy show NAME``, ``audit [--verify]``, ``fetch URL REPO/TYPE/TAG -o FILE [--evidence-format
composite|trustee]``. The admin
credential is read from ``$CCAI_HOME/kbs-admin.token`` (written by the broker on its first start)
unless ``--credential-file`` names another. Every command prints one JSON document with ``--json``;
no resource value, key or credential is ever printed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ccai.errors import CollateralUnavailable, PolicyViolation, UsageError

__all__ = ["app"]

app = typer.Typer(
    name="kbs", help="Administer a key broker; fetch a resource as a guest.", no_args_is_help=True
)
policy_app = typer.Typer(
    name="policy", help="Resource policies (versioned, default deny).", no_args_is_help=True
)
app.add_typer(policy_app, name="policy")

_DEFAULT_URL = "http://127.0.0.1:8444"
JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
UrlOpt = Annotated[str, typer.Option("--url", help=f"The broker (default {_DEFAULT_URL}).")]
CredOpt = Annotated[
    Path | None,
    typer.Option("--credential-file", help="Admin credential (default $CCAI_HOME/kbs-admin.token)."),
]


def _show(data: dict[str, Any], as_json: bool, text: str) -> None:
    from ccai.cli._output import console, print_json

    if as_json:
        print_json(data)
    else:
        console.print(text)


def _admin(method: str, url: str, path: str, cred: Path | None, **kw: Any) -> Any:
    import httpx

    from ccai.kbs import read_admin_credential

    token = read_admin_credential(cred)
    try:
        response = httpx.request(
            method, url.rstrip("/") + path, headers={"Authorization": f"Bearer {token}"}, timeout=60, **kw
        )
    except httpx.HTTPError as exc:
        raise CollateralUnavailable(f"cannot reach the key broker at {url}: {type(exc).__name__}") from None
    if response.status_code != 200:
        try:
            body = response.json()
            detail = f"{body.get('error')}: {body.get('detail')}"
        except ValueError:
            detail = f"HTTP {response.status_code}"
        if response.status_code in (401, 403):
            raise PolicyViolation(f"the key broker refused: {detail}")
        raise UsageError(f"the key broker answered {response.status_code}: {detail}")
    return response.json()


def store_kek(url: str, name: str, jwk: bytes) -> int:
    """Store a sealed-model KEK (its ``oct`` JWK bytes) as a new version of broker resource ``name``."""
    from ccai.kbs import check_resource_name

    check_resource_name(name)
    return int(_admin("POST", url, f"/kbs/v0/resource/{name}", None, content=jwk)["version"])


@app.command("put")
def put(
    name: Annotated[str, typer.Argument(help="REPO/TYPE/TAG")],
    source: Annotated[Path, typer.Option("--from", help="File holding the value.")],
    url: UrlOpt = _DEFAULT_URL,
    credential_file: CredOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Store a new version of a resource (the previous versions stay)."""
    from ccai.cli._output import read_input
    from ccai.kbs import check_resource_name

    check_resource_name(name)
    value = read_input(source, what="resource value")
    answer = _admin("POST", url, f"/kbs/v0/resource/{name}", credential_file, content=value)
    _show(answer, as_json, f"stored {name} v{answer['version']}")


@app.command("rotate")
def rotate(url: UrlOpt = _DEFAULT_URL, credential_file: CredOpt = None, as_json: JsonFlag = False) -> None:
    """Rotate the broker's master key: every data key is re-wrapped under a new one."""
    answer = _admin("POST", url, "/kbs/v0/admin/rotate", credential_file)
    _show(
        answer, as_json, f"master key {answer['master_key_id']}: {answer['rewrapped']} data keys re-wrapped"
    )


@policy_app.command("set")
def policy_set(  # noqa: PLR0917 - Typer maps each parameter to a command-line option
    name: Annotated[str, typer.Argument(help="Policy name.")],
    file: Annotated[Path, typer.Argument(help="A ccai policy file (docs/policies.md).")],
    resource: Annotated[str | None, typer.Option("--resource", help="Guard REPO/TYPE/TAG.")] = None,
    repo: Annotated[str | None, typer.Option("--repo", help="Guard every resource of REPO.")] = None,
    url: UrlOpt = _DEFAULT_URL,
    credential_file: CredOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Store a policy (a new version) and bind it to a resource or a repository."""
    from ccai.cli._output import read_input
    from ccai.verify import load_policy

    try:
        document = read_input(file, what="policy").decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{file} is not a UTF-8 policy file") from None
    load_policy(document, name=str(file))  # refuse a bad file before talking to the broker
    if (resource is None) == (repo is None):
        raise UsageError("give exactly one of --resource REPO/TYPE/TAG or --repo REPO")
    body = {"document": document, "resource": resource, "repo": repo}
    answer = _admin("PUT", url, f"/kbs/v0/admin/policy/{name}", credential_file, json=body)
    _show(answer, as_json, f"policy {name} v{answer['version']} guards {resource or 'repo ' + str(repo)}")


@policy_app.command("show")
def policy_show(
    name: Annotated[str, typer.Argument(help="Policy name.")],
    url: UrlOpt = _DEFAULT_URL,
    credential_file: CredOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Show the newest version of a policy and what it guards."""
    import json

    answer = _admin("GET", url, f"/kbs/v0/admin/policy/{name}", credential_file)
    _show(answer, as_json, json.dumps(answer, indent=2))


@app.command("audit")
def audit(
    url: UrlOpt = _DEFAULT_URL,
    verify: Annotated[
        bool, typer.Option("--verify", help="Check the hash chain (exit 1 if broken).")
    ] = False,
    credential_file: CredOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Print the audit log (every release and refusal); ``--verify`` checks its hash chain."""
    from ccai.kbs import verify_audit_chain

    records = _admin("GET", url, "/kbs/v0/admin/audit", credential_file)["records"]
    checked = verify_audit_chain(records) if verify else None
    if as_json:
        from ccai.cli._output import print_json

        print_json({"records": records, "verified": checked is not None, "count": len(records)})
        return
    from ccai.cli._output import console

    for r in records:
        console.print(
            f"{r['seq']:>6} {r['at']} {r['event']:<8} {r['verdict']:<8} {r['resource'] or '-'} "
            f"{r['policy'] or '-'} {r['reason']}",
            markup=False,
        )
    if checked is not None:
        console.print(f"audit chain intact: {checked} records")


EvidenceFormatOpt = Annotated[
    str,
    typer.Option(
        "--evidence-format",
        help="composite (a ccai bundle) or trustee (Trustee's attestation-agent encoding).",
        metavar="composite|trustee",
    ),
]
SimulateOpt = Annotated[
    str | None,
    typer.Option("--simulate", help="Use the virtual confidential VM: tdx or snp.", metavar="tdx|snp"),
]
GpusOpt = Annotated[int | None, typer.Option("--gpus", help="Virtual GPUs with --simulate.")]


@app.command("fetch")
def fetch(  # noqa: PLR0917 - Typer maps each parameter to a command-line option
    url: Annotated[str, typer.Argument(help="The broker's URL.")],
    name: Annotated[str, typer.Argument(help="REPO/TYPE/TAG")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the resource (mode 0600).")],
    simulate: SimulateOpt = None,
    gpus: GpusOpt = None,
    evidence_format: EvidenceFormatOpt = "composite",
    as_json: JsonFlag = False,
) -> None:
    """Attest to the broker (RCAR) and write the released resource."""
    from ccai.cli._output import write_output
    from ccai.kbs import check_resource_name, fetch_resource

    check_resource_name(name)
    evidence, devtools = guest_evidence(simulate, gpus, evidence_format)
    value = fetch_resource(
        url,
        name,
        evidence=evidence,
        tee=simulate or "tdx",
        evidence_format="trustee" if evidence_format == "trustee" else "composite",
        devtools=devtools,
    )
    write_output(output, value, mode=0o600)
    _show(
        {"resource": name, "output": str(output), "bytes": len(value)}, as_json, f"wrote {name} to {output}"
    )


def broker_key(
    url: str, resource: str, *, simulate: str | None, gpus: int | None, evidence_format: str
) -> Any:
    """A ``ccai.kbs.BrokerKey`` for the sealed-model commands' ``--kbs URL --resource R``."""
    from ccai.kbs import BrokerKey

    evidence, devtools = guest_evidence(simulate, gpus, evidence_format)
    return BrokerKey(
        url=url,
        resource=resource,
        evidence=evidence,
        tee=simulate or "tdx",
        evidence_format="trustee" if evidence_format == "trustee" else "composite",
        devtools=devtools,
    )


def _open(simulate: str | None, gpus: int | None) -> tuple[Any, Any, Any]:
    """(CPU TEE, GPU backend, the backend the dev collateral server describes or ``None``)."""
    if simulate is not None:
        from ccai.virtual import open_virtual_vm

        cpu, gpu = open_virtual_vm(tee=simulate, gpus=gpus)
        return cpu, gpu, gpu
    from ccai.device import NvmlBackend
    from ccai.tee import ConfigfsTsm

    return ConfigfsTsm(), NvmlBackend.open(), None


def _close(gpu: Any) -> None:
    close = getattr(gpu, "close", None)
    if callable(close):
        close()


def guest_evidence(simulate: str | None, gpus: int | None, evidence_format: str) -> tuple[Any, bool]:
    """The guest's evidence source for ``--evidence-format`` and whether its driver reports DevTools.

    Raises:
        UsageError: an unknown ``--simulate`` or ``--evidence-format``.
    """
    if simulate not in (None, "tdx", "snp"):
        raise UsageError("--simulate takes tdx or snp", actual=simulate)
    if evidence_format not in ("composite", "trustee"):
        raise UsageError("--evidence-format takes composite or trustee", actual=evidence_format)
    if evidence_format == "trustee" and simulate == "snp":
        raise UsageError("Trustee's evidence encoding is produced for TDX guests only")
    _cpu, gpu, _served = _open(simulate, gpus)
    try:
        devtools = bool(gpu.status().devtools)
    finally:
        _close(gpu)
    if evidence_format == "trustee":
        return _TrusteeHardware(simulate, gpus), devtools
    return _evidence(simulate, gpus), devtools


class _TrusteeHardware:
    """Trustee-encoded evidence from this machine (or the virtual VM), opened per call."""

    def __init__(self, simulate: str | None, gpus: int | None) -> None:
        self.simulate, self.gpus = simulate, gpus

    def additional_evidence(self, runtime_data_hash: bytes) -> str:
        from ccai.attest import TrusteeAttester

        cpu, gpu, _served = _open(self.simulate, self.gpus)
        try:
            return TrusteeAttester(cpu=cpu, gpu=gpu).additional_evidence(runtime_data_hash)
        finally:
            _close(gpu)

    def primary_evidence(self, report_data: bytes) -> dict[str, Any]:
        from ccai.attest import TrusteeAttester

        cpu, gpu, _served = _open(self.simulate, self.gpus)
        try:
            return TrusteeAttester(cpu=cpu, gpu=None).primary_evidence(report_data)
        finally:
            _close(gpu)


def _evidence(simulate: str | None, gpus: int | None) -> Any:
    """The guest's evidence function: composite evidence with its collateral embedded."""

    def evidence(nonce: bytes, bound_key: bytes) -> bytes:
        from ccai._time import utcnow
        from ccai.attest import collect_composite, gather_composite_collateral
        from ccai.cli.attest_composite import _sources
        from ccai.collateral import embed_collateral
        from ccai.evidence import dump_evidence_bundle

        cpu, gpu, server_gpu = _open(simulate, gpus)
        try:
            bundle = collect_composite(nonce=nonce, cpu=cpu, gpu=gpu, hpke_public_key=bound_key)
            with _sources(
                simulate=simulate,
                cpu=cpu,
                gpu=server_gpu,
                pcs_url=None,
                kds_url=None,
                rim_service_url=None,
                ocsp_url=None,
            ) as sources:
                collateral = gather_composite_collateral(bundle, now=utcnow(), **sources)
            return dump_evidence_bundle(embed_collateral(bundle, collateral))
        finally:
            _close(gpu)

    return evidence
