"""``ccai attestation …``: administer the attestation service's database directly (like the server).

``rotate-key``, ``policy set|show``, ``api-key create|revoke|list``, ``audit [--json]``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from ccai.errors import UsageError

if TYPE_CHECKING:
    from ccai.service import Repository

__all__ = ["app"]

_T = TypeVar("_T")

app = typer.Typer(
    name="attestation", help="Administer the attestation service's database.", no_args_is_help=True
)
policy_app = typer.Typer(name="policy", help="Named appraisal policies (versioned).", no_args_is_help=True)
key_app = typer.Typer(
    name="api-key", help="API keys of the attest and admin endpoints.", no_args_is_help=True
)
app.add_typer(policy_app, name="policy")
app.add_typer(key_app, name="api-key")

# These commands always print one JSON document; --json is accepted so scripts can pass it everywhere.
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON (these commands always do).")]

DbOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url", help="Database URL (default $CCAI_DATABASE_URL or $CCAI_HOME/attestation.db)."
    ),
]


def _run(database_url: str | None, work: Callable[[Repository], Awaitable[_T]]) -> _T:
    from ccai.service import ServiceSettings, open_database

    url = ServiceSettings.build(database_url=database_url).resolved_database_url()

    async def main() -> _T:
        db = await open_database(url)
        try:
            return await work(db.repo)
        finally:
            await db.engine.dispose()

    return asyncio.run(main())


def _print(data: Any) -> None:
    from ccai.cli._output import print_json

    print_json(data)


@app.command("rotate-key")
def rotate_key(
    database_url: DbOpt = None,
    development: Annotated[
        bool, typer.Option("--development", help="Rotate the development key instead.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Make a new current token-signing key; the old one stays in the JWKS as the previous key."""
    from ccai.service import ServiceSettings, load_master_key, rotate

    master = load_master_key(ServiceSettings.build().master_key_path())
    kid = _run(database_url, lambda repo: rotate(repo, master, development=development))
    _print({"kid": kid})


@policy_app.command("set")
def policy_set(
    name: Annotated[str, typer.Argument(help="Policy name.")],
    file: Annotated[Path, typer.Argument(help="Policy JSON (ccai policy or NVIDIA authorization-rules).")],
    database_url: DbOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Store FILE as the next version of policy NAME (checked first)."""
    from ccai._time import utcnow
    from ccai.verify import load_policy

    try:
        data = file.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {file}: {exc.strerror}") from None
    load_policy(data, name=name)  # refuses what is not a valid policy (UTF-8 JSON first)
    document = data.decode()
    stored = _run(database_url, lambda repo: repo.put_policy(name, document, now=utcnow()))
    _print({"name": stored.name, "version": stored.version})


@policy_app.command("show")
def policy_show(
    name: Annotated[str, typer.Argument(help="Policy name.")],
    database_url: DbOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Print the newest version of policy NAME."""
    stored = _run(database_url, lambda repo: repo.get_policy(name))
    if stored is None:
        raise UsageError(f"no policy named {name!r}")
    _print({"name": stored.name, "version": stored.version, "policy": json.loads(stored.document)})


@key_app.command("create")
def api_key_create(
    name: Annotated[str, typer.Option("--name", help="What the key is for.")] = "default",
    admin: Annotated[bool, typer.Option("--admin", help="Also allow the admin API.")] = False,
    database_url: DbOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an API key; it is printed once and stored only as a hash."""
    from ccai.service import create_api_key

    key_id, token = _run(database_url, lambda repo: create_api_key(repo, name=name, admin=admin))
    _print({"id": key_id, "key": token, "admin": admin})


@key_app.command("revoke")
def api_key_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id.")],
    database_url: DbOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Revoke an API key (replicas stop accepting it within their key-cache time)."""
    from ccai._time import utcnow

    if not _run(database_url, lambda repo: repo.revoke_api_key(key_id, now=utcnow())):
        raise UsageError(f"no active API key {key_id!r}")
    _print({"id": key_id, "revoked": True})


@app.command("audit")
def audit(
    database_url: DbOpt = None,
    limit: Annotated[int, typer.Option("--limit", help="Newest N records.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines-free array for scripts.")] = False,
) -> None:
    """Show the newest audit records: time, endpoint, key, evidence digest, policy, verdict, jti."""
    rows = _run(database_url, lambda repo: repo.audit(limit=limit))
    if as_json:
        _print(
            [
                {
                    "at": r.at.isoformat(),
                    "request_id": r.request_id,
                    "endpoint": r.endpoint,
                    "api_key_id": r.api_key_id,
                    "evidence_sha256": r.evidence_sha256,
                    "policy": r.policy_name,
                    "policy_version": r.policy_version,
                    "verdict": r.verdict,
                    "jti": r.jti,
                    "failed_step": r.failed_step,
                    "error": r.error,
                }
                for r in rows
            ]
        )
        return
    from rich.table import Table

    from ccai.cli._output import console

    table = Table("time", "endpoint", "key", "evidence", "policy", "verdict", "jti", "failed step")
    for r in rows:
        table.add_row(
            r.at.isoformat(timespec="seconds"),
            r.endpoint,
            r.api_key_id or "-",
            r.evidence_sha256[:16],
            f"{r.policy_name} v{r.policy_version}" if r.policy_name else "default",
            "pass" if r.verdict else "FAIL",
            r.jti,
            r.failed_step or "",
        )
    console.print(table)
