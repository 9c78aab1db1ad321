"""``ccai demo``: the whole flow on the embedded default, on virtual hardware, end to end.

The demo is a numbered list of small steps, each a function that takes what the previous steps
produced and records what it did: create virtual Hopper GPUs in CC mode, show their status, draw a
fresh nonce, collect evidence, parse it, authenticate each report (chain, signature, nonce), show
the RIM ids and opaque fields, collect and verify a composite TDX + GPU bundle, and verify the GPU
evidence against a loopback collateral server. Every check is a call to the library
(:class:`ccai.verify.Verifier` built for the virtual hardware's test PKI); the demo only renders.

Everything runs on the virtual CC GPU and is labelled SIMULATED: the test PKI proves nothing about
real hardware.

The files the demo says it wrote (``demo-evidence.json``, ``demo-bundle.json``) are kept: in
``--output-dir``, else in ``--home``, else in a new directory under the system temp directory; the
last line (and the JSON's ``output_dir``) says where. Only the virtual GPU state of a run without
``--home`` is thrown away.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ccai.cli._output import console, print_json, write_output
from ccai.cli.gpu import SIMULATED_LABEL, ArchChoice, print_status, status_to_dict
from ccai.errors import UsageError

if TYPE_CHECKING:
    from ccai.device import GpuBackend
    from ccai.evidence import AttestationReport, GpuEvidence
    from ccai.verify import TrustAnchors

__all__ = ["DemoRun", "demo", "run_demo"]


@dataclass(slots=True)
class DemoRun:
    """What the demo did: one record per step, and whether to print for people as it goes.

    Attributes:
        verbose: Print each step for people (False for ``--json``).
        steps: ``{"step": n, "title": ..., **facts}`` per finished step.
    """

    verbose: bool
    steps: list[dict[str, Any]] = field(default_factory=list)

    def record(self, title: str, **facts: Any) -> None:
        """Record a finished step (and announce it when verbose)."""
        self.steps.append({"step": len(self.steps) + 1, "title": title, **facts})
        if self.verbose:
            console.print(f"\n[bold cyan]({len(self.steps)}) {escape(title)}[/]")


# -- the steps -----------------------------------------------------------------------------------


def step_create_gpus(
    run: DemoRun, *, home: Path, gpus: int, arch: ArchChoice, seed: str | None
) -> GpuBackend:
    """(1) Create virtual GPUs in CC mode under ``home`` (deterministic test PKI from ``seed``)."""
    from ccai.device import Architecture, CcMode
    from ccai.virtual import VirtualGpuBackend

    options: dict[str, Any] = {"seed": seed} if seed is not None else {}
    backend = VirtualGpuBackend.create(
        home=home, gpus=gpus, architecture=Architecture(arch.value), mode=CcMode.ON, **options
    )
    run.record("create virtual CC GPUs", home=str(home), gpus=gpus, architecture=arch.value)
    return backend


def step_status(run: DemoRun, backend: GpuBackend) -> None:
    """(2) Show the CC state, as ``ccai gpu status --simulate`` does."""
    status = backend.status()
    run.record("GPU CC status", status=status_to_dict(status))
    if run.verbose:
        print_status(status, label=False)


def step_nonce(run: DemoRun, token_bytes: Callable[[int], bytes]) -> bytes:
    """(3) Draw a fresh 32-byte nonce, as a verifier would."""
    nonce = token_bytes(32)
    run.record("draw a fresh verifier nonce", nonce=nonce.hex())
    if run.verbose:
        console.print(f"nonce {nonce.hex()}")
    return nonce


def step_collect(run: DemoRun, backend: GpuBackend, nonce: bytes, output: Path) -> bytes:
    """(4) Collect every GPU's report and certificate chain as NVIDIA's evidence JSON."""
    from ccai.attest import collect_gpu_evidence
    from ccai.evidence import dump_evidence_json

    data = dump_evidence_json(collect_gpu_evidence(backend, nonce))
    write_output(output, data)
    run.record("collect evidence (NVIDIA evidence JSON)", output=str(output), size=len(data))
    if run.verbose:
        console.print(f"wrote {len(data)} bytes to {escape(str(output))}")
    return data


def step_parse(run: DemoRun, data: bytes) -> list[tuple[GpuEvidence, AttestationReport]]:
    """(5) Parse the evidence JSON, each report and each certificate chain."""
    from ccai.evidence import parse_evidence_json

    parsed = []
    facts: list[dict[str, Any]] = []
    for item in parse_evidence_json(data):
        report = item.parse_report()
        certs = item.certificates()
        parsed.append((item, report))
        facts.append(
            {
                "arch": item.arch,
                "report_size": len(report.raw),
                "measurements": len(report.measurements),
                "opaque_fields": len(report.opaque_data),
                "certificates": [cert.subject.rfc4514_string() for cert in certs],
            }
        )
    run.record("parse evidence", gpus=facts)
    if run.verbose:
        for i, fact in enumerate(facts):
            console.print(
                f"GPU {i}: {fact['arch']} report of {fact['report_size']} bytes, "
                f"{fact['measurements']} measurement blocks, {fact['opaque_fields']} opaque fields, "
                f"chain of {len(fact['certificates'])} certificates (leaf "
                f"{escape(fact['certificates'][0])})"
            )
    return parsed


def _test_pki(backend: GpuBackend, *, tdx: bool = False) -> TrustAnchors:
    """The virtual hardware's test-PKI anchors (the demo trusts them by name)."""
    from ccai.virtual import VirtualGpuBackend, virtual_trust_anchors

    if not isinstance(backend, VirtualGpuBackend):
        raise UsageError("the demo verifies virtual-GPU evidence only")
    return virtual_trust_anchors(backend.home, gpu=True, tdx=tdx)


