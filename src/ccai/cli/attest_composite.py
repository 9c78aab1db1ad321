"""``ccai attest``: collect a composite evidence bundle (CPU TEE + GPUs) bound to a verifier nonce.

``ccai attest [--simulate tdx|snp] [--gpus N] --nonce HEX64 [--bind-key FILE] [--with-collateral]
-o BUNDLE`` collects on this machine — configfs-tsm and NVML, or the virtual confidential VM under
``$CCAI_HOME`` with ``--simulate`` — and writes one JSON bundle (docs/composite-evidence.md).
``--with-collateral`` embeds everything a verifier needs offline: for a real machine from NVIDIA's
RIM service / OCSP responder, Intel PCS and AMD KDS (URLs configurable); for the virtual VM from
ccai's dev collateral server, started on loopback for the duration of the command.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ccai._time import utcnow
from ccai.cli._output import console, print_json, read_input, write_output
from ccai.errors import UsageError

if TYPE_CHECKING:
    from ccai.attest import EvidenceBundle

__all__ = ["attest_callback", "collect_bundle"]

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")


@contextmanager
def _sources(
    *,
    simulate: str | None,
    cpu: Any,
    gpu: Any,
    pcs_url: str | None,
    kds_url: str | None,
    rim_service_url: str | None,
    ocsp_url: str | None,
) -> Iterator[dict[str, Any]]:
    from ccai.collateral import (
        AMD_KDS_URL,
        DEFAULT_OCSP_URL,
        DEFAULT_RIM_SERVICE_URL,
        INTEL_PCS_URL,
        AmdKdsClient,
        IntelPcsClient,
        default_gpu_source,
    )

    if simulate is None:
        yield {
            "gpu_source": default_gpu_source(
                rim_service_url=rim_service_url or DEFAULT_RIM_SERVICE_URL,
                ocsp_url=ocsp_url or DEFAULT_OCSP_URL,
            ),
            "pcs": IntelPcsClient(pcs_url or INTEL_PCS_URL),
            "kds": AmdKdsClient(kds_url or AMD_KDS_URL),
        }
        return
    from ccai.service._dev_collateral import (
        create_dev_collateral_app,
        run_in_background,
        settings_for_virtual_gpu,
    )

    app = create_dev_collateral_app(settings_for_virtual_gpu(gpu, tee=cpu))
    with run_in_background(app) as url:
        yield {
            "gpu_source": default_gpu_source(rim_service_url=url, ocsp_url=f"{url}/ocsp"),
            "pcs": IntelPcsClient(url),
            "kds": AmdKdsClient(url),
        }


def collect_bundle(
    *,
    nonce: bytes,
    simulate: str | None,
    gpus: int | None,
    bind_keys: list[bytes],
    with_collateral: bool,
    seed: str | None = None,
    pcs_url: str | None = None,
    kds_url: str | None = None,
    rim_service_url: str | None = None,
    ocsp_url: str | None = None,
) -> EvidenceBundle:
    """Collect (and optionally complete with collateral) a composite bundle; see the module docstring.

    Raises:
        UsageError: bad arguments.
        DeviceError: no TEE / GPU driver, or collection failed.
        CollateralUnavailable: ``with_collateral`` and an item cannot be fetched.
    """
    from ccai.attest import collect_composite, gather_composite_collateral, keys_from_pem, open_virtual_vm

    tls, hpke = keys_from_pem(bind_keys)
    if simulate is not None:
        virtual_cpu, backend = open_virtual_vm(tee=simulate, gpus=1 if gpus is None else gpus, seed=seed)
        cpu: Any = virtual_cpu
        gpu: Any = backend if gpus != 0 else None
    else:
        from ccai.device import open_backend
        from ccai.tee import ConfigfsTsm

        cpu = ConfigfsTsm()
        gpu = open_backend(simulate=False) if gpus != 0 else None
    try:
        bundle = collect_composite(nonce=nonce, cpu=cpu, gpu=gpu, tls_spki_sha256=tls, hpke_public_key=hpke)
        if with_collateral:
            now = utcnow()
            with _sources(
                simulate=simulate,
                cpu=cpu,
                gpu=gpu,
                pcs_url=pcs_url,
                kds_url=kds_url,
                rim_service_url=rim_service_url,
                ocsp_url=ocsp_url,
            ) as sources:
                collateral = gather_composite_collateral(bundle, now=now, **sources)
            bundle = dataclasses.replace(bundle, collateral=collateral)
    finally:
        close = getattr(gpu, "close", None)
        if callable(close):
            close()
    return bundle


def attest_callback(  # noqa: PLR0917 - Typer maps each parameter to a command-line option
    ctx: typer.Context,
    simulate: Annotated[
        str | None,
        typer.Option("--simulate", help="Use the virtual confidential VM: tdx or snp.", metavar="tdx|snp"),
    ] = None,
    gpus: Annotated[
        int | None, typer.Option("--gpus", min=0, max=8, help="Number of (virtual) GPUs; 0 = CPU only.")
    ] = None,
    nonce: Annotated[
        str | None, typer.Option("--nonce", help="Verifier nonce, 64 hex digits.", metavar="HEX64")
    ] = None,
    bind_key: Annotated[
        list[Path] | None,
        typer.Option(
            "--bind-key", help="PEM certificate/public key to bind (X25519 = HPKE key).", metavar="FILE"
        ),
    ] = None,
    with_collateral: Annotated[
        bool, typer.Option("--with-collateral", help="Embed all collateral for offline verification.")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write the bundle here.", metavar="BUNDLE")
    ] = None,
    seed: Annotated[
        str | None, typer.Option("--seed", help="Seed of the virtual VM's test PKIs (text).")
    ] = None,
    pcs_url: Annotated[
        str | None, typer.Option("--pcs-url", help="Intel PCS / PCCS base URL.", metavar="URL")
    ] = None,
    kds_url: Annotated[str | None, typer.Option("--kds-url", help="AMD KDS base URL.", metavar="URL")] = None,
    rim_service_url: Annotated[
        str | None, typer.Option("--rim-service-url", help="NVIDIA RIM service URL.", metavar="URL")
    ] = None,
    ocsp_url: Annotated[
        str | None, typer.Option("--ocsp-url", help="OCSP responder URL.", metavar="URL")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Collect CPU TEE + GPU evidence bound to --nonce into one bundle (sub-command `gpu`: GPU gate)."""
    if ctx.invoked_subcommand is not None:
        return
    if nonce is None or output is None:
        raise UsageError(
            "ccai attest needs --nonce HEX64 and -o BUNDLE",
            hint="ccai attest --simulate tdx --nonce … -o b.json",
        )
    if not _HEX64.match(nonce):
        raise UsageError("--nonce must be 64 hex digits (32 bytes)", actual=nonce)
    if simulate is not None and simulate not in ("tdx", "snp"):
        raise UsageError("--simulate takes tdx or snp", expected="tdx | snp", actual=simulate)
    from ccai.attest import dump_evidence_bundle

    keys = [read_input(path, what="bind key") for path in bind_key or []]
    bundle = collect_bundle(
        nonce=bytes.fromhex(nonce),
        simulate=simulate,
        gpus=gpus,
        bind_keys=keys,
        with_collateral=with_collateral,
        seed=seed,
        pcs_url=pcs_url,
        kds_url=kds_url,
        rim_service_url=rim_service_url,
        ocsp_url=ocsp_url,
    )
    data = dump_evidence_bundle(bundle)
    write_output(output, data)
    summary = {
        "output": str(output),
        "size": len(data),
        "simulated": simulate is not None,
        "binding": bundle.binding,
        "nonce": bundle.nonce.hex(),
        "cpu": bundle.cpu.type if bundle.cpu else None,
        "gpus": len(bundle.gpus),
        "collateral": bundle.collateral is not None,
        "tls_spki_sha256": bundle.tls_spki_sha256.hex() if bundle.tls_spki_sha256 else None,
        "hpke_public_key": bundle.hpke_public_key.hex() if bundle.hpke_public_key else None,
    }
    if as_json:
        print_json(summary)
        return
    label = " [bold yellow](SIMULATED)[/]" if simulate else ""
    console.print(
        f"wrote {len(data)} bytes to {output}: {summary['cpu']} quote + {summary['gpus']} GPU report(s), "
        f"binding {bundle.binding}" + (", collateral embedded" if with_collateral else "") + label
    )
