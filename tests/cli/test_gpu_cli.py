"""``ccai gpu …`` through the real Typer app (CliRunner) and the real entry point (exit codes)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ccai.cli.__main__ import main
from ccai.cli.app import app
from ccai.cli.gpu import open_gpu, parse_nonce, parse_size
from ccai.device import GpuBackend
from ccai.errors import DriverNotFound, NonceMismatch, SignatureError, UsageError
from ccai.evidence import GpuEvidence, parse_evidence_json
from ccai.verify import Verifier
from ccai.virtual import VirtualGpuBackend, virtual_trust_anchors

NONCE = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb"

runner = CliRunner()


def check_report(item: GpuEvidence, nonce: bytes) -> None:
    """The library's evidence-only steps: chain to the test root, signature, contents, nonce."""
    Verifier.simulated(virtual_trust_anchors()).authenticate_gpu([item], nonce=nonce)


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def _status() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(_ok("gpu", "status", "--simulate", "--json"))
    return doc


def _main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """Run the installed entry point in-process: errors become exit codes there."""
    monkeypatch.setattr(sys, "argv", ["ccai", *args])
    with pytest.raises(SystemExit) as info:
        main()
    code = info.value.code
    return code if isinstance(code, int) else 0


# -- status ----------------------------------------------------------------------------------


def test_status_simulate_json_keys() -> None:
    doc = _status()
    for key in (
        "cc_feature",
        "devtools",
        "multi_gpu_mode",
        "gpus_ready",
        "environment",
        "cpu_cc_capability",
        "gpu_cc_capable",
        "key_rotation_threshold",
        "driver_version",
        "simulated",
        "gpus",
    ):
        assert key in doc, key
    assert doc["simulated"] is True
    assert doc["cc_feature"] == "on"
    assert doc["devtools"] is False
    assert doc["gpus_ready"] is False
    (gpu,) = doc["gpus"]
    for key in (
        "index",
        "name",
        "uuid",
        "architecture",
        "vbios_version",
        "board_id",
        "protected_memory_total",
    ):
        assert key in gpu, key
    assert gpu["index"] == 0 and gpu["architecture"] == "hopper"


def test_status_simulate_text_is_labelled() -> None:
    out = _ok("gpu", "status", "--simulate")
    assert "SIMULATED" in out
    assert "CC state" in out and "ON" in out
    assert "GPU 0" in out


# -- state persists across invocations ---------------------------------------------------------


def test_init_persists() -> None:
    _ok("gpu", "init", "--simulate", "--gpus", "2", "--arch", "blackwell", "--mode", "devtools")
    doc = _status()
    assert [g["architecture"] for g in doc["gpus"]] == ["blackwell", "blackwell"]
    assert doc["cc_feature"] == "on" and doc["devtools"] is True and doc["cc_mode"] == "devtools"


def test_init_options_reach_the_virtual_gpu() -> None:
    _ok("gpu", "init", "--simulate", "--driver-version", "575.51.02", "--vbios-version", "96.00.74.00.11")
    doc = _status()
    assert doc["driver_version"] == "575.51.02"
    assert doc["gpus"][0]["vbios_version"] == "96.00.74.00.11"


def test_init_needs_simulate() -> None:
    result = runner.invoke(app, ["gpu", "init"])
    assert isinstance(result.exception, UsageError)


def test_set_mode_and_ready_persist() -> None:
    _ok("gpu", "init", "--simulate")
    _ok("gpu", "set-ready", "on", "--simulate")
    assert _status()["gpus_ready"] is True
    _ok("gpu", "set-mode", "off", "--simulate")
    doc = _status()
    assert doc["cc_feature"] == "off" and doc["gpus_ready"] is False
    _ok("gpu", "set-mode", "devtools", "--simulate")
    doc = _status()
    assert doc["cc_feature"] == "on" and doc["devtools"] is True


def test_set_unprotected_memory_and_key_rotation_persist() -> None:
    _ok("gpu", "init", "--simulate")
    out = json.loads(_ok("gpu", "set-unprotected-memory", "0", "1GiB", "--simulate", "--json"))
    assert out["status"]["gpus"][0]["unprotected_memory_total"] == 1 << 30
    _ok("gpu", "set-key-rotation", "60", "--simulate")
    doc = _status()
    assert doc["key_rotation_threshold"] == 60
    assert doc["gpus"][0]["unprotected_memory_total"] == 1 << 30


def test_set_key_rotation_out_of_range_is_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _main(monkeypatch, "gpu", "set-key-rotation", "70", "--simulate") == 2


# -- evidence ------------------------------------------------------------------------------------


