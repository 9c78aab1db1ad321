"""``ccai verify switch`` and ``ccai attest ppcie`` through the real Typer app."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ccai.cli.__main__ import main
from ccai.cli.app import app
from ccai.token import parse_detached_eat
from ccai.virtual import VirtualFault, VirtualGpuBackend

UT = "nvtrust/NVIDIA_attestation-sdk@73c032e/nv-attestation-sdk-cpp/unit-tests/testdata"
NONCE = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb"
runner = CliRunner()


def _switch_args(vectors: Path, report: str = f"{UT}/switchAttestationReport.txt") -> list[str]:
    return [
        "verify",
        "switch",
        "--report",
        str(vectors / report),
        "--certs",
        str(vectors / f"{UT}/switchCertChain.txt"),
        "--bios-rim",
        str(vectors / f"{UT}/switchVBIOSRim_NV_SWITCH_BIOS_5612_0002_890_9610550001.xml"),
        "--nonce",
        NONCE,
        "--offline",
        "--at",
        "2026-07-01T00:00:00Z",
        "--json",
    ]


def test_verify_switch_real_vector_passes(vectors: Path) -> None:
    result = runner.invoke(app, _switch_args(vectors))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["claims"]["SWITCH-0"]["x-nvidia-switch-bios-version"] == "96.10.55.00.01"
    assert all(row["status"] == "ok" for row in doc["steps"])
    eat = parse_detached_eat(json.dumps(doc["detached_eat"]))
    assert set(eat.submods) == {"SWITCH-0"}


def test_verify_switch_invalid_signature_exits_1(vectors: Path) -> None:
    bad = f"{UT}/sample_attestation_data/switch/switchAttestationReportInvalidSignature.txt"
    result = runner.invoke(app, _switch_args(vectors, bad))
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["error"]["class"] == "SignatureError"
    assert doc["error"]["step"] == "(2) report signature"


def test_attest_ppcie_all_ready_or_none(ccai_home: Path) -> None:
    result = runner.invoke(
        app, ["gpu", "init", "--simulate", "--gpus", "8", "--switches", "4", "--ppcie", "--json"]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["attest", "ppcie", "--simulate", "--set-ready", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert len([k for k in doc["claims"] if k.startswith("SWITCH-")]) == 4
    assert VirtualGpuBackend.open().status().gpus_ready
    for fault in (
        VirtualFault.SWITCH_MISSING,
        VirtualFault.UNKNOWN_SWITCH_PDI,
        VirtualFault.GPU_NOT_PPCIE,
        VirtualFault.SWITCH_MEASUREMENT_DRIFT,
    ):
        VirtualGpuBackend.open().set_ready(True)
        VirtualGpuBackend.open().inject_fault(fault)
        result = runner.invoke(app, ["attest", "ppcie", "--simulate", "--set-ready", "--json"])
        assert result.exit_code == 1, (fault, result.output)
        assert json.loads(result.stdout)["error"]["message"]
        assert not VirtualGpuBackend.open().status().gpus_ready, fault


def test_attest_ppcie_without_switches_is_a_device_error(
    ccai_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    runner.invoke(app, ["gpu", "init", "--simulate", "--gpus", "8", "--ppcie", "--json"])
    monkeypatch.setattr(sys, "argv", ["ccai", "attest", "ppcie", "--simulate", "--json"])
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 4  # a device error, with its reason
    assert "NVSwitch" in json.loads(capsys.readouterr().out)["error"]["message"]
