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


def test_attest_switches_round_trip_through_verify(ccai_home: Path, tmp_path: Path) -> None:
    """``ccai attest --switches`` puts the virtual HGX's switches into the bundle; ``ccai verify`` checks
    them (PPCIe mode, topology) and a policy demanding PPCIe passes it, not a bundle without them."""
    runner.invoke(app, ["gpu", "init", "--simulate", "--gpus", "8", "--switches", "4", "--ppcie", "--json"])
    nonce = "5a" * 32
    policy = tmp_path / "ppcie.json"
    policy.write_text(json.dumps({"format": "ccai-policy/1", "allow_simulated": True, "ppcie": {}}))
    bundles = {}
    for name, extra in (("hgx", ["--switches"]), ("plain", [])):
        bundles[name] = tmp_path / f"{name}.json"
        result = runner.invoke(
            app,
            [
                *("attest", "--simulate", "tdx", "--nonce", nonce, "--with-collateral"),
                *("-o", str(bundles[name]), *extra, "--json"),
            ],
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["switches"] == (4 if extra else 0)
    verify = ["verify", str(bundles["hgx"]), "--nonce", nonce, "--allow-simulated", "--json"]
    result = runner.invoke(app, [*verify, "--policy", str(policy)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["result"] == "pass"
    assert "4 NVSwitch(es), PPCIe mode and topology ok" in doc["steps"][3]["detail"]
    assert sorted(k for k in doc["claims"] if k.startswith("SWITCH-")) == [f"SWITCH-{i}" for i in range(4)]
    assert doc["claims"]["overall"]["x-ccai-ppcie"]["topology"] == "verified"
    # Another nonce fails; the bundle without switches fails the PPCIe policy (fails closed).
    result = runner.invoke(app, [*verify[:3], "ab" * 32, *verify[4:]])
    assert result.exit_code == 1
    result = runner.invoke(
        app,
        [
            "verify",
            str(bundles["plain"]),
            "--nonce",
            nonce,
            "--allow-simulated",
            "--json",
            "--policy",
            str(policy),
        ],
    )
    assert result.exit_code == 1
    assert "NVSwitch" in json.loads(result.stdout)["error"]["message"]


@pytest.mark.parametrize("nscq", [None, "libnvidia-nscq.so.2"])
def test_attest_switches_on_real_hardware_needs_nscq(
    ccai_home: Path,
    tmp_path: Path,
    nscq: str | None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without ``--simulate`` the switches come through NSCQ: exit 4 with the reason (not installed,
    or found but not loadable), before NVML or the TEE is touched. Collection through a loadable
    NSCQ library: tests/device/test_nscq.py."""
    import ctypes.util

    real = ctypes.util.find_library
    monkeypatch.delenv("CCAI_NSCQ_LIBRARY", raising=False)
    monkeypatch.setattr(
        ctypes.util, "find_library", lambda name: nscq if name == "nvidia-nscq" else real(name)
    )
    out = tmp_path / "b.json"
    argv = ["ccai", "attest", "--switches", "--nonce", "5a" * 32, "-o", str(out), "--json"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as info:
        main()
    assert info.value.code == 4
    error = json.loads(capsys.readouterr().out)["error"]
    assert "NSCQ" in error["message"]
    assert error["class"] == "DriverNotFound"
    assert ("could not be loaded" in error["message"]) == (nscq is not None)
    assert not out.exists()
