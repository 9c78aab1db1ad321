"""``ccai evidence inspect``: people's tables, ``--json`` for scripts, clean errors for bad files."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ccai.cli.__main__ import main
from ccai.cli.app import app
from ccai.evidence import load_report

NVAT_UT = "nvtrust/NVIDIA_attestation-sdk@73c032e/nv-attestation-sdk-cpp/unit-tests/testdata"
SERIALIZED = "nvtrust/NVIDIA_attestation-sdk@73c032e/common-test-data/serialized_test_evidence"
TRU = "nvtrust/confidential-containers_trustee@b28d3fe/deps/verifier/test_data/nvidia"

runner = CliRunner()


def test_inspect_hex_report_text(vectors: Path) -> None:
    result = runner.invoke(
        app, ["evidence", "inspect", str(vectors / NVAT_UT / "hopperAttestationReport.txt")]
    )
    assert result.exit_code == 0, result.output
    # Rich wraps long values across table rows: compare without whitespace and box lines.
    flat = re.sub(r"[\s│┃]", "", result.output)
    for expected in (
        "5bb22e377702d4e1e8215a903ba094826b9ac7f731dee1fe8102958bf2840aca",
        "580.159.03",
        "96.00.74.00.20",
        "NV_GPU_DRIVER_GH100_580.159.03",
        "NV_GPU_VBIOS_1010_0205_862_9600740020",
        "OPAQUE_DATA_VERSION",
        "FEATURE_FLAG",
        "PROTECTED_PCIE_STATUS",
        "not verified",
    ):
        assert expected.replace(" ", "") in flat, expected


def test_inspect_json_of_binary_report(vectors: Path, tmp_path: Path) -> None:
    binary = tmp_path / "report.bin"
    binary.write_bytes(load_report((vectors / TRU / "blackwellAttestationReport.txt").read_bytes()))
    result = runner.invoke(app, ["evidence", "inspect", str(binary), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["format"] == "report"
    (dev,) = doc["devices"]
    assert dev["arch"] == "BLACKWELL"
    assert dev["nonce"] == "4cff7f5380ead8fad8ec2c531c110aca4302a88f603792801a8ca29ee151af2e"
    assert dev["driver_rim_id"] == "NV_GPU_CC_DRIVER_GB202_595.58.03"
    assert dev["vbios_rim_id"] == "NV_GPU_VBIOS_G153_0210_895_9802810001"
    assert dev["measurement_count"] == 64
    assert dev["chip_info"] == "GB202" and dev["nvdec0_status"] == "enabled"
    fields = {f["name"]: f["value"] for f in dev["opaque_fields"]}
    assert len(dev["opaque_fields"]) == 17
    assert fields["DRIVER_VERSION"] == "595.58.03"
    assert fields["CHIP_INFO"] == "GB202"
    assert fields["OPAQUE_DATA_VERSION"] == 1
    assert len(fields["MSRSCNT"]) == 64


def test_inspect_json_of_evidence_json(vectors: Path) -> None:
    result = runner.invoke(
        app, ["evidence", "inspect", "--json", str(vectors / SERIALIZED / "multi_switch_ls10.json")]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["format"] == "nvidia-evidence-json"
    assert len(doc["devices"]) == 4
    for dev in doc["devices"]:
        assert dev["arch"] == dev["declared_arch"] == "LS10"
        assert dev["nonce"] == dev["declared_nonce"]
        assert dev["driver_rim_id"] is None
        assert dev["vbios_rim_id"].startswith("NV_SWITCH_BIOS_5612_0002_890_")
        assert dev["measurement_count"] == 31
        assert len(dev["certificates"]) == 5


def _run_main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["ccai", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    return int(exc.value.code or 0)


@pytest.mark.parametrize(
    ("content", "code", "message"),
    [
        (b"not a report", 1, "MalformedEvidence"),
        (b"[{}]", 1, "lacks arch"),
        (b"11e0", 1, "MalformedEvidence"),
        (None, 2, "not found"),
    ],
)
def test_bad_files_exit_cleanly(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    content: bytes | None,
    code: int,
    message: str,
) -> None:
    path = tmp_path / "input"
    if content is not None:
        path.write_bytes(content)
    assert _run_main(monkeypatch, "evidence", "inspect", str(path)) == code
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_trailing_byte_report_exits_1_with_hint(
    vectors: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run_main(monkeypatch, "evidence", "inspect", str(vectors / TRU / "hopper_coco_report1.txt")) == 1
    err = capsys.readouterr().err
    assert "trailing" in err and "hint" in err and "Traceback" not in err