def step_check(
    run: DemoRun, backend: GpuBackend, parsed: list[tuple[GpuEvidence, AttestationReport]], nonce: bytes
) -> None:
    """(6) Authenticate each report: chain to the test root, signature (leaf key, ECDSA P-384/SHA-384)
    over the raw bytes, then its nonce — the evidence-only steps of the verifier."""
    from ccai.verify import Verifier

    verifier = Verifier.simulated(_test_pki(backend))
    verifier.authenticate_gpu([item for item, _ in parsed], nonce=nonce)
    run.record("check report signatures and nonces", gpus=len(parsed), signature="valid", nonce="matches")
    if run.verbose:
        console.print(f"{len(parsed)} report signature(s) valid with the leaf key; nonce matches")


def _show_value(value: str | int | list[int] | list[str]) -> str:
    """A decoded opaque value for a table cell: status bytes in hex, long values shortened."""
    if isinstance(value, list):
        text = " ".join(str(v) for v in value)
    elif isinstance(value, int):
        text = f"{value} ({value:#x})"
    else:
        text = value
    return text if len(text) <= 64 else f"{text[:61]}…"


def step_show(run: DemoRun, parsed: list[tuple[GpuEvidence, AttestationReport]]) -> None:
    """(7) Show the RIM ids a verifier would fetch and every opaque field."""
    from ccai.evidence import driver_rim_id, vbios_rim_id

    facts: list[dict[str, Any]] = []
    for _, report in parsed:
        facts.append(
            {
                "driver_rim_id": driver_rim_id(report),
                "vbios_rim_id": vbios_rim_id(report),
                "driver_version": report.opaque_data.driver_version,
                "vbios_version": report.opaque_data.vbios_version,
                "opaque": {f.name: report.opaque_data.json_value(f) for f in report.opaque_data},
            }
        )
    run.record("RIM ids and opaque fields", gpus=facts)
    if not run.verbose:
        return
    for i, fact in enumerate(facts):
        table = Table(title=f"GPU {i}: driver RIM {fact['driver_rim_id']}, VBIOS RIM {fact['vbios_rim_id']}")
        table.add_column("opaque field")
        table.add_column("value")
        for name, value in fact["opaque"].items():
            table.add_row(name, escape(_show_value(value)))
        console.print(table)


def step_verify(run: DemoRun, backend: GpuBackend, data: bytes, nonce: bytes) -> None:
    """(8) Verify the evidence against a loopback collateral server (RIM service + real OCSP
    responder for the test PKI) with ``ccai.verify``, and show the claims."""
    from ccai._time import utcnow
    from ccai.evidence import parse_evidence_json
    from ccai.verify import Verifier
    from ccai.virtual import (
        VirtualGpuBackend,
        create_dev_collateral_app,
        run_in_background,
        settings_for_virtual_gpu,
    )

    test_pki = _test_pki(backend)
    assert isinstance(backend, VirtualGpuBackend)  # _test_pki refused anything else
    items = parse_evidence_json(data)
    now = utcnow()
    with run_in_background(create_dev_collateral_app(settings_for_virtual_gpu(backend))) as url:
        # Collateral is fetched during verification, after each report is authenticated.
        verifier = Verifier.simulated(test_pki, rim_service_url=url, ocsp_url=url)
        verified = verifier.verify_gpu(items, nonce=nonce, now=now, reported_cc_mode="on")
    claims = {f"GPU-{g.index}": dict(g.claims) for g in verified.gpus}
    run.record(
        "verify evidence (chains, signatures, OCSP, RIMs, measurements, policy)",
        overall=dict(verified.overall_claims),
        claims=claims,
    )
    if run.verbose:
        for name, gpu in claims.items():
            table = Table(title=f"{name} claims (claims {verified.claims_version})")
            table.add_column("claim")
            table.add_column("value")
            for key, value in gpu.items():
                table.add_row(key, escape(_show_value(str(value))))
            console.print(table)
        console.print(f"overall result: {verified.overall_claims['x-nvidia-overall-att-result']}")


