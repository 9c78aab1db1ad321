"""``ccai serve gateway``: the confidential inference gateway (docs/confidential-serving.md, "Gateway").

The command checks its options, prepares the embedded model when asked (``--embedded``), then runs
:func:`ccai.gateway.run_gateway`: the port opens at once for ``/health``; the boot collects evidence,
obtains the KEK, loads the model, starts the engine and sets the GPUs ready; any failure stops the
server and the command exits non-zero with the reason (``cli/_errors.py``: 1 refused by the broker
or a broken sealed model, 3 collateral or broker unreachable, 4 no TEE / GPU driver or an engine
that does not start, 2 bad options).

``--embedded`` serves the embedded SmolLM2-135M-Instruct. On first use it is sealed into
``$CCAI_HOME/models/SmolLM2-135M-Instruct.sealed`` with a fresh KEK that goes where the gateway will
look for it: with ``--kbs URL --resource R`` into the broker (admin credential from
``$CCAI_HOME/kbs-admin.token``, as ``ccai seal --kbs``; never written to disk), with ``--kek FILE``
into that file (mode 0600) when it does not exist yet. Later runs reuse the sealed copy and its key.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ccai.cli._options import JsonOpt
from ccai.cli._output import console, err_console, print_json
from ccai.errors import UsageError

if TYPE_CHECKING:
    from ccai.gateway import GatewayBoot

__all__ = ["embedded_sealed_path", "gateway", "prepare_embedded"]


def embedded_sealed_path(home: Path | None = None) -> Path:
    """Where ``--embedded`` keeps the sealed embedded model (under ``$CCAI_HOME``)."""
    from ccai._embedded_model import EMBEDDED_MODEL_NAME
    from ccai._home import ccai_home

    return (home or ccai_home()) / "models" / f"{EMBEDDED_MODEL_NAME}.sealed"


def prepare_embedded(*, kbs: str | None, resource: str | None, kek_file: Path | None) -> Path:
    """The sealed embedded model, sealed on first use with a KEK stored where the gateway fetches it.

    Returns:
        The sealed model directory.

    Raises:
        UsageError: no key destination; the embedded model's package is missing.
        PolicyViolation: the broker refused the admin call.
    """
    from ccai._embedded_model import embedded_model_dir
    from ccai.sealed import kek_to_jwk, new_kek, read_kek, seal, write_kek

    sealed = embedded_sealed_path()
    if sealed.is_dir():
        return sealed
    plain = embedded_model_dir()
    if kbs is not None:
        if not resource:
            raise UsageError("--kbs needs --resource REPO/TYPE/TAG")
        from ccai.cli.kbs import store_kek

        key = new_kek()
        store_kek(kbs, resource, kek_to_jwk(key))  # stored before anything is sealed with it
    elif kek_file is not None:
        if kek_file.exists():
            key = read_kek(kek_file)
        else:
            key = new_kek()
            write_kek(key, kek_file)
    else:
        raise UsageError("--embedded needs --kek FILE or --kbs URL --resource REPO/TYPE/TAG")
    sealed.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".sealing-", dir=sealed.parent))
    try:
        seal(plain, work / "model", key)
        (work / "model").rename(sealed)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return sealed


def _ready_document(boot: GatewayBoot, url: str) -> dict[str, object]:
    return {
        "result": "ready",
        "url": url,
        "state": boot.state.value,
        "boot_seconds": boot.boot_seconds,
        "states_seconds": boot.health()["states_seconds"],
        "engine": "upstream" if boot.config.upstream_cmd else "transformers",
        "model": boot.config.served_name if not boot.config.upstream_cmd else None,
        "hpke_public_key": boot.server_key.public_key.hex(),
        "simulated": boot.config.simulate is not None,
        "plaintext_allowed": boot.config.allow_plaintext,
    }


def gateway(
    *,
    model: Annotated[Path | None, typer.Option("--model", help="The sealed model directory.")] = None,
    embedded: Annotated[
        bool,
        typer.Option("--embedded", help="Serve the embedded SmolLM2 (sealed under $CCAI_HOME on first use)."),
    ] = False,
    kbs: Annotated[str | None, typer.Option("--kbs", help="Key broker URL (the KEK through RCAR).")] = None,
    resource: Annotated[
        str | None, typer.Option("--resource", help="With --kbs: the KEK's resource REPO/TYPE/TAG.")
    ] = None,
    kek: Annotated[Path | None, typer.Option("--kek", help="A KEK file instead of the key broker.")] = None,
    engine: Annotated[
        str | None, typer.Option("--engine", help="In-process engine: transformers (the default).")
    ] = None,
    upstream_cmd: Annotated[
        str | None,
        typer.Option(
            "--upstream-cmd",
            help='An external OpenAI-compatible engine (vLLM, SGLang): "CMD {model_dir} {port}".',
        ),
    ] = None,
    simulate: Annotated[
        str | None,
        typer.Option("--simulate", help="The virtual confidential VM: tdx or snp.", metavar="tdx|snp"),
    ] = None,
    gpus: Annotated[
        int | None, typer.Option("--gpus", min=0, max=8, help="Virtual GPUs with --simulate.")
    ] = None,
    switches: Annotated[
        bool,
        typer.Option(
            "--switches",
            help="Attest the NVSwitches too (protected PCIe): NSCQ on real hardware; the virtual HGX's "
            "are attested whenever it has them.",
        ),
    ] = False,
    host: Annotated[str, typer.Option("--host", help="Address (default 127.0.0.1: loopback).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (default 8000).")] = 8000,
    allow_plaintext: Annotated[
        bool, typer.Option("--allow-plaintext", help="Accept requests without EHBP (development only).")
    ] = False,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="TLS certificate (PEM).")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="TLS private key (PEM).")] = None,
    device: Annotated[
        str | None,
        typer.Option("--device", help="In-process engine device (default: cuda if available, else cpu)."),
    ] = None,
    model_name: Annotated[
        str | None, typer.Option("--model-name", help="The model name the in-process engine serves.")
    ] = None,
    unseal_dir: Annotated[
        Path | None,
        typer.Option(
            "--unseal-dir",
            help="RAM-backed directory for --upstream-cmd's plaintext model (default /dev/shm).",
        ),
    ] = None,
    engine_timeout: Annotated[
        float,
        typer.Option("--engine-timeout", min=1, help="Seconds to wait for the upstream engine's /health."),
    ] = 300.0,
    attestation_service: Annotated[
        str | None,
        typer.Option(
            "--attestation-service", help="Add this ccai attestation service's token to each document."
        ),
    ] = None,
    attestation_service_key: Annotated[
        str | None,
        typer.Option(
            "--attestation-service-key",
            envvar="CCAI_ATTESTATION_SERVICE_KEY",
            help="API key for --attestation-service (or CCAI_ATTESTATION_SERVICE_KEY).",
        ),
    ] = None,
    hpke_rotate_seconds: Annotated[
        float | None,
        typer.Option(
            "--hpke-rotate-seconds",
            help="Replace the HPKE key this often (SIGHUP also replaces it); clients re-attest.",
        ),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Serve a sealed model with an OpenAI-compatible API, only after attestation and key release."""
    from ccai.gateway import BootState, GatewayConfig, run_gateway

    if engine not in (None, "transformers"):
        raise UsageError("--engine takes transformers (use --upstream-cmd for vLLM or SGLang)", actual=engine)
    if engine is not None and upstream_cmd is not None:
        raise UsageError("give --engine or --upstream-cmd, not both")
    if embedded == (model is not None):
        raise UsageError("give --model DIR or --embedded (exactly one)")
    if (kek is None) == (kbs is None):
        raise UsageError("give --kek FILE, or --kbs URL --resource REPO/TYPE/TAG (exactly one)")
    if simulate not in (None, "tdx", "snp"):
        raise UsageError("--simulate takes tdx or snp", actual=simulate)
    if embedded:
        model = prepare_embedded(kbs=kbs, resource=resource, kek_file=kek)
    assert model is not None
    options: dict[str, object] = {}
    if unseal_dir is not None:
        options["unseal_base"] = unseal_dir
    config = GatewayConfig(
        model=model,
        kek_file=kek,
        kbs_url=kbs,
        resource=resource,
        upstream_cmd=upstream_cmd,
        simulate=simulate,
        gpus=gpus,
        switches=switches,
        host=host,
        port=port,
        allow_plaintext=allow_plaintext,
        tls_cert=tls_cert,
        tls_key=tls_key,
        device=device,
        model_name=model_name,
        engine_timeout=engine_timeout,
        attestation_service=attestation_service,
        attestation_service_key=attestation_service_key,
        hpke_rotate_seconds=hpke_rotate_seconds,
        **options,  # type: ignore[arg-type]
    )

    def on_ready(boot: GatewayBoot) -> None:
        bound = boot.config
        url = boot.url or ""
        if json:
            print_json(_ready_document(boot, url))
        else:
            console.print(
                f"gateway ready at {url} (boot {boot.boot_seconds:.2f} s)"
                + (" [bold yellow]SIMULATED[/]" if bound.simulate else ""),
                soft_wrap=True,
            )

    boot = run_gateway(config, on_ready=on_ready)
    if boot.state is BootState.FAILED:
        err_console.print(f"gateway: boot failed — {boot.reason}", markup=False, soft_wrap=True)
        if boot.error is not None:
            raise boot.error
    elif boot.state is not BootState.READY:
        raise UsageError(f"the gateway stopped during its boot ({boot.state.value})")
