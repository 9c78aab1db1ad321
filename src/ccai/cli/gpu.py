"""``ccai gpu …``: the GPU CC control plane (docs/gpu-cc-control.md).

Every command acts on the real driver through NVML, or with ``--simulate`` on the virtual CC GPU
whose state lives under ``$CCAI_HOME``. The commands parse arguments and call :mod:`ccai.device`;
nothing NVIDIA-specific is imported before a command runs.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ccai.cli._options import JsonOpt, parse_nonce
from ccai.cli._output import console, print_json, write_output
from ccai.errors import UsageError

if TYPE_CHECKING:
    from ccai.device import CcStatus, GpuBackend

__all__ = ["app", "parse_nonce", "parse_size", "status_to_dict"]

app = typer.Typer(
    name="gpu",
    help="GPU confidential-computing control plane: status, ready state, CC mode, evidence.",
    no_args_is_help=True,
)

SimulateOpt = Annotated[
    bool, typer.Option("--simulate", help="Act on the virtual CC GPU under $CCAI_HOME instead of NVML.")
]

SIMULATED_LABEL = "SIMULATED — virtual CC GPU, test PKI; not evidence of real hardware"


class OnOff(enum.StrEnum):
    """A switch argument."""

    ON = "on"
    OFF = "off"


class ModeChoice(enum.StrEnum):
    """``ccai gpu set-mode`` / ``init --mode`` values (the :class:`~ccai.device.CcMode` values)."""

    ON = "on"
    OFF = "off"
    DEVTOOLS = "devtools"


class ArchChoice(enum.StrEnum):
    """Architectures the virtual CC GPU can play."""

    HOPPER = "hopper"
    BLACKWELL = "blackwell"


# -- helpers shared with `ccai demo` ---------------------------------------------------------------

_SIZE = re.compile(r"(?i)^\s*([0-9]+)\s*(b|kib|mib|gib|tib|k|m|g|t)?\s*$")
_UNITS = {"b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30}
_UNITS |= {"t": 1 << 40, "tib": 1 << 40}


def parse_size(text: str) -> int:
    """Parse a memory size: bytes, or a number with KiB/MiB/GiB/TiB (K/M/G/T are binary too).

    Raises:
        UsageError: not a size.
    """
    match = _SIZE.match(text)
    if match is None:
        raise UsageError(f"not a memory size: {text!r}", hint="use bytes or e.g. 512MiB, 16GiB")
    return int(match.group(1)) * _UNITS[(match.group(2) or "b").lower()]


def status_to_dict(status: CcStatus) -> dict[str, Any]:
    """The JSON form of a :class:`~ccai.device.CcStatus` (the keys ``ccai gpu status --json`` prints).

    Returns:
        A JSON-ready dict; ``cc_feature`` is ``"on"``/``"off"``, ``cc_mode`` adds ``"devtools"``.
    """
    cc_mode = ("devtools" if status.devtools else "on") if status.cc_feature else "off"
    return {
        "simulated": status.simulated,
        "driver_version": status.driver_version,
        "cc_feature": "on" if status.cc_feature else "off",
        "cc_mode": cc_mode,
        "devtools": status.devtools,
        "environment": status.environment,
        "multi_gpu_mode": status.multi_gpu_mode.value,
        "cpu_cc_capability": status.cpu_cc_capability.value,
        "gpu_cc_capable": status.gpu_cc_capable,
        "gpus_ready": status.gpus_ready,
        "key_rotation_threshold": status.key_rotation_threshold,
        "gpus": [
            {
                "index": gpu.index,
                "name": gpu.name,
                "uuid": gpu.uuid,
                "architecture": gpu.architecture.value,
                "vbios_version": gpu.vbios_version,
                "board_id": gpu.board_id,
                "protected_memory_total": gpu.protected_memory_total,
                "protected_memory_used": gpu.protected_memory_used,
                "unprotected_memory_total": gpu.unprotected_memory_total,
                "unprotected_memory_used": gpu.unprotected_memory_used,
            }
            for gpu in status.gpus
        ],
    }


@contextmanager
def open_gpu(*, simulate: bool) -> Iterator[GpuBackend]:
    """Open the real or virtual backend for one command and close it afterwards.

    Raises:
        DriverNotFound: ``simulate`` is False and there is no NVIDIA driver.
        DeviceError: NVML failed to initialise, or the virtual GPU's state cannot be used.
    """
    backend: GpuBackend
    if simulate:
        from ccai.virtual import VirtualGpuBackend

        backend = VirtualGpuBackend.open()
    else:
        from ccai.device import NvmlBackend

        backend = NvmlBackend.open()
    try:
        yield backend
    finally:
        close = getattr(backend, "close", None)
        if callable(close):
            close()


def _fmt_bytes(value: int | None) -> str:
    if value is None:
        return "n/a"
    if value >= 1 << 30:
        return f"{value / (1 << 30):.2f} GiB"
    return f"{value / (1 << 20):.1f} MiB"


def print_status(status: CcStatus, *, label: bool = True) -> None:
    """Print a status the way ``nvidia-smi conf-compute -q`` lays it out, then each GPU.

    Args:
        status: What to print.
        label: Print the SIMULATED banner for a virtual GPU (a caller that already did passes False).
    """
    data = status_to_dict(status)
    if status.simulated and label:
        console.print(f"[bold yellow]{SIMULATED_LABEL}[/]")
    rows = [
        ("Driver version", data["driver_version"]),
        ("CC state", data["cc_feature"].upper()),
        ("DevTools mode", "ON" if status.devtools else "OFF"),
        ("Environment", data["environment"].upper()),
        ("Multi-GPU mode", data["multi_gpu_mode"]),
        ("CPU CC capability", data["cpu_cc_capability"]),
        ("GPU CC capability", "CC capable" if status.gpu_cc_capable else "not CC capable"),
        ("CC GPUs ready state", "ready" if status.gpus_ready else "not ready"),
        (
            "Key rotation threshold",
            "n/a" if status.key_rotation_threshold is None else str(status.key_rotation_threshold),
        ),
    ]
    console.print(_key_values("Confidential computing", rows))
    for gpu in status.gpus:
        gpu_rows = [
            ("Name", gpu.name),
            ("Architecture", gpu.architecture.value),
            ("UUID", gpu.uuid),
            ("VBIOS version", gpu.vbios_version),
            ("Board id", f"{gpu.board_id:#x}"),
            ("Protected memory", _fmt_bytes(gpu.protected_memory_total)),
            ("Protected memory used", _fmt_bytes(gpu.protected_memory_used)),
            ("Unprotected memory", _fmt_bytes(gpu.unprotected_memory_total)),
            ("Unprotected memory used", _fmt_bytes(gpu.unprotected_memory_used)),
        ]
        console.print(_key_values(f"GPU {gpu.index}", gpu_rows))


def _key_values(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, escape(str(value)))
    return table


def _report_change(message: str, backend: GpuBackend, *, json: bool) -> None:
    """After a write: re-read the state, print it (JSON) or a one-line confirmation."""
    status = backend.status()
    if json:
        print_json({"changed": message, "status": status_to_dict(status)})
    else:
        prefix = "[yellow](simulated)[/] " if status.simulated else ""
        console.print(f"{prefix}{message}")


def _require_simulate(simulate: bool, command: str) -> None:
    if not simulate:
        raise UsageError(
            f"`ccai gpu {command}` acts only on the virtual CC GPU; add --simulate",
            hint="on real hardware the GPU is what it is: see `ccai gpu status`",
        )


# -- commands ------------------------------------------------------------------------------------


@app.command("status")
def status_cmd(simulate: SimulateOpt = False, json: JsonOpt = False) -> None:
    """Show the system and per-GPU CC state (what `nvidia-smi conf-compute -q` shows)."""
    with open_gpu(simulate=simulate) as backend:
        status = backend.status()
    if json:
        print_json(status_to_dict(status))
    else:
        print_status(status)


@app.command("init")
def init_cmd(
    *,
    simulate: SimulateOpt = False,
    gpus: Annotated[int, typer.Option("--gpus", min=1, max=8, help="Number of virtual GPUs (1-8).")] = 1,
    arch: Annotated[ArchChoice, typer.Option("--arch", help="GPU architecture.")] = ArchChoice.HOPPER,
    driver_version: Annotated[
        str | None, typer.Option("--driver-version", help="Driver version, e.g. 570.124.06.")
    ] = None,
    vbios_version: Annotated[
        str | None, typer.Option("--vbios-version", help="VBIOS version, e.g. 96.00.9F.00.01.")
    ] = None,
    chip: Annotated[
        str | None, typer.Option("--chip", help="GH100 (Hopper), GB100 (B200) or GB202 (RTX PRO 6000).")
    ] = None,
    mode: Annotated[ModeChoice, typer.Option("--mode", help="CC mode the GPUs boot in.")] = ModeChoice.ON,
    multi_gpu_mode: Annotated[
        str, typer.Option("--multi-gpu-mode", help="none or protected-pcie (Hopper).")
    ] = "none",
    seed: Annotated[
        str | None, typer.Option("--seed", help="Seed of the deterministic test PKI (text; default: public).")
    ] = None,
    switches: Annotated[
        int, typer.Option("--switches", min=0, max=4, help="Virtual NVSwitches (0-4; needs protected PCIe).")
    ] = 0,
    ppcie: Annotated[
        bool, typer.Option("--ppcie", help="Protected-PCIe mode (same as --multi-gpu-mode protected-pcie).")
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Create (or reset) the virtual CC GPUs under $CCAI_HOME. Needs --simulate.

    An HGX-like system: ``--gpus 8 --switches 4 --ppcie``.
    """
    _require_simulate(simulate, "init")
    from ccai.device import Architecture, CcMode, MultiGpuMode
    from ccai.virtual import VirtualGpuBackend

    if ppcie:
        multi_gpu_mode = MultiGpuMode.PROTECTED_PCIE.value
    try:
        multi_gpu = MultiGpuMode(multi_gpu_mode)
    except ValueError:
        raise UsageError(
            f"unknown multi-GPU mode {multi_gpu_mode!r}", hint="none or protected-pcie"
        ) from None
    options: dict[str, Any] = {}
    if driver_version is not None:
        options["driver_version"] = driver_version
    if vbios_version is not None:
        options["vbios_version"] = vbios_version
    if seed is not None:
        options["seed"] = seed
    backend = VirtualGpuBackend.create(
        gpus=gpus,
        architecture=Architecture(arch.value),
        chip=chip.upper() if chip is not None else None,
        mode=CcMode(mode.value),
        multi_gpu_mode=multi_gpu,
        switches=switches,
        **options,
    )
    status = backend.status()
    if json:
        print_json(status_to_dict(status))
    else:
        console.print(
            f"[yellow](simulated)[/] created {gpus} virtual {arch.value} GPU(s)"
            + (f" and {switches} NVSwitch(es)" if switches else "")
            + f", CC mode {mode.value}"
        )
        print_status(status)


