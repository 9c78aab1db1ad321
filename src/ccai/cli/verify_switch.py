"""``ccai verify switch`` and ``ccai attest ppcie``: NVSwitch evidence, and a protected-PCIe system.

``verify switch`` runs the switch checklist (``SWITCH_STEPS``: chain, signature, contents, nonce,
revocation, BIOS RIM, measurements, claims, policy) over NVIDIA's switch evidence JSON or a raw
LS10 report and its chain. ``attest ppcie`` collects every GPU's and NVSwitch's evidence for one
fresh nonce (the virtual HGX system with ``--simulate``; NVIDIA's NSCQ library on real hardware),
verifies the system as one (``PPCIE_STEPS``) and with ``--set-ready`` sets every GPU ready on
success — and none on failure.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ccai._time import utcnow
from ccai.cli._options import (
    AllowSimulatedOpt,
    AtOpt,
    ClaimsVersionOpt,
    GpuCollateralOpt,
    JsonClaimsOpt,
    NonceOpt,
    OcspUrlOpt,
    OfflineOpt,
    RimDirOpt,
    RimServiceUrlOpt,
    check_claims_version,
    parse_nonce,
    verification_time,
)
from ccai.cli.verify_gpu import _load_items, gpu_verifier, report_outcome
from ccai.errors import Error, UsageError

if TYPE_CHECKING:
    from ccai.verify import Policy, Verifier

__all__ = ["ppcie_command", "switch_command"]

PolicyOpt = Annotated[
    Path | None,
    typer.Option(
        "--policy", help='A ccai policy file with a "ppcie" section (docs/policies.md).', metavar="F"
    ),
]


def _policy(path: Path | None, *, part: str, default: Policy) -> Policy:
    from ccai.verify import load_policy

    if path is None:
        return default
    return load_policy(path, part="switch" if part == "switch" else "gpu")


def _with_policy(verifier: Verifier, policy: Policy) -> Verifier:
    verifier.policy = policy
    return verifier


def switch_command(  # noqa: PLR0917 - Typer maps each parameter to a command-line option
    evidence: Annotated[
        Path | None,
        typer.Argument(help="NVIDIA switch evidence JSON (list of {arch, nonce, evidence, certificate})."),
    ] = None,
    nonce: NonceOpt = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Raw LS10 report (binary or hex).", metavar="F")
    ] = None,
    certs: Annotated[
        Path | None, typer.Option("--certs", help="PEM certificate chain, leaf first.", metavar="F")
    ] = None,
    bios_rim: Annotated[
        Path | None, typer.Option("--bios-rim", help="Switch BIOS RIM XML (NV_SWITCH_BIOS_…).", metavar="F")
    ] = None,
    rim_dir: RimDirOpt = None,
    collateral: GpuCollateralOpt = None,
    offline: OfflineOpt = False,
    rim_service_url: RimServiceUrlOpt = None,
    ocsp_url: OcspUrlOpt = None,
    at: AtOpt = None,
    policy: PolicyOpt = None,
    allow_simulated: AllowSimulatedOpt = False,
    claims_version: ClaimsVersionOpt = "3.0",
    as_json: JsonClaimsOpt = False,
) -> None:
    """Verify NVIDIA NVSwitch (LS10) evidence: chain, signature, nonce, revocation, BIOS RIM, measurements."""
    from ccai.token import TokenSigner, issue_token
    from ccai.verify import default_switch_policy

    if not nonce:
        raise UsageError("--nonce is required (the nonce the evidence must be bound to)")
    nonce_bytes = parse_nonce(nonce)
    check_claims_version(claims_version)
    if offline and (rim_service_url is not None or ocsp_url is not None):
        raise UsageError("--offline never asks a RIM service or OCSP responder: drop it or the URLs")
    now = verification_time(at)
    items = _load_items(evidence, report, certs, nonce_bytes)
    verifier = gpu_verifier(
        policy=None,
        allow_simulated=allow_simulated,
        bundle=collateral,
        rim_dir=rim_dir,
        offline=offline,
        vbios_rim=bios_rim,
        rim_service_url=rim_service_url,
        ocsp_url=ocsp_url,
    )
    default = default_switch_policy(
        allow_unchecked_revocation=not verifier.check_revocation, allow_simulated=allow_simulated
    )
    _with_policy(verifier, _policy(policy, part="switch", default=default))
    title = "NVSwitch evidence"
    try:
        verified = verifier.verify_switch(items, nonce=nonce_bytes, now=now, claims_version=claims_version)
    except Error as exc:
        report_outcome(
            verified=None,
            error=exc,
            as_json=as_json,
            title=title,
            revocation_checked=verifier.check_revocation,
        )
        raise
    eat = None
    if as_json:
        signer = TokenSigner.load_or_create(development=verified.simulated)
        eat = issue_token(verified, signing_key=signer, now=now).to_json()
    report_outcome(
        verified=verified,
        error=None,
        as_json=as_json,
        title=title,
        eat=eat,
        revocation_checked=verifier.check_revocation,
    )


def ppcie_command(  # noqa: PLR0917 - Typer maps each parameter to a command-line option
    simulate: Annotated[
        bool, typer.Option("--simulate", help="Use the virtual HGX system under $CCAI_HOME (test PKI).")
    ] = False,
    set_ready: Annotated[
        bool, typer.Option("--set-ready", help="On success set every GPU ready; on failure none.")
    ] = False,
    gpus: Annotated[int, typer.Option("--gpus", min=1, help="GPUs the system must have.")] = 8,
    switches: Annotated[int, typer.Option("--switches", min=1, help="NVSwitches the system must have.")] = 4,
    rim_dir: RimDirOpt = None,
    collateral: GpuCollateralOpt = None,
    offline: OfflineOpt = False,
    rim_service_url: RimServiceUrlOpt = None,
    ocsp_url: OcspUrlOpt = None,
    policy: PolicyOpt = None,
    as_json: JsonClaimsOpt = False,
) -> None:
    """Attest a protected-PCIe system: every GPU and NVSwitch and their topology; all ready or none."""
    from ccai.attest import SwitchSource, collect_gpu_evidence, collect_switch_evidence, nscq_switches
    from ccai.cli.attest import _VirtualRims
    from ccai.cli.gpu import open_gpu
    from ccai.token import TokenSigner, issue_token
    from ccai.verify import default_ppcie_policy
    from ccai.virtual import VirtualGpuBackend

    title = "Protected-PCIe system" + (" (SIMULATED)" if simulate else "")
    # Real hardware: the switches (NSCQ, and NVIDIA's pre-checks: TNVL mode, locked) before NVML.
    switches_first: SwitchSource | None = None if simulate else nscq_switches()
    with open_gpu(simulate=simulate) as backend:
        source: SwitchSource = (
            backend if isinstance(backend, VirtualGpuBackend) else switches_first or nscq_switches()
        )
        if simulate and rim_service_url is None and ocsp_url is None:
            offline = True  # the virtual system's own RIMs, as `ccai attest gpu --simulate` does
        nonce = secrets.token_bytes(32)
        now = utcnow()
        ok = False
        try:
            gpu_items = collect_gpu_evidence(backend, nonce)
            switch_items = collect_switch_evidence(source, nonce)
            verifier = gpu_verifier(
                policy=None,
                allow_simulated=simulate,
                bundle=collateral,
                rim_dir=rim_dir,
                offline=offline,
                rim_service_url=rim_service_url,
                ocsp_url=ocsp_url,
                last=_VirtualRims(backend) if isinstance(backend, VirtualGpuBackend) else None,
            )
            default = default_ppcie_policy(
                gpus=gpus,
                switches=switches,
                allow_unchecked_revocation=not verifier.check_revocation,
                allow_simulated=simulate,
            )
            _with_policy(verifier, _policy(policy, part="gpu", default=default))
            extra = {"set_ready_requested": set_ready}
            try:
                verified = verifier.verify_ppcie(
                    gpu_items,
                    switch_items,
                    nonce=nonce,
                    now=now,
                    expected_gpus=gpus,
                    expected_switches=switches,
                )
            except Error as exc:
                report_outcome(
                    verified=None,
                    error=exc,
                    as_json=as_json,
                    title=title,
                    extra=extra,
                    revocation_checked=verifier.check_revocation,
                )
                raise
            eat = None
            if as_json:
                signer = TokenSigner.load_or_create(development=verified.simulated)
                eat = issue_token(verified, signing_key=signer, now=now).to_json()
            report_outcome(
                verified=verified,
                error=None,
                as_json=as_json,
                title=title,
                eat=eat,
                extra=extra,
                revocation_checked=verifier.check_revocation,
            )
            ok = True
        finally:
            # All or none: a failed system attestation never leaves any GPU accepting work.
            if set_ready and not ok:
                backend.set_ready(False)
        if set_ready:
            backend.set_ready(True)
            if not as_json:
                typer.echo("GPUs ready: every GPU and NVSwitch verified")