def step_attest_composite(run: DemoRun, backend: GpuBackend, nonce: bytes, output: Path) -> Any:
    """Boot a virtual TDX VM around the GPUs and collect one composite bundle bound to ``nonce``:
    GPU reports with the derived GPU nonce, then a TDX quote whose REPORTDATA commits to the nonce
    and the exact GPU evidence (docs/composite-evidence.md), with all collateral from the loopback
    dev collateral server (Intel-PCS-like and NVIDIA-like paths)."""

    from ccai._time import utcnow
    from ccai.attest import collect_composite, gather_composite_collateral
    from ccai.collateral import IntelPcsClient, default_gpu_source, embed_collateral
    from ccai.evidence import dump_evidence_bundle
    from ccai.virtual import (
        VirtualCpuTee,
        VirtualGpuBackend,
        create_dev_collateral_app,
        run_in_background,
        settings_for_virtual_gpu,
    )

    if not isinstance(backend, VirtualGpuBackend):
        raise UsageError("the demo attests the virtual confidential VM only")
    tee = VirtualCpuTee.create(home=backend.home, tee="tdx", seed=backend.seed)
    bundle = collect_composite(nonce=nonce, cpu=tee, gpu=backend)
    now = utcnow()
    app = create_dev_collateral_app(settings_for_virtual_gpu(backend, tee=tee))
    with run_in_background(app) as url:
        collateral = gather_composite_collateral(
            bundle,
            now=now,
            gpu_source=default_gpu_source(rim_service_url=url, ocsp_url=url),
            pcs=IntelPcsClient(url),
        )
    bundle = embed_collateral(bundle, collateral)
    data = dump_evidence_bundle(bundle)
    write_output(output, data)
    run.record(
        "boot a virtual TDX VM and collect a composite bundle (TDX quote + GPU evidence + collateral)",
        output=str(output),
        size=len(data),
        binding=bundle.binding,
        gpus=len(bundle.gpus),
    )
    if run.verbose:
        console.print(
            f"wrote {len(data)} bytes to {escape(str(output))}: TDX quote + {len(bundle.gpus)} "
            f"GPU report(s), binding {bundle.binding}, collateral embedded"
        )
    return tee


def step_verify_composite(
    run: DemoRun, backend: GpuBackend, tee: Any, bundle_path: Path, nonce: bytes
) -> None:
    """Verify the composite bundle offline: the TDX quote (PCK chain, QE, TCB level), every GPU,
    and the binding; then show that GPU evidence from another virtual VM breaks the binding."""
    import dataclasses

    from ccai._time import utcnow
    from ccai.attest import collect_composite
    from ccai.errors import BindingError
    from ccai.evidence import load_evidence_bundle
    from ccai.verify import Verifier
    from ccai.virtual import VirtualGpuBackend

    del tee  # its test root is read from the VM's state, with the GPUs'
    assert isinstance(backend, VirtualGpuBackend)
    bundle = load_evidence_bundle(bundle_path.read_bytes())
    verifier = Verifier.simulated(_test_pki(backend, tdx=True))
    now = utcnow()
    verified = verifier.verify_bundle(bundle, now=now, expected_nonce=nonce)
    cpu = dict(verified.cpu_claims or {})
    # A relay that pairs this TDX quote with GPU evidence from another machine is caught.
    other = VirtualGpuBackend.create(
        home=backend.home / "other-vm", gpus=len(bundle.gpus), seed=b"another VM"
    )
    foreign = collect_composite(nonce=nonce, cpu=None, gpu=other).gpus
    try:
        verifier.verify_bundle(dataclasses.replace(bundle, gpus=foreign), now=now, expected_nonce=nonce)
    except BindingError as exc:
        swap = f"rejected: {type(exc).__name__}"
    else:  # pragma: no cover - the binding makes this unreachable
        raise BindingError("the demo's swapped GPU evidence was accepted")
    run.record(
        "verify the composite bundle offline (TDX quote, GPUs, binding)",
        steps=[{"step": r.step, "outcome": r.detail} for r in verified.steps],
        tcb_status=cpu.get("tcb_status"),
        mr_td=cpu.get("mr_td"),
        report_data=cpu.get("report_data"),
        gpus=len(verified.gpus),
        swapped_gpu_evidence=swap,
    )
    if run.verbose:
        table = Table(title="composite evidence (SIMULATED)")
        table.add_column("step")
        table.add_column("outcome")
        for result in verified.steps:
            table.add_row(result.step, escape(result.detail))
        console.print(table)
        console.print(f"TDX TCB status {cpu.get('tcb_status')}; GPU evidence from another VM: {swap}")


