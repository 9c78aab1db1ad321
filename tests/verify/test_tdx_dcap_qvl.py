"""Cross-check: ccai's TDX results agree with dcap-qvl (Phala, PyPI) on every TDX vector with full
collateral (dcap-qvl needs the PCK CRL, so the partial-collateral and signatures-only vectors are out
of its reach)."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from pathlib import Path

import pytest

from ccai.collateral import tdx_collateral_from_json
from ccai.errors import PolicyViolation, TcbError
from ccai.verify import tdx_rules, verify_tdx_quote

dcap_qvl = pytest.importorskip(
    "dcap_qvl", reason="the dcap-qvl oracle is part of the [dev] extra: pip install 'ccai[dev]'"
)

# (manifest id, quote file, collateral file)
CASES = [
    ("tdx-dcapqvl-v4-uptodate", "tdx/dcap-qvl/tdx_quote", "tdx/dcap-qvl/tdx_quote_collateral.json"),
    (
        "tdx-dcapqvl-v5-notsupported",
        "tdx/dcap-qvl/tdx_quote_outdated",
        "tdx/dcap-qvl/tdx_quote_outdated_collateral.json",
    ),
    (
        "tdx-dstack-v4-eventlog",
        "tdx/dstack/quote-report.json",
        "tdx/dcap-qvl/tdx_quote_outdated_collateral.json",
    ),
    (
        "tdx-gtg-v4-spr-e4",
        "tdx/go-tdx-guest/tdx_prod_quote_SPR_E4.dat",
        "tdx/go-tdx-guest/collateral_v4_assembled.json",
    ),
    ("tdx-gtg-v5", "tdx/go-tdx-guest/quote_v5_sample.dat", "tdx/dcap-qvl/tdx_quote_outdated_collateral.json"),
    ("tdx-trustee-v4-debug", "tdx/trustee/tdx_quote_4.dat", "tdx/go-tdx-guest/collateral_v4_assembled.json"),
    ("tdx-trustee-v5", "tdx/trustee/tdx_quote_5.dat", "tdx/dcap-qvl/tdx_quote_outdated_collateral.json"),
]


def _quote(path: Path) -> bytes:
    if path.name == "quote-report.json":
        return bytes.fromhex(json.loads(path.read_text())["quote"])
    if path.suffix == ".json":
        return base64.b64decode(json.loads(path.read_text())["tdx"]["quote"])
    return path.read_bytes()


def _ccai_outcome(quote: bytes, collateral_json: str, now: datetime) -> str:
    # dcap-qvl reports the status and leaves acceptance to the caller, except that it refuses debug
    # TDs and "no matching TCB level"; mirror that with a policy accepting every status.
    policy = tdx_rules(
        accepted_tcb_statuses=frozenset(
            {
                "UpToDate",
                "SWHardeningNeeded",
                "ConfigurationNeeded",
                "ConfigurationAndSWHardeningNeeded",
                "OutOfDate",
                "OutOfDateConfigurationNeeded",
            }
        ),
        allow_trailing_data=True,
    )
    try:
        result = verify_tdx_quote(quote, tdx_collateral_from_json(collateral_json), now=now, policy=policy)
    except TcbError as exc:
        return "no-matching-level" if "NotSupported" in exc.message else f"tcb-error:{exc.message}"
    except PolicyViolation as exc:
        return "debug" if "debug" in exc.message else f"policy:{exc.message}"
    return f"status:{result.claims['tcb_status']}:{','.join(result.claims['advisory_ids'])}"


def _dcap_outcome(quote: bytes, collateral_json: str, now: datetime) -> str:
    collateral = dcap_qvl.QuoteCollateralV3.from_json(collateral_json)
    try:
        report = dcap_qvl.verify(quote, collateral, int(now.timestamp()))
    except ValueError as exc:
        text = str(exc)
        if "No matching TCB level" in text:
            return "no-matching-level"
        if "Debug mode" in text:
            return "debug"
        return f"error:{text}"
    return f"status:{report.status}:{','.join(report.advisory_ids)}"


@pytest.mark.parametrize(("vid", "quote_file", "collateral_file"), CASES, ids=[c[0] for c in CASES])
def test_agrees_with_dcap_qvl(vectors: Path, vid: str, quote_file: str, collateral_file: str) -> None:
    manifest = {v["id"]: v for v in json.loads((vectors / "cpu/manifest.json").read_text())["vectors"]}
    now = datetime.fromisoformat(manifest[vid]["verify_time"].replace("Z", "+00:00"))
    quote = _quote(vectors / "cpu" / quote_file)
    collateral_json = (vectors / "cpu" / collateral_file).read_text()
    ours = _ccai_outcome(quote, collateral_json, now)
    theirs = _dcap_outcome(quote, collateral_json, now)
    assert ours == theirs