@app.command("set-ready")
def set_ready_cmd(
    state: Annotated[OnOff, typer.Argument(help="on: accept client work; off: not ready.")],
    simulate: SimulateOpt = False,
    json: JsonOpt = False,
) -> None:
    """Set the system-wide GPUs-ready state (NVML: needs root and CC on)."""
    with open_gpu(simulate=simulate) as backend:
        backend.set_ready(state is OnOff.ON)
        _report_change(f"GPUs ready state set to {state.value}", backend, json=json)


@app.command("set-mode")
def set_mode_cmd(
    mode: Annotated[ModeChoice, typer.Argument(help="on, off or devtools.")],
    simulate: SimulateOpt = False,
    json: JsonOpt = False,
) -> None:
    """Set the CC mode of every GPU. Virtual GPU only: on real hardware this is a host-side operation."""
    from ccai.device import CcMode

    with open_gpu(simulate=simulate) as backend:
        backend.set_cc_mode(CcMode(mode.value))
        _report_change(f"CC mode set to {mode.value}", backend, json=json)


@app.command("set-unprotected-memory")
def set_unprotected_memory_cmd(
    index: Annotated[int, typer.Argument(help="GPU index.")],
    size: Annotated[str, typer.Argument(help="Size: bytes or e.g. 512MiB, 16GiB.")],
    simulate: SimulateOpt = False,
    json: JsonOpt = False,
) -> None:
    """Set a GPU's unprotected (shared, unencrypted) memory size."""
    size_bytes = parse_size(size)
    with open_gpu(simulate=simulate) as backend:
        backend.set_unprotected_memory(index, size_bytes)
        _report_change(f"GPU {index} unprotected memory set to {_fmt_bytes(size_bytes)}", backend, json=json)