def run_demo(
    *,
    home: Path,
    gpus: int = 1,
    arch: ArchChoice = ArchChoice.HOPPER,
    seed: str | None = None,
    token_bytes: Callable[[int], bytes] = secrets.token_bytes,
    verbose: bool = True,
    output_dir: Path | None = None,
) -> DemoRun:
    """Run every demo step in order; the first failing step raises its ccai error.

    Args:
        home: Where the virtual GPU state goes (and the files, without ``output_dir``).
        gpus: Number of virtual GPUs.
        arch: Their architecture.
        seed: Seed of the test PKI (default: the public default seed).
        token_bytes: Source of the nonce (injected so tests can pin it).
        verbose: Print for people as the steps run.
        output_dir: Where the evidence and bundle files go (default ``home``).

    Returns:
        The record of the steps.
    """
    out = output_dir if output_dir is not None else home
    run = DemoRun(verbose=verbose)
    if verbose:
        console.print(f"[bold yellow]{SIMULATED_LABEL}[/]")
    backend = step_create_gpus(run, home=home, gpus=gpus, arch=arch, seed=seed)
    step_status(run, backend)
    nonce = step_nonce(run, token_bytes)
    data = step_collect(run, backend, nonce, out / "demo-evidence.json")
    parsed = step_parse(run, data)
    step_check(run, backend, parsed, nonce)
    step_show(run, parsed)
    tee = step_attest_composite(run, backend, nonce, out / "demo-bundle.json")
    step_verify_composite(run, backend, tee, out / "demo-bundle.json", nonce)
    step_verify(run, backend, data, nonce)
    if verbose:
        console.print(
            f"\n[bold green]demo finished:[/] {len(run.steps)} steps ok [bold yellow](SIMULATED)[/]"
        )
        console.print(
            f"evidence and bundle kept in {escape(str(out))} (demo-evidence.json, demo-bundle.json)",
            soft_wrap=True,
        )
    return run


def demo(
    *,
    home: Annotated[
        Path | None,
        typer.Option("--home", help="Keep the virtual GPU state here (default: a throw-away directory)."),
    ] = None,
    gpus: Annotated[int, typer.Option("--gpus", min=1, max=8, help="Number of virtual GPUs.")] = 1,
    arch: Annotated[ArchChoice, typer.Option("--arch", help="Virtual GPU architecture.")] = ArchChoice.HOPPER,
    seed: Annotated[str | None, typer.Option("--seed", help="Seed of the test PKI (text).")] = None,
    output_dir: Annotated[
        Path | None,
        typer.Option(
            "--output-dir",
            help="Write the evidence and bundle files here and keep them "
            "(default: --home, else a new directory under the system temp directory).",
            metavar="DIR",
        ),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Run the confidential-computing flow end to end on a virtual CC GPU (SIMULATED)."""
    if output_dir is None:
        # The files the demo reports writing outlive it; only a throw-away GPU state is removed.
        output_dir = home if home is not None else Path(tempfile.mkdtemp(prefix="ccai-demo-"))
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create --output-dir {output_dir}: {exc.strerror}") from None
    options: dict[str, Any] = {"gpus": gpus, "arch": arch, "seed": seed, "verbose": not json}
    if home is not None:
        run = run_demo(home=home, output_dir=output_dir, **options)
    else:
        with tempfile.TemporaryDirectory(prefix="ccai-demo-state-") as tmp:
            run = run_demo(home=Path(tmp), output_dir=output_dir, **options)
    if json:
        print_json({"simulated": True, "result": "ok", "output_dir": str(output_dir), "steps": run.steps})