def test_evidence_simulate_writes_parseable_json(tmp_path: Path) -> None:
    _ok("gpu", "init", "--simulate", "--gpus", "2")
    out = tmp_path / "evidence.json"
    summary = json.loads(_ok("gpu", "evidence", "--nonce", NONCE, "-o", str(out), "--simulate", "--json"))
    assert summary["simulated"] is True and len(summary["gpus"]) == 2
    items = parse_evidence_json(out.read_bytes())
    assert [item.arch for item in items] == ["HOPPER", "HOPPER"]
    for item in items:
        assert item.nonce == bytes.fromhex(NONCE)
        check_report(item, bytes.fromhex(NONCE))
    assert not list(tmp_path.glob(".*.tmp"))


def test_evidence_blackwell_arch_string(tmp_path: Path) -> None:
    _ok("gpu", "init", "--simulate", "--arch", "blackwell")
    out = tmp_path / "e.json"
    _ok("gpu", "evidence", "--nonce", NONCE, "-o", str(out), "--simulate")
    (item,) = parse_evidence_json(out.read_bytes())
    assert item.arch == "BLACKWELL"


def test_injected_faults_reach_the_evidence(tmp_path: Path) -> None:
    _ok("gpu", "init", "--simulate")
    out = tmp_path / "e.json"
    nonce = bytes.fromhex(NONCE)

    _ok("gpu", "inject-fault", "corrupt-signature", "--simulate")
    _ok("gpu", "evidence", "--nonce", NONCE, "-o", str(out), "--simulate")
    (item,) = parse_evidence_json(out.read_bytes())
    with pytest.raises(SignatureError):
        check_report(item, nonce)

    _ok("gpu", "inject-fault", "wrong-nonce", "--simulate")
    _ok("gpu", "evidence", "--nonce", NONCE, "-o", str(out), "--simulate")
    (item,) = parse_evidence_json(out.read_bytes())
    with pytest.raises(NonceMismatch):
        check_report(item, nonce)

    _ok("gpu", "inject-fault", "none", "--simulate")
    _ok("gpu", "evidence", "--nonce", NONCE, "-o", str(out), "--simulate")
    (item,) = parse_evidence_json(out.read_bytes())
    check_report(item, nonce)


def test_unknown_fault_is_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _main(monkeypatch, "gpu", "inject-fault", "melt", "--simulate") == 2


def test_evidence_with_cc_off_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _ok("gpu", "init", "--simulate", "--mode", "off")
    out = tmp_path / "e.json"
    assert _main(monkeypatch, "gpu", "evidence", "--nonce", NONCE, "-o", str(out), "--simulate") == 4
    assert not out.exists()


@pytest.mark.parametrize("nonce", ["00", NONCE[:-1], NONCE + "00", "zz" * 32, ""])
def test_bad_nonce_exits_2(nonce: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    out = tmp_path / "e.json"
    code = _main(monkeypatch, "gpu", "evidence", "--nonce", nonce, "-o", str(out), "--simulate")
    assert code == 2
    assert "32 bytes" in capsys.readouterr().err
    assert not out.exists()


# -- without an NVIDIA driver (this machine has none) -------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("gpu", "status"),
        ("gpu", "status", "--json"),
        ("gpu", "set-ready", "on"),
        ("gpu", "set-mode", "on"),
        ("gpu", "evidence", "--nonce", NONCE, "-o", "unused.json"),
    ],
)
def test_no_driver_exits_4_with_one_line(
    args: tuple[str, ...], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    assert _main(monkeypatch, *args) == 4
    captured = capsys.readouterr()
    if "--json" in args:  # the one JSON document is the error
        assert json.loads(captured.out)["error"] == {
            "class": "DriverNotFound",
            "message": "no NVIDIA driver found (NVML library missing); use --simulate for the virtual CC GPU",
            "exit_code": 4,
        }
    else:
        assert captured.out == ""
    # One message on one line: no detail lines, and not folded at the (80-column) console width.
    assert captured.err.count("\n") == 1, captured.err
    text = captured.err.strip()
    assert text.count("error:") == 1
    assert "actual:" not in text and "hint:" not in text
    assert "DriverNotFound: no NVIDIA driver found (NVML library missing); use --simulate" in text


# -- argument parsers -----------------------------------------------------------------------------


def test_parse_nonce() -> None:
    assert parse_nonce(NONCE.upper()) == bytes.fromhex(NONCE)
    with pytest.raises(UsageError):
        parse_nonce("0x" + NONCE[2:])


@pytest.mark.parametrize(
    ("text", "size"),
    [("0", 0), ("4096", 4096), ("4KiB", 4096), ("512MiB", 512 << 20), ("16GiB", 16 << 30), ("2g", 2 << 30)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "-1", "1.5GiB", "12 parsecs"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_size(text)


def test_open_gpu_picks_the_implementation() -> None:
    with pytest.raises(DriverNotFound), open_gpu(simulate=False):
        pass
    with open_gpu(simulate=True) as backend:
        assert isinstance(backend, VirtualGpuBackend)
        assert isinstance(backend, GpuBackend)
        assert backend.status().simulated is True
