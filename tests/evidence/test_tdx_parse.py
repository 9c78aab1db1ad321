"""TDX quote, PCK extension and event-log parsing on the real vectors (tests/vectors/cpu/tdx)."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccai.errors import EvidenceError, MalformedEvidence, UnsupportedEvidence
from ccai.evidence import (
    TdAttributes,
    parse_ccel,
    parse_ccel_table,
    parse_json_event_log,
    parse_pck_extensions,
    parse_tdx_quote,
)


def _quote(vectors: Path, rel: str) -> bytes:
    path = vectors / "cpu" / rel
    raw = path.read_bytes()
    if rel.endswith("quote-report.json"):
        return bytes.fromhex(json.loads(raw)["quote"])
    if rel.endswith("tdx-v4-gcp.json"):
        return base64.b64decode(json.loads(raw)["tdx"]["quote"])
    if rel.endswith(".txt"):
        return bytes.fromhex(raw.decode().strip())
    return raw


# (file, version, body type, FMSPC, trailing byte count, TDATTRIBUTES)
CASES = [
    ("tdx/dcap-qvl/tdx_quote", 4, 2, "b0c06f000000", 70, 0x10000000),
    ("tdx/dcap-qvl/tdx_quote_outdated", 5, 3, "90c06f000000", 0, 0x10000000),
    ("tdx/dstack/quote-report.json", 4, 2, "90c06f000000", 70, 0x10000000),
    ("tdx/go-tdx-guest/tdx_prod_quote_SPR_E4.dat", 4, 2, "50806f000000", 39, 0x40000000),
    ("tdx/go-tdx-guest/quote_v5_sample.dat", 5, 3, "90c06f000000", 0, 0x10000000),
    ("tdx/go-tdx-guest/ccel/cos-113-tdx-quote.dat", 4, 2, "00806f050000", 3065, 0x10000000),
    ("tdx/trustee/tdx_quote_4.dat", 4, 2, "50806f000000", 0, 0x10000001),
    ("tdx/trustee/tdx_quote_5.dat", 5, 3, "90c06f000000", 0, 0x10000000),
    ("tdx/trustee/tdx_quote_6.dat", 4, 2, "00a06d080000", 70, 0x10000000),
    ("tdx/trustee/az-tdx-vtpm/td-quote.bin", 4, 2, "00806f050000", 70, 0),
    ("tdx/teekit/tdx-v4-gcp.json", 4, 2, "00806f050000", 3065, 0x10000000),
    ("composite/secretvm/cpu_quote.txt", 4, 2, "b0c06f000000", 70, 0x10000000),
]


@pytest.mark.parametrize(("rel", "version", "body_type", "fmspc", "trailing", "attrs"), CASES)
def test_real_quotes_parse(
    vectors: Path, rel: str, version: int, body_type: int, fmspc: str, trailing: int, attrs: int
) -> None:
    raw = _quote(vectors, rel)
    quote = parse_tdx_quote(raw)
    assert quote.version == version
    assert quote.body_type == body_type
    assert len(quote.trailing) == trailing
    assert quote.body.td_attributes_flags == TdAttributes(attrs)
    assert quote.body.debug == bool(attrs & 1)
    assert len(quote.pck_chain) == 3
    assert len(quote.qe_auth_data) == 32
    assert parse_pck_extensions(quote.pck_chain[0]).fmspc.hex() == fmspc
    # The signed region is header ‖ [v5 type/size] ‖ body, and the signature data length follows it.
    signed_end = 632 if version == 4 else 54 + (584 if body_type == 2 else 648)
    assert quote.signed_bytes == raw[:signed_end]
    (sig_len,) = struct.unpack_from("<I", raw, signed_end)
    assert len(raw) == signed_end + 4 + sig_len + trailing


def test_v5_body_type_3_offsets(vectors: Path) -> None:
    """Absolute offsets for body type 3 (reference §2.3, confirmed on quote_v5_sample.dat)."""
    raw = _quote(vectors, "tdx/go-tdx-guest/quote_v5_sample.dat")
    body = parse_tdx_quote(raw).body
    assert body.mr_td == raw[190:238]
    assert body.rtmr0 == raw[382:430]
    assert body.report_data == raw[574:638]
    assert body.tee_tcb_svn_2 == raw[638:654]
    assert body.mr_servicetd == raw[654:702] == bytes(48)


def test_spr_e4_trailing_ascii_is_kept_not_parsed(vectors: Path) -> None:
    quote = parse_tdx_quote(_quote(vectors, "tdx/go-tdx-guest/tdx_prod_quote_SPR_E4.dat"))
    assert quote.trailing.strip() == b"extra bytes(only for testing purpose)"
    assert not quote.trailing_is_zero


def test_pck_extensions(vectors: Path) -> None:
    quote = parse_tdx_quote(_quote(vectors, "tdx/dcap-qvl/tdx_quote_outdated"))
    ext = parse_pck_extensions(quote.pck_chain[0])
    assert ext.cpusvn_components[7] == 3
    assert ext.pcesvn == 13
    assert ext.pce_id == b"\x00\x00"
    assert len(ext.ppid) == 16
    assert bytes(ext.cpusvn_components) == ext.cpusvn


def test_pck_extensions_missing(vectors: Path) -> None:
    quote = parse_tdx_quote(_quote(vectors, "tdx/dcap-qvl/tdx_quote"))
    with pytest.raises(MalformedEvidence, match="no SGX extension"):
        parse_pck_extensions(quote.pck_chain[2])  # the root CA has none


@pytest.mark.parametrize(
    ("offset", "value", "error", "match"),
    [
        (0, b"\x03\x00", UnsupportedEvidence, "version"),
        (4, b"\x00\x00\x00\x00", UnsupportedEvidence, "not a TDX quote"),
        (2, b"\x03\x00", UnsupportedEvidence, "attestation key type"),
        (636 + 128, b"\x05\x00", UnsupportedEvidence, "type 6"),
    ],
)
def test_unsupported_fields(
    vectors: Path, offset: int, value: bytes, error: type[Exception], match: str
) -> None:
    raw = bytearray(_quote(vectors, "tdx/dcap-qvl/tdx_quote"))
    raw[offset : offset + len(value)] = value
    with pytest.raises(error, match=match):
        parse_tdx_quote(bytes(raw))


def test_v5_bad_body_size(vectors: Path) -> None:
    raw = bytearray(_quote(vectors, "tdx/dcap-qvl/tdx_quote_outdated"))
    raw[50:54] = struct.pack("<I", 584)
    with pytest.raises(MalformedEvidence, match="body size"):
        parse_tdx_quote(bytes(raw))


def test_signature_data_len_past_end(vectors: Path) -> None:
    raw = bytearray(_quote(vectors, "tdx/dcap-qvl/tdx_quote"))
    raw[632:636] = struct.pack("<I", len(raw))
    with pytest.raises(MalformedEvidence, match="signature data"):
        parse_tdx_quote(bytes(raw))


@pytest.mark.parametrize("cut", [0, 47, 48, 631, 636, 700, 1000, 1300, 4000])
def test_truncated(vectors: Path, cut: int) -> None:
    raw = _quote(vectors, "tdx/dcap-qvl/tdx_quote")
    with pytest.raises(MalformedEvidence):
        parse_tdx_quote(raw[:cut])


def test_ccel_replays_shape(vectors: Path) -> None:
    base = vectors / "cpu" / "tdx" / "go-tdx-guest" / "ccel"
    events = parse_ccel((base / "ccel_data.dat").read_bytes())
    assert len(events) == 43
    assert {e.rtmr for e in events} == {0, 1, 2}  # COS-113 never extends RTMR3 (it stays zero)
    assert all(len(e.digest) == 48 for e in events)
    table = parse_ccel_table((base / "ccel_table.dat").read_bytes())
    assert table.cc_type == 2
    assert table.log_area_minimum_length == 262144


def test_ccel_truncated(vectors: Path) -> None:
    data = (vectors / "cpu" / "tdx" / "go-tdx-guest" / "ccel" / "ccel_data.dat").read_bytes()
    with pytest.raises(MalformedEvidence):
        parse_ccel(data[:200])


def test_json_event_log(vectors: Path) -> None:
    doc = json.loads((vectors / "cpu" / "tdx" / "dstack" / "quote-report.json").read_text())
    events = parse_json_event_log(doc["event_log"])
    assert len(events) == 28
    with pytest.raises(MalformedEvidence):
        parse_json_event_log('[{"imr": 9, "event_type": 1, "digest": "00"}]')


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_raise_only_evidence_error(data: bytes) -> None:
    with contextlib.suppress(EvidenceError):
        parse_tdx_quote(data)


def _vectors_root() -> Path:
    env = os.environ.get("CCAI_VECTORS")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "vectors"


_DCAP_QUOTE = _vectors_root() / "cpu" / "tdx" / "dcap-qvl" / "tdx_quote"


@pytest.mark.skipif(not _DCAP_QUOTE.is_file(), reason="real vectors not available")
@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=5005), st.integers(min_value=1, max_value=255))
def test_mutated_real_quote_raises_only_evidence_error(pos: int, delta: int) -> None:
    raw = bytearray(_DCAP_QUOTE.read_bytes())
    raw[pos] = (raw[pos] + delta) % 256
    with contextlib.suppress(EvidenceError):
        parse_tdx_quote(bytes(raw))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_random_event_log_raises_only_evidence_error(data: bytes) -> None:
    with contextlib.suppress(EvidenceError):
        parse_ccel(data)