@app.command("set-key-rotation")
def set_key_rotation_cmd(
    threshold: Annotated[int, typer.Argument(help="Maximum attacker advantage, 50-65.")],
    simulate: SimulateOpt = False,
    json: JsonOpt = False,
) -> None:
    """Set the key-rotation threshold (maximum attacker advantage)."""
    with open_gpu(simulate=simulate) as backend:
        backend.set_key_rotation_threshold(threshold)
        _report_change(f"key-rotation threshold set to {threshold}", backend, json=json)


@app.command("inject-fault")
def inject_fault_cmd(
    fault: Annotated[
        str,
        typer.Argument(
            help="wrong-nonce, corrupt-signature, expired-certificate, revoked-certificate, "
            "measurement-drift, or 'none' to clear."
        ),
    ],
    simulate: SimulateOpt = False,
    json: JsonOpt = False,
) -> None:
    """Make the virtual GPU misbehave in one way (for testing verifiers), or clear it with 'none'."""
    _require_simulate(simulate, "inject-fault")
    from ccai.virtual import VirtualFault, VirtualGpuBackend

    if fault.lower() == "none":
        chosen = None
    else:
        try:
            chosen = VirtualFault(fault.lower().replace("_", "-"))
        except ValueError:
            names = ", ".join(f.value for f in VirtualFault)
            raise UsageError(f"unknown fault {fault!r}", hint=f"one of: {names}, none") from None
    backend = VirtualGpuBackend.open()
    backend.inject_fault(chosen)
    message = f"fault {chosen.value} injected" if chosen is not None else "faults cleared"
    if json:
        print_json({"fault": chosen.value if chosen is not None else None, "simulated": True})
    else:
        console.print(f"[yellow](simulated)[/] {message}")


@app.command("evidence")
def evidence_cmd(
    nonce: Annotated[str, typer.Option("--nonce", help="The verifier's nonce: 32 bytes as 64 hex digits.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the evidence JSON.")],
    simulate: SimulateOpt = False,
    json: JsonOpt = False,
) -> None:
    """Collect every GPU's attestation report and certificate chain as NVIDIA's evidence JSON."""
    from ccai.attest import collect_gpu_evidence
    from ccai.evidence import dump_evidence_json

    nonce_bytes = parse_nonce(nonce)
    with open_gpu(simulate=simulate) as backend:
        simulated = backend.status().simulated
        items = collect_gpu_evidence(backend, nonce_bytes)
    write_output(output, dump_evidence_json(items))
    summary = {
        "output": str(output),
        "nonce": nonce_bytes.hex(),
        "simulated": simulated,
        "gpus": [
            {"index": i, "arch": item.arch, "report_size": len(item.report)} for i, item in enumerate(items)
        ],
    }
    if json:
        print_json(summary)
        return
    if simulated:
        console.print(f"[bold yellow]{SIMULATED_LABEL}[/]")
    console.print(f"wrote evidence of {len(items)} GPU(s) for nonce {nonce_bytes.hex()} to {output}")
