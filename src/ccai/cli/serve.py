"""``ccai serve attestation``: run the attestation service under uvicorn (docs/attestation-service.md)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ccai.cli._options import KdsUrlOpt, PcsUrlOpt
from ccai.errors import UsageError

if TYPE_CHECKING:
    from ccai.service import ServiceSettings
    from ccai.verify import TrustAnchors

__all__ = ["app", "app_from_environment"]

app = typer.Typer(name="serve", help="Run ccai's HTTP services.", no_args_is_help=True)

_SETTINGS_ENV = "CCAI_SERVICE_SETTINGS_JSON"


def _anchors(settings: ServiceSettings) -> TrustAnchors | None:
    """The virtual hardware's test-PKI anchors, only when simulation is asked for by name."""
    if not settings.allow_simulated:
        return None
    from ccai.virtual import virtual_trust_anchors

    return virtual_trust_anchors(gpu=True, tdx=True)


def app_from_environment() -> Any:
    """The app of a uvicorn worker process (``--workers N``).

    uvicorn starts workers from an import string, so the parent hands its validated
    :class:`ServiceSettings` over as JSON in ``CCAI_SERVICE_SETTINGS_JSON``; each worker rebuilds the
    same frozen settings (and, with ``allow_simulated``, the same test-PKI anchors) from it.
    """
    from ccai.service import ServiceSettings, create_app

    settings = ServiceSettings.from_env_json(os.environ[_SETTINGS_ENV])
    return create_app(settings, anchors=_anchors(settings))


def _check_tls(settings: ServiceSettings) -> None:
    """Load the TLS certificate and key as uvicorn will, so a bad file is a one-line error (exit 2).

    Raises:
        UsageError: only one of the two is given, or they cannot be read or do not match.
    """
    if settings.tls_cert is None and settings.tls_key is None:
        return
    if settings.tls_cert is None or settings.tls_key is None:
        raise UsageError("TLS needs both --tls-cert and --tls-key")
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            settings.tls_cert, settings.tls_key
        )
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
        raise UsageError(
            f"cannot load the TLS certificate {settings.tls_cert} and key {settings.tls_key}: {reason}"
        ) from None


def _policies(values: list[str] | None) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for value in values or []:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise UsageError("--policy takes NAME=FILE", actual=value)
        out[name] = Path(path)
    return out


@app.command("attestation")
def attestation(
    *,
    host: Annotated[str | None, typer.Option("--host", help="Address (default 127.0.0.1: loopback).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default 8443).")] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="sqlite+aiosqlite:///… (default $CCAI_HOME/attestation.db) or postgresql+psycopg://…",
        ),
    ] = None,
    rim_service_url: Annotated[
        str | None, typer.Option("--rim-service-url", help="RIM service base URL.")
    ] = None,
    ocsp_url: Annotated[str | None, typer.Option("--ocsp-url", help="OCSP responder URL.")] = None,
    pcs_url: PcsUrlOpt = None,
    kds_url: KdsUrlOpt = None,
    rim_dir: Annotated[Path | None, typer.Option("--rim-dir", help="Directory of <id>.xml RIMs.")] = None,
    collateral: Annotated[
        Path | None, typer.Option("--collateral", help="Offline collateral bundle.")
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Never fetch collateral from the network.")
    ] = False,
    at: Annotated[
        str | None, typer.Option("--at", help="Pinned verification time, ISO 8601.", metavar="ISO8601")
    ] = None,
    policy: Annotated[
        list[str] | None,
        typer.Option("--policy", help="NAME=FILE: store a named policy at start (repeatable)."),
    ] = None,
    allow_simulated: Annotated[
        bool, typer.Option("--allow-simulated", help="Accept ccai's virtual hardware (development only).")
    ] = False,
    allow_anonymous: Annotated[
        bool,
        typer.Option(
            "--allow-anonymous", help="Serve the attest endpoints WITHOUT API keys (development only)."
        ),
    ] = False,
    workers: Annotated[int | None, typer.Option("--workers", help="uvicorn worker processes.")] = None,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="TLS certificate (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="TLS private key (PEM).")] = None,
) -> None:
    """Run the NRAS-compatible and composite attestation service (FastAPI under uvicorn).

    Every option can also be set with a CCAI_<OPTION> environment variable (CCAI_DATABASE_URL, …).
    """
    import asyncio

    import uvicorn

    from ccai._time import parse_instant
    from ccai.service import ServiceSettings, create_app, prepare_database

    settings = ServiceSettings.build(
        host=host,
        port=port,
        database_url=database_url,
        rim_service_url=rim_service_url,
        ocsp_url=ocsp_url,
        pcs_url=pcs_url,
        kds_url=kds_url,
        rim_dir=rim_dir,
        collateral=collateral,
        offline=offline or None,
        at=parse_instant(at) if at is not None else None,
        policies=_policies(policy) or None,
        allow_simulated=allow_simulated or None,
        allow_anonymous=allow_anonymous or None,
        workers=workers,
        tls_cert=tls_cert,
        tls_key=tls_key,
    )

    # Fail closed before serving: the database opens and migrates, the master key opens the
    # stored keys (the first ones are made here, once, not by each worker), the TLS files load.
    _check_tls(settings)
    asyncio.run(prepare_database(settings))
    tls: dict[str, Any] = {}
    if settings.tls_cert is not None:
        tls = {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)}
    if settings.workers > 1:
        os.environ[_SETTINGS_ENV] = settings.to_env_json()
        uvicorn.run(
            "ccai.cli.serve:app_from_environment",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level="warning",
            access_log=False,
            **tls,
        )
        return
    application = create_app(settings, anchors=_anchors(settings))
    uvicorn.run(
        application, host=settings.host, port=settings.port, log_level="warning", access_log=False, **tls
    )


@app.command("kbs")
def kbs(
    *,
    host: Annotated[str | None, typer.Option("--host", help="Address (default 127.0.0.1: loopback).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default 8444).")] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="sqlite+aiosqlite:///… (default $CCAI_HOME/kbs.db) or postgresql+psycopg://…",
        ),
    ] = None,
    offline: Annotated[
        bool, typer.Option("--offline", help="Never fetch collateral over the network.")
    ] = False,
    collateral: Annotated[
        Path | None, typer.Option("--collateral", help="An offline collateral bundle.")
    ] = None,
    rim_service_url: Annotated[
        str | None, typer.Option("--rim-service-url", help="NVIDIA RIM service.")
    ] = None,
    ocsp_url: Annotated[str | None, typer.Option("--ocsp-url", help="NVIDIA OCSP responder.")] = None,
    allow_simulated: Annotated[
        bool, typer.Option("--allow-simulated", help="Accept ccai's virtual hardware (development only).")
    ] = False,
) -> None:
    """Run the key broker (Trustee's RCAR protocol; docs/key-broker.md)."""
    import uvicorn

    from ccai.kbs import KbsSettings, create_kbs_app

    settings = KbsSettings.build(
        host=host,
        port=port,
        database_url=database_url,
        offline=offline or None,
        collateral=collateral,
        rim_service_url=rim_service_url,
        ocsp_url=ocsp_url,
        allow_simulated=allow_simulated or None,
    )
    anchors = None
    if settings.allow_simulated:
        from ccai.virtual import virtual_trust_anchors

        anchors = virtual_trust_anchors(gpu=True, tdx=True)
    application = create_kbs_app(settings, anchors=anchors)
    uvicorn.run(application, host=settings.host, port=settings.port, log_level="warning", access_log=False)


from ccai.cli.serve_gateway import gateway as _gateway  # noqa: E402 - mounted after the other services

app.command("gateway")(_gateway)
