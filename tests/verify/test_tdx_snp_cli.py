"""``ccai verify tdx`` / ``ccai verify snp`` end to end: exit codes, JSON output, step tables."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ccai.cli.__main__ import main

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    """Run ``ccai ARGS…`` through the real entry point; return (exit code, stdout, stderr)."""

    def _run(*args: object) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["ccai", *map(str, args)])
        with pytest.raises(SystemExit) as info:
            main()
        out = capsys.readouterr()
        code = info.value.code
        return (code if isinstance(code, int) else 0), out.out, out.err

    return _run


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "table"])
def test_tdx_pass(vectors: Path, run: Run, as_json: bool) -> None:
    v = vectors / "cpu/tdx/dcap-qvl"
    args = ["verify", "tdx", v / "tdx_quote", "--collateral", v / "tdx_quote_collateral.json"]
    code, out, _ = run(*args, "--at", "2025-06-20T00:00:00Z", *(["--json"] if as_json else []))
    assert code == 0
    if as_json:
        doc = json.loads(out)
        assert doc["result"] == "pass"
        assert doc["claims"]["tcb_status"] == "UpToDate"
        assert [s["status"] for s in doc["steps"]].count("ok") == 10
    else:
        assert "✓" in out and "(9) TCB level" in out and "PASS" in out


def test_tdx_debug_fails_exit_1(vectors: Path, run: Run) -> None:
    code, out, err = run(
        "verify",
        "tdx",
        vectors / "cpu/tdx/trustee/tdx_quote_4.dat",
        "--collateral",
        vectors / "cpu/tdx/go-tdx-guest/collateral_v4_assembled.json",
        "--at",
        "2023-07-01T01:00:00Z",
        "--json",
    )
    assert code == 1
    doc = json.loads(out)
    assert doc["result"] == "error"
    assert doc["error"]["class"] == "PolicyViolation"
    assert doc["steps"][-1] == {
        "step": "(11) policy",
        "status": "failed",
        "detail": "PolicyViolation: TD is a debug TD (TDATTRIBUTES.DEBUG set)",
    }
    assert "debug TD" in err


def test_tdx_without_collateral_exit_3(vectors: Path, run: Run) -> None:
    code, _, err = run("verify", "tdx", vectors / "cpu/tdx/dcap-qvl/tdx_quote", "--at", "2025-06-20")
    assert code == 3
    assert "CollateralUnavailable" in err


def test_tdx_signatures_only_with_ccel(vectors: Path, run: Run) -> None:
    base = vectors / "cpu/tdx/go-tdx-guest/ccel"
    code, out, _ = run(
        "verify",
        "tdx",
        base / "cos-113-tdx-quote.dat",
        "--signatures-only",
        "--event-log",
        base / "ccel_data.dat",
        "--at",
        "2025-01-01T00:00:00Z",
        "--json",
    )
    assert code == 0
    assert json.loads(out)["claims"]["x-ccai-event-log-replayed"] is True


@pytest.mark.parametrize("nested", [False, True], ids=["TdxPolicy-fields", "bundle-layout"])
def test_tdx_hex_json_quote_and_policy(
    vectors: Path,
    tmp_path: Path,
    run: Run,
    nested: bool,
) -> None:
    tdx = {"mr_td": ["00" * 48]}
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"tdx": tdx, "snp": {}} if nested else tdx))
    code, out, _ = run(
        "verify",
        "tdx",
        vectors / "cpu/tdx/dstack/quote-report.json",
        "--collateral",
        vectors / "cpu/tdx/dcap-qvl/tdx_quote_outdated_collateral.json",
        "--at",
        "2026-02-20T00:00:00Z",
        "--policy",
        policy,
        "--json",
    )
    assert code == 1
    assert json.loads(out)["error"]["class"] == "MeasurementMismatch"


def test_tdx_bad_usage_exit_2(tmp_path: Path, run: Run) -> None:
    code, _, _ = run("verify", "tdx", tmp_path / "missing.dat")
    assert code == 2
    code, _, _ = run("verify", "tdx", tmp_path, "--at", "yesterday")
    assert code == 2


def test_snp_pass_and_hex(vectors: Path, run: Run) -> None:
    v = vectors / "cpu/snp/virtee-sev"
    args = [
        "verify",
        "snp",
        v / "report_milan.hex",
        "--vcek",
        v / "vcek_milan.der",
        "--chain",
        vectors / "cpu/roots/amd/ask_ark_milan.pem",
        "--at",
        "2025-01-01",
        "--json",
    ]
    # No ARK CRL: revocation is unchecked, which the default policy refuses (collateral: exit 3).
    code, out, err = run(*args)
    assert code == 3
    assert json.loads(out)["steps"][-1]["status"] == "failed"
    assert "revocation was not checked" in err
    code, out, _ = run(*args, "--allow-unchecked-revocation")
    assert code == 0
    doc = json.loads(out)
    assert doc["claims"]["reported_tcb"] == {"blSPL": 3, "teeSPL": 0, "snpSPL": 8, "ucodeSPL": 115}


def test_snp_azure_offset(vectors: Path, run: Run) -> None:
    v = vectors / "cpu/snp/trustee/az-snp-vtpm-genoa"
    code, out, _ = run(
        "verify",
        "snp",
        v / "hcl-report.bin",
        "--offset",
        "32",
        "--vcek",
        v / "vcek.pem",
        "--at",
        "2025-06-01",
        "--allow-unchecked-revocation",
    )
    assert code == 0
    assert "Genoa" in out and "PASS" in out


def test_snp_debug_policy_exit_1(vectors: Path, run: Run) -> None:
    v = vectors / "cpu/snp/go-sev-guest"
    code, out, _ = run(
        "verify",
        "snp",
        v / "attestation.bin",
        "--vcek",
        v / "vcek.testcer",
        "--at",
        "2025-01-01",
    )
    assert code == 1
    assert "✗" in out and "(6) policy" in out


def test_snp_without_vcek_exit_3(vectors: Path, run: Run) -> None:
    code, _, _ = run("verify", "snp", vectors / "cpu/snp/teekit/sev-gcp.bin", "--at", "2026-01-01")
    assert code == 3
