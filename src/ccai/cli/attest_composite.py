"""``ccai attest``: collect a composite evidence bundle (CPU TEE + GPUs) bound to a verifier nonce.

``ccai attest [--simulate tdx|snp] [--gpus N] [--switches] (--nonce HEX64 | --service URL)
[--bind-key FILE] [--with-collateral] -o BUNDLE`` collects on this machine — configfs-tsm and
NVML, or the virtual confidential VM under ``$CCAI_HOME`` with ``--simulate`` — and writes one
JSON bundle (docs/composite-evidence.md).
``--with-collateral`` embeds everything a verifier needs offline: for a real machine from NVIDIA's
RIM service / OCSP responder, Intel PCS and AMD KDS (URLs configurable); for the virtual VM from
ccai's dev collateral server, started on loopback for the duration of the command.
``--switches`` adds the NVSwitches of a protected-PCIe system (docs/ppcie.md): the virtual HGX's
with ``--simulate`` (``ccai gpu init --simulate --gpus 8 --switches 4 --ppcie``), NVIDIA's NSCQ
library on real hardware (exit 4 with the reason where it is absent or cannot be driven).
``--service URL`` fetches the nonce from an attestation service (``POST URL/v1/nonce``) instead of
``--nonce``, so that ``ccai verify BUNDLE --service URL`` can then appraise the bundle there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ccai._time import utcnow
from ccai.cli._options import (
    ApiKeyOpt,
    JsonOpt,
    KdsUrlOpt,
    NonceOpt,
    OcspUrlOpt,
    PcsUrlOpt,
    RimServiceUrlOpt,
    network_sources,
    parse_nonce,
)
from ccai.cli._output import console, print_json, read_input, write_output
from ccai.errors import UsageError

if TYPE_CHECKING:
    from ccai.evidence import EvidenceBundle

__all__ = ["attest_callback", "collect_bundle"]


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
    if simulate is None:
        yield network_sources(
            pcs_url=pcs_url, kds_url=kds_url, rim_service_url=rim_service_url, ocsp_url=ocsp_url
        )
        return
    from ccai.virtual import create_dev_collateral_app, run_in_background, settings_for_virtual_gpu

    app = create_dev_collateral_app(settings_for_virtual_gpu(gpu, tee=cpu))
    with run_in_background(app) as url:
        yield network_sources(pcs_url=url, kds_url=url, rim_service_url=url, ocsp_url=f"{url}/ocsp")


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
    switches: bool = False,
) -> EvidenceBundle:
    """Collect (and optionally complete with collateral) a composite bundle; see the module docstring.

    Raises:
        UsageError: bad arguments.
        DeviceError: no TEE / GPU driver, or collection failed.
        CollateralUnavailable: ``with_collateral`` and an item cannot be fetched.
        DeviceNotSupported / DriverNotFound: ``switches`` and no NVSwitch can be attested.
    """
    from ccai.attest import collect_composite, gather_composite_collateral, keys_from_pem
    from ccai.collateral import embed_collateral

    tls, hpke = keys_from_pem(bind_keys)
    if switches and gpus == 0:
        raise UsageError("--switches attests a protected-PCIe system's GPUs too (not --gpus 0)")
    switch_source: Any = None
    if simulate is not None:
        from ccai.virtual import open_virtual_vm

        virtual_cpu, backend = open_virtual_vm(tee=simulate, gpus=gpus, seed=seed)
        cpu: Any = virtual_cpu
        gpu: Any = backend if gpus != 0 else None
        # The dev collateral server needs the virtual VM's GPU half even when no GPU is attested.
        server_gpu: Any = backend
        if switches:
            switch_source = _virtual_switches(backend)
    else:
        from ccai.device import NvmlBackend
        from ccai.tee import ConfigfsTsm

        if switches:
            from ccai.attest import nscq_switches

            switch_source = nscq_switches()  # before NVML: the switches' reason is the one to give
        cpu = ConfigfsTsm()
        gpu = NvmlBackend.open() if gpus != 0 else None
        server_gpu = None
    try:
        bundle = collect_composite(
            nonce=nonce,
            cpu=cpu,
            gpu=gpu,
            tls_spki_sha256=tls,
            hpke_public_key=hpke,
            switches=switch_source,
        )
        if with_collateral:
            now = utcnow()
            with _sources(
                simulate=simulate,
                cpu=cpu,
                gpu=server_gpu,
                pcs_url=pcs_url,
                kds_url=kds_url,
                rim_service_url=rim_service_url,
                ocsp_url=ocsp_url,
            ) as sources:
                collateral = gather_composite_collateral(bundle, now=now, **sources)
            bundle = embed_collateral(bundle, collateral)
    finally:
        close = getattr(gpu, "close", None)
        if callable(close):
            close()
    return bundle


def _virtual_switches(backend: Any) -> Any:
    """The virtual HGX's NVSwitches.

    Raises:
        DeviceNotSupported: the virtual VM has no NVSwitches.
    """
    from ccai.errors import DeviceNotSupported

    if not backend.switch_count:
        raise DeviceNotSupported(
            "the virtual VM has no NVSwitches",
            hint="create the virtual HGX: ccai gpu init --simulate --gpus 8 --switches 4 --ppcie",
        )
    return backend


def _service_nonce(url: str, api_key: str | None) -> bytes:
    """A fresh nonce from the attestation service at ``url`` (``POST URL/v1/nonce``).

    Raises:
        CollateralUnavailable: the service cannot be reached or answers 5xx.
        UsageError: it refuses the request (4xx: API key).
    """
    from ccai.cli._remote import service_client

    client = service_client(url, api_key)
    try:
        return client.nonce()
    finally:
        client.close()


def attest_callback(  # noqa: PLR0917 - Typer maps each parameter to a command-line option
    ctx: typer.Context,
    simulate: Annotated[
        str | None,
        typer.Option("--simulate", help="Use the virtual confidential VM: tdx or snp.", metavar="tdx|snp"),
    ] = None,
    gpus: Annotated[
        int | None,
        typer.Option(
            "--gpus",
            min=0,
            max=8,
            help="Number of (virtual) GPUs; 0 = CPU only (default: all; with --simulate the "
            "virtual GPUs as they are under $CCAI_HOME, one if there are none).",
        ),
    ] = None,
    nonce: NonceOpt = None,
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
    pcs_url: PcsUrlOpt = None,
    kds_url: KdsUrlOpt = None,
    rim_service_url: RimServiceUrlOpt = None,
    ocsp_url: OcspUrlOpt = None,
    service: Annotated[
        str | None,
        typer.Option(
            "--service",
            help="Attestation service base URL: bind the bundle to a nonce from URL/v1/nonce (not --nonce).",
            metavar="URL",
        ),
    ] = None,
    api_key: ApiKeyOpt = None,
    switches: Annotated[
        bool,
        typer.Option(
            "--switches",
            help="Add the NVSwitches' evidence (protected PCIe): the virtual HGX's with --simulate, "
            "NSCQ on real hardware.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Collect CPU TEE + GPU evidence bound to --nonce into one bundle (sub-command `gpu`: GPU gate)."""
    if ctx.invoked_subcommand is not None:
        return
    if (nonce is None) == (service is None) or output is None:
        raise UsageError(
            "ccai attest needs -o BUNDLE and either --nonce HEX64 or --service URL",
            hint="ccai attest --simulate tdx --service URL -o b.json",
        )
    if simulate is not None and simulate not in ("tdx", "snp"):
        raise UsageError("--simulate takes tdx or snp", expected="tdx | snp", actual=simulate)
    if nonce is not None:
        nonce_bytes = parse_nonce(nonce)
    else:
        assert service is not None
        nonce_bytes = _service_nonce(service, api_key)
    from ccai.evidence import dump_evidence_bundle

    keys = [read_input(path, what="bind key") for path in bind_key or []]
    bundle = collect_bundle(
        nonce=nonce_bytes,
        simulate=simulate,
        gpus=gpus,
        bind_keys=keys,
        with_collateral=with_collateral,
        seed=seed,
        pcs_url=pcs_url,
        kds_url=kds_url,
        rim_service_url=rim_service_url,
        ocsp_url=ocsp_url,
        switches=switches,
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
        "switches": len(bundle.switches),
        "collateral": bundle.collateral_json is not None,
        "tls_spki_sha256": bundle.tls_spki_sha256.hex() if bundle.tls_spki_sha256 else None,
        "hpke_public_key": bundle.hpke_public_key.hex() if bundle.hpke_public_key else None,
    }
    if as_json:
        print_json(summary)
        return
    label = " [bold yellow](SIMULATED)[/]" if simulate else ""
    console.print(
        f"wrote {len(data)} bytes to {output}: {summary['cpu']} quote + {summary['gpus']} GPU report(s)"
        + (f" + {summary['switches']} NVSwitch report(s)" if bundle.switches else "")
        + ", "
        f"binding {bundle.binding}" + (", collateral embedded" if with_collateral else "") + label
    )
