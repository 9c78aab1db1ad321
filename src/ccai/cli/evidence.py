"""``ccai evidence …``: look inside evidence files (docs/gpu-evidence-format.md).

``inspect`` parses only: it shows what a report *says*, and verifies nothing (no signature, no
chain, no RIM). The commands parse arguments and call :mod:`ccai.evidence`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from ccai.cli._options import JsonOpt
from ccai.cli._output import console, print_json, read_input

if TYPE_CHECKING:
    from ccai.evidence import AttestationReport, GpuEvidence

__all__ = ["app", "describe_file", "describe_report"]

app = typer.Typer(
    name="evidence",
    help="Inspect attestation evidence (parse only: nothing is verified).",
    no_args_is_help=True,
)

_FEATURE_FLAGS = {
    0: "SPT (single-GPU passthrough)",
    1: "MPT (multi-GPU passthrough)",
    2: "PPCIE (protected PCIe)",
}
_STATUS = {0xAA: "enabled", 0x55: "disabled"}


def _status(value: int | None) -> str | None:
    return None if value is None else _STATUS.get(value, f"0x{value:02x}")


def describe_report(report: AttestationReport) -> dict[str, Any]:
    """The facts ``inspect`` shows for one parsed report, as a JSON-friendly dict.

    Args:
        report: A parsed attestation report.

    Returns:
        Nonce, versions, RIM ids, measurement count and every opaque field (decoded).
    """
    from ccai.errors import EvidenceError
    from ccai.evidence import device_arch, driver_rim_id, vbios_rim_id

    opaque = report.opaque_data

    def derived(fn: Callable[[AttestationReport], str]) -> str | None:
        try:
            return fn(report)
        except EvidenceError:
            return None  # e.g. an NVSwitch has no driver RIM; inspect shows what there is

    feature = opaque.feature_flag
    return {
        "arch": derived(device_arch),
        "nonce": report.nonce.hex(),
        "driver_version": opaque.driver_version,
        "vbios_version": opaque.vbios_version,
        "driver_rim_id": derived(driver_rim_id),
        "vbios_rim_id": derived(vbios_rim_id),
        "measurement_count": len(report.measurements),
        "project": opaque.project,
        "project_sku": opaque.project_sku,
        "chip_sku": opaque.chip_sku,
        "chip_info": opaque.chip_info,
        "opaque_data_version": opaque.opaque_data_version,
        "feature_flag": None if feature is None else _FEATURE_FLAGS.get(feature, str(feature)),
        "nvdec0_status": _status(opaque.nvdec0_status),
        "protected_pcie_status": _status(opaque.protected_pcie_status),
        "fwid": None if opaque.fwid is None else opaque.fwid.hex(),
        "report_size": len(report.raw),
        "signed_size": len(report.signed_bytes),
        "opaque_fields": [
            {"type": f.type, "name": f.name, "size": len(f.value), "value": opaque.json_value(f)}
            for f in opaque
        ],
    }


def _describe_item(item: GpuEvidence) -> dict[str, Any]:
    out = describe_report(item.parse_report())
    out["declared_arch"] = item.arch
    out["declared_nonce"] = item.nonce.hex()
    out["certificates"] = [c.subject.rfc4514_string() for c in item.certificates()]
    return out


def describe_file(data: bytes) -> dict[str, Any]:
    """Parse an evidence file — NVIDIA evidence JSON, or one raw report as hex text or binary.

    Args:
        data: The file contents.

    Returns:
        ``{"format": "nvidia-evidence-json" | "report", "devices": [describe_report(...), ...]}``;
        JSON items also carry ``declared_arch``, ``declared_nonce`` and ``certificates``.

    Raises:
        MalformedEvidence: the file is neither, or what it holds is malformed.
    """
    from ccai.evidence import load_report, parse_attestation_report, parse_evidence_json

    if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"[", b"{"):
        items = parse_evidence_json(data)
        return {"format": "nvidia-evidence-json", "devices": [_describe_item(i) for i in items]}
    report = parse_attestation_report(load_report(data))
    return {"format": "report", "devices": [describe_report(report)]}


def _show(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


@app.command("inspect")
def inspect(
    file: Annotated[
        Path, typer.Argument(help="NVIDIA evidence JSON, or a raw attestation report (hex text or binary).")
    ],
    json_out: JsonOpt = False,
) -> None:
    """Show what an attestation report says: nonce, versions, RIM ids, measurements, opaque fields."""
    summary = describe_file(read_input(file, what="evidence file"))
    if json_out:
        print_json(summary)
        return
    console.print(
        f"[bold]{file}[/]: {summary['format']}, {len(summary['devices'])} device(s) — parsed, not verified"
    )
    for n, dev in enumerate(summary["devices"]):
        facts = Table(title=f"device {n}", show_header=False, title_justify="left")
        facts.add_column("field", style="bold")
        facts.add_column("value", overflow="fold")
        keys = [k for k in dev if k not in ("opaque_fields", "certificates")]
        for key in keys:
            facts.add_row(key, _show(dev[key]))
        for i, subject in enumerate(dev.get("certificates", [])):
            facts.add_row(f"certificate[{i}]", subject)
        console.print(facts)
        fields = Table(
            title=f"device {n}: opaque data ({len(dev['opaque_fields'])} fields)", title_justify="left"
        )
        fields.add_column("type", justify="right")
        fields.add_column("name")
        fields.add_column("size", justify="right")
        fields.add_column("value", overflow="fold")
        for f in dev["opaque_fields"]:
            fields.add_row(str(f["type"]), f["name"], str(f["size"]), _show(f["value"]))
        console.print(fields)
