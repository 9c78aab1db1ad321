"""Every TDX vector in tests/vectors/cpu/manifest.json gives its expected result at its pinned time,
plus collateral windows, event-log replay, the real report_data bindings and policy checks."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ccai.collateral import TdxCollateral, tdx_collateral_from_json
from ccai.errors import (
    BindingError,
    CollateralError,
    CollateralUnavailable,
    MeasurementMismatch,
    PolicyViolation,
    TcbError,
    UsageError,
)
from ccai.evidence import parse_ccel, parse_json_event_log, parse_tdx_quote
from ccai.verify import TDX_STEPS, TdxVerified, load_policy, replay_rtmrs, tdx_rules, verify_tdx_quote


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _manifest(vectors: Path) -> dict[str, Any]:
    return {v["id"]: v for v in json.loads((vectors / "cpu" / "manifest.json").read_text())["vectors"]}


def _load_quote(path: Path) -> bytes:
    raw = path.read_bytes()
    if path.name == "quote-report.json":
        return bytes.fromhex(json.loads(raw)["quote"])
    if path.name == "tdx-v4-gcp.json":
        return base64.b64decode(json.loads(raw)["tdx"]["quote"])
    if path.suffix == ".txt":
        return bytes.fromhex(raw.decode().strip())
    return raw


def _vector(vectors: Path, vid: str) -> tuple[bytes, TdxCollateral | None, datetime]:
    v = _manifest(vectors)[vid]
    files = [vectors / "cpu" / f["path"] for f in v["files"]]
    quote = _load_quote(files[0])
    coll = [f for f in files if f.suffix == ".json" and "collateral" in f.name]
    collateral = tdx_collateral_from_json(coll[0].read_text()) if coll else None
    return quote, collateral, _at(v["verify_time"])


TDX_IDS = [
    "tdx-dcapqvl-v4-uptodate",
    "tdx-dcapqvl-v5-notsupported",
    "tdx-dstack-v4-eventlog",
    "tdx-gtg-v4-spr-e4",
    "tdx-gtg-v5",
    "tdx-gtg-cos113-ccel",
    "tdx-trustee-v4-debug",
    "tdx-trustee-v5",
    "tdx-trustee-v4-q6",
    "tdx-azure-vtpm",
    "tdx-gcp-ita-nonce",
]


def test_manifest_lists_exactly_these_tdx_vectors(vectors: Path) -> None:
    assert sorted(k for k in _manifest(vectors) if k.startswith("tdx-")) == sorted(TDX_IDS)


@pytest.mark.parametrize("vid", ["tdx-dcapqvl-v4-uptodate", "tdx-dstack-v4-eventlog", "tdx-gtg-v5"])
def test_full_collateral_uptodate(vectors: Path, vid: str) -> None:
    quote, collateral, now = _vector(vectors, vid)
    expect = _manifest(vectors)[vid]["expect"]
    result = verify_tdx_quote(quote, collateral, now=now)
    assert isinstance(result, TdxVerified)
    assert result.claims["tcb_status"] == "UpToDate"
    assert result.claims["advisory_ids"] == []
    assert result.claims["fmspc"] == expect["fmspc"]
    assert result.claims["version"] == expect["quote_version"]
    assert result.claims["debug"] is False
    assert result.claims["x-ccai-tcb-days-behind"] == 0
    assert result.tcb is not None and result.tcb.qe_status == "UpToDate"
    assert result.tcb.tdx_module_id == "TDX_01" and result.tcb.tdx_module_status == "UpToDate"
    assert [s for s, _ in result.steps] == list(TDX_STEPS)


@pytest.mark.parametrize(
    ("vid", "first_miss"),
    [
        ("tdx-dcapqvl-v5-notsupported", "component[7]=3 < 5"),
        ("tdx-gtg-v4-spr-e4", "component[0]=3 < 5"),
        ("tdx-trustee-v5", "component[0]=1 < 2"),
    ],
)
def test_no_matching_tcb_level(vectors: Path, vid: str, first_miss: str) -> None:
    quote, collateral, now = _vector(vectors, vid)
    trace: list[tuple[str, str]] = []
    lenient = tdx_rules(accepted_tcb_statuses=frozenset({"UpToDate", "OutOfDate"}), allow_trailing_data=True)
    with pytest.raises(TcbError, match="NotSupported") as info:
        verify_tdx_quote(quote, collateral, now=now, policy=lenient, trace=trace)
    assert info.value.step == "(9) TCB level"
    assert first_miss in str(info.value.actual)
    # Every cryptographic step before the TCB evaluation passed.
    assert [s for s, _ in trace] == list(TDX_STEPS[:8])


def test_debug_td_rejected_by_default(vectors: Path) -> None:
    quote, collateral, now = _vector(vectors, "tdx-trustee-v4-debug")
    with pytest.raises(PolicyViolation, match="debug TD") as info:
        verify_tdx_quote(quote, collateral, now=now)
    assert info.value.step == "(11) policy"
    # With the debug switch the same quote verifies, and the TCB is UpToDate.
    result = verify_tdx_quote(quote, collateral, now=now, policy=tdx_rules(allow_debug=True))
    assert result.claims["debug"] is True
    assert result.claims["tcb_status"] == "UpToDate"


def test_q6_partial_collateral_outofdate(vectors: Path) -> None:
    quote, collateral, now = _vector(vectors, "tdx-trustee-v4-q6")
    assert collateral is not None and collateral.pck_crl is None
    with pytest.raises(CollateralUnavailable, match="PCK CRL"):
        verify_tdx_quote(quote, collateral, now=now)
    with pytest.raises(TcbError, match="OutOfDate") as info:
        verify_tdx_quote(quote, collateral, now=now, policy=tdx_rules(allow_missing_pck_crl=True))
    assert info.value.step == "(11) policy"
    result = verify_tdx_quote(
        quote,
        collateral,
        now=now,
        policy=tdx_rules(allow_missing_pck_crl=True, accepted_tcb_statuses=frozenset({"OutOfDate"})),
    )
    assert result.tcb is not None
    assert (result.tcb.status, result.tcb.platform_status) == ("OutOfDate", "OutOfDate")
    assert (result.tcb.tdx_module_id, result.tcb.tdx_module_status, result.tcb.qe_status) == (
        "TDX_03",
        "UpToDate",
        "UpToDate",
    )
    assert result.claims["tee_tcb_svn"] == "05030200000000000000000000000000"
    assert result.claims["x-ccai-tcb-days-behind"] > 0
    assert result.pck_extensions.pcesvn == 11


@pytest.mark.parametrize("vid", ["tdx-gtg-cos113-ccel", "tdx-azure-vtpm", "tdx-gcp-ita-nonce"])
def test_signatures_only_vectors(vectors: Path, vid: str) -> None:
    quote, collateral, now = _vector(vectors, vid)
    assert collateral is None
    with pytest.raises(CollateralUnavailable):
        verify_tdx_quote(quote, None, now=now)
    result = verify_tdx_quote(quote, None, now=now, policy=tdx_rules(allow_missing_collateral=True))
    assert result.tcb is None
    assert result.claims["x-ccai-tcb-evaluated"] is False
    assert result.claims["fmspc"] == _manifest(vectors)[vid]["expect"]["fmspc"]
    assert dict(result.steps)["(7) TCB Info"].startswith("skipped")


def test_composite_secretvm_quote_signatures(vectors: Path) -> None:
    quote = _load_quote(vectors / "cpu/composite/secretvm/cpu_quote.txt")
    result = verify_tdx_quote(
        quote, None, now=_at("2026-03-01T00:00:00Z"), policy=tdx_rules(allow_missing_collateral=True)
    )
    gpu = json.loads((vectors / "cpu/composite/secretvm/gpu_attest.txt").read_text())
    report_data = bytes.fromhex(result.claims["report_data"])
    assert report_data[32:] == bytes.fromhex(gpu["nonce"])
    evidence = base64.b64decode(gpu["evidence_list"][0]["evidence"])
    assert evidence[4:36] == report_data[32:]  # SPDM request nonce


def test_window_edges(vectors: Path) -> None:
    quote, collateral, _ = _vector(vectors, "tdx-dcapqvl-v4-uptodate")
    start, end = (_at(t) for t in _manifest(vectors)["tdx-dcapqvl-v4-uptodate"]["valid_window"])
    verify_tdx_quote(quote, collateral, now=start)
    verify_tdx_quote(quote, collateral, now=end)
    with pytest.raises(CollateralUnavailable, match="issue date is in the future"):
        verify_tdx_quote(quote, collateral, now=start - timedelta(seconds=1))
    # After the window a CRL or the TCB Info has expired: never "evidence invalid".
    with pytest.raises(CollateralError) as info:
        verify_tdx_quote(quote, collateral, now=end + timedelta(seconds=1))
    assert info.value.step in ("(3) CRLs and revocation", "(7) TCB Info", "(8) QE Identity")


def test_collateral_for_another_platform(vectors: Path) -> None:
    quote, _, _ = _vector(vectors, "tdx-dcapqvl-v4-uptodate")  # FMSPC b0c06f000000
    _, other, other_now = _vector(vectors, "tdx-dcapqvl-v5-notsupported")  # FMSPC 90c06f000000
    with pytest.raises(CollateralUnavailable, match="another platform") as info:
        verify_tdx_quote(quote, other, now=other_now)
    assert info.value.step == "(7) TCB Info"


def test_dstack_event_log_replays(vectors: Path) -> None:
    quote, collateral, now = _vector(vectors, "tdx-dstack-v4-eventlog")
    doc = json.loads((vectors / "cpu/tdx/dstack/quote-report.json").read_text())
    events = parse_json_event_log(doc["event_log"])
    result = verify_tdx_quote(quote, collateral, now=now, event_log=events)
    assert result.claims["x-ccai-event-log-replayed"] is True
    assert result.claims["report_data"].startswith("1234")
    # A changed digest breaks the replay of that RTMR.
    bad = list(events)
    bad[-1] = replace(bad[-1], digest=bytes(48))
    with pytest.raises(MeasurementMismatch, match="RTMR") as info:
        verify_tdx_quote(quote, collateral, now=now, event_log=bad)
    assert info.value.step == "(10) event log replay"


def test_ccel_replays_rtmr0_to_3_and_nonce(vectors: Path) -> None:
    quote, _, now = _vector(vectors, "tdx-gtg-cos113-ccel")
    base = vectors / "cpu/tdx/go-tdx-guest/ccel"
    events = parse_ccel((base / "ccel_data.dat").read_bytes())
    parsed = parse_tdx_quote(quote)
    assert replay_rtmrs(events) == parsed.body.rtmrs
    nonce = (base / "nonce.dat").read_bytes()
    policy = tdx_rules(allow_missing_collateral=True, require_event_log=True, report_data=nonce)
    result = verify_tdx_quote(quote, None, now=now, policy=policy, event_log=events)
    assert result.claims["report_data"] == nonce.hex()
    with pytest.raises(PolicyViolation, match="event log"):
        verify_tdx_quote(quote, None, now=now, policy=policy)
    other = tdx_rules(allow_missing_collateral=True, require_event_log=True, report_data=b"\x01" * 64)
    with pytest.raises(BindingError, match="REPORTDATA"):
        verify_tdx_quote(quote, None, now=now, policy=other, event_log=events)


def test_azure_hcl_binding(vectors: Path) -> None:
    quote, _, now = _vector(vectors, "tdx-azure-vtpm")
    hcl = (vectors / "cpu/tdx/trustee/az-tdx-vtpm/hcl-report.bin").read_bytes()
    (length,) = struct.unpack_from("<I", hcl, 1232)
    claims_json = hcl[1236 : 1236 + length]
    result = verify_tdx_quote(quote, None, now=now, policy=tdx_rules(allow_missing_collateral=True))
    assert bytes.fromhex(result.claims["report_data"])[:32] == hashlib.sha256(claims_json).digest()


def test_gcp_ita_binding(vectors: Path) -> None:
    quote, _, now = _vector(vectors, "tdx-gcp-ita-nonce")
    nonce = json.loads((vectors / "cpu/tdx/teekit/tdx-v4-gcp.json").read_text())["tdx"]["verifier_nonce"]
    expected = hashlib.sha512(base64.b64decode(nonce["val"]) + base64.b64decode(nonce["iat"])).digest()
    policy = tdx_rules(allow_missing_collateral=True, report_data=expected)
    assert verify_tdx_quote(quote, None, now=now, policy=policy).claims["report_data"] == expected.hex()


def test_reference_value_policy(vectors: Path) -> None:
    quote, collateral, now = _vector(vectors, "tdx-dcapqvl-v4-uptodate")
    body = parse_tdx_quote(quote).body
    ok = tdx_rules(
        mr_td=frozenset({body.mr_td}), rtmr0=frozenset({body.rtmr0}), rtmr3=frozenset({body.rtmr3})
    )
    verify_tdx_quote(quote, collateral, now=now, policy=ok)
    with pytest.raises(MeasurementMismatch, match="MRTD"):
        verify_tdx_quote(quote, collateral, now=now, policy=tdx_rules(mr_td=frozenset({bytes(48)})))
    with pytest.raises(MeasurementMismatch, match="RTMR2"):
        verify_tdx_quote(quote, collateral, now=now, policy=tdx_rules(rtmr2=frozenset()))
    with pytest.raises(PolicyViolation, match="SEPT_VE_DISABLE"):
        azure, _, anow = _vector(vectors, "tdx-azure-vtpm")
        verify_tdx_quote(
            azure,
            None,
            now=anow,
            policy=tdx_rules(allow_missing_collateral=True, require_sept_ve_disable=True),
        )


def test_trailing_non_zero_bytes_are_a_policy_decision(vectors: Path) -> None:
    quote, collateral, now = _vector(vectors, "tdx-dcapqvl-v4-uptodate")
    tampered = quote + b"junk"
    with pytest.raises(PolicyViolation, match="non-zero bytes follow"):
        verify_tdx_quote(tampered, collateral, now=now)
    verify_tdx_quote(tampered, collateral, now=now, policy=tdx_rules(allow_trailing_data=True))


def test_policy_from_mapping() -> None:
    policy = load_policy(
        {"tdx": {"accepted_tcb_statuses": ["UpToDate", "SWHardeningNeeded"], "mr_td": ["00" * 48]}},
        part="cpu",
    )
    assert "mr_td in an allow-list of 1" in policy.describe()
    with pytest.raises(UsageError, match=r"unknown key 'cpu\.tdx\.mrtd'"):
        load_policy({"tdx": {"mrtd": []}})
    with pytest.raises(UsageError, match="48 bytes"):
        load_policy({"tdx": {"mr_td": ["00"]}})
    with pytest.raises(UsageError, match="status"):
        tdx_rules(accepted_tcb_statuses=frozenset({"Fine"}))


def test_naive_time_is_usage_error(vectors: Path) -> None:
    quote, collateral, _ = _vector(vectors, "tdx-dcapqvl-v4-uptodate")
    with pytest.raises(UsageError):
        verify_tdx_quote(quote, collateral, now=datetime(2025, 6, 20))


def test_verified_cannot_be_forged(vectors: Path) -> None:
    quote, collateral, now = _vector(vectors, "tdx-dcapqvl-v4-uptodate")
    real = verify_tdx_quote(quote, collateral, now=now)
    with pytest.raises(UsageError):
        TdxVerified(
            quote=real.quote,
            claims={},
            tcb=None,
            pck_extensions=real.pck_extensions,
            verified_at=datetime.now(UTC),
            steps=(),
        )


def test_collateral_json_round_trip(vectors: Path) -> None:
    _, collateral, _ = _vector(vectors, "tdx-dcapqvl-v4-uptodate")
    assert collateral is not None
    assert tdx_collateral_from_json(json.dumps(collateral.to_json())) == collateral
