"""``ccai attest gpu``: attest this machine's GPUs and open the GPUs-ready gate only on success.

The gate NVIDIA's Python verifier provides (gpu-evidence.md §2.2 step 14), without its defect:
ccai never sets READY on failure, DevTools mode included. Steps: open the backend (NVML, or the
virtual GPU with ``--simulate``), draw a fresh nonce, collect every GPU's report and chain
(:func:`ccai.attest.collect_gpu_evidence`), verify with a :class:`ccai.verify.Verifier` (which
fetches collateral — the RIM service and OCSP responder, or a bundle / RIM directory — after the
evidence is authenticated) using the CC mode the driver reports, and with ``--set-ready`` set the
ready state to 1 on success or 0 on failure.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Annotated

import typer

from ccai._time import utcnow
from ccai.cli import attest_composite
from ccai.cli._options import (
    ClaimsVersionOpt,
    GpuCollateralOpt,
    GpuPolicyOpt,
    JsonClaimsOpt,
    OcspUrlOpt,
    OfflineOpt,
    RimDirOpt,
    RimServiceUrlOpt,
    check_claims_version,
)
from ccai.errors import CollateralUnavailable

if TYPE_CHECKING:
    from ccai.virtual import VirtualGpuBackend

__all__ = ["app", "gpu_command"]

app = typer.Typer(
    name="attest",
    help="Attest this machine: a composite CPU + GPU evidence bundle, or the GPU gate (`gpu`).",
    invoke_without_command=True,
)
# `ccai attest [--simulate tdx|snp] … -o BUNDLE` itself collects a composite bundle
# (docs/composite-evidence.md); it does nothing when a sub-command such as `gpu` runs.
app.callback()(attest_composite.attest_callback)


class _VirtualRims:
    """The virtual GPU's own signed RIMs as a collateral source (it has no OCSP responder)."""

    def __init__(self, backend: VirtualGpuBackend) -> None:
        self.backend = backend

    def rim(self, rim_id: str) -> bytes:
        return self.backend.rim(rim_id)

    def ocsp(self, cert: object, issuer: object, *, nonce: bytes | None) -> bytes:
        del cert, issuer, nonce
        raise CollateralUnavailable("the virtual GPU has no OCSP responder; run ccai dev collateral-server")


@app.command("gpu")
def gpu_command(  # noqa: PLR0917 - Typer maps each parameter to a command-line option
    simulate: Annotated[
        bool, typer.Option("--simulate", help="Use the virtual CC GPU under $CCAI_HOME (test PKI).")
    ] = False,
    set_ready: Annotated[
        bool, typer.Option("--set-ready", help="On success set GPUs-ready; on failure leave/set not-ready.")
    ] = False,
    rim_dir: RimDirOpt = None,
    collateral: GpuCollateralOpt = None,
    offline: OfflineOpt = False,
    rim_service_url: RimServiceUrlOpt = None,
    ocsp_url: OcspUrlOpt = None,
    policy: GpuPolicyOpt = None,
    claims_version: ClaimsVersionOpt = "3.0",
    as_json: JsonClaimsOpt = False,
) -> None:
    """Collect evidence from this machine's GPUs, verify it, and optionally set the GPUs-ready state."""
    from ccai.attest import collect_gpu_evidence
    from ccai.cli.gpu import open_gpu
    from ccai.cli.verify_gpu import gpu_verifier, verify_and_report
    from ccai.virtual import VirtualGpuBackend

    check_claims_version(claims_version)
    with open_gpu(simulate=simulate) as backend:
        status = backend.status()
        mode = "devtools" if status.devtools else ("on" if status.cc_feature else "off")
        nonce = secrets.token_bytes(32)
        now = utcnow()
        ok = False
        if simulate and rim_service_url is None and ocsp_url is None:
            # NVIDIA's services know nothing about the test PKI: without a dev collateral server
            # (ccai dev collateral-server) the virtual GPU's own RIMs are used, offline.
            offline = True
        try:
            items = collect_gpu_evidence(backend, nonce)
            verifier = gpu_verifier(
                policy=policy,
                allow_simulated=simulate,
                bundle=collateral,
                rim_dir=rim_dir,
                offline=offline,
                rim_service_url=rim_service_url,
                ocsp_url=ocsp_url,
                last=_VirtualRims(backend) if isinstance(backend, VirtualGpuBackend) else None,
            )
            verify_and_report(
                verifier,
                items,
                nonce=nonce,
                now=now,
                claims_version=claims_version,
                reported_cc_mode=mode,
                as_json=as_json,
                title="GPU attestation" + (" (SIMULATED)" if simulate else ""),
                extra={"set_ready_requested": set_ready},
            )
            ok = True
        finally:
            # Fail closed: a failed attestation (or a crash on the way) never leaves the GPUs
            # accepting work.
            if set_ready and not ok:
                backend.set_ready(False)
        if set_ready:
            backend.set_ready(True)
            if not as_json:
                typer.echo("GPUs ready: accepting client work")


# `ccai attest ppcie`: the GPUs and NVSwitches of a protected-PCIe system, verified as one.
from ccai.cli import verify_switch  # noqa: E402

app.command("ppcie")(verify_switch.ppcie_command)
