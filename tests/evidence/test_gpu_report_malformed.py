"""Bad attestation reports raise MalformedEvidence — and nothing else.

Synthetic reports are built field by field from the SPDM 1.1 layout (the parser does not check
signatures, so any 96 bytes stand in for one); Hypothesis throws random and mutated bytes.
"""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccai.errors import MalformedEvidence
from ccai.evidence import load_report, parse_attestation_report

NVAT_UT = "nvtrust/NVIDIA_attestation-sdk@73c032e/nv-attestation-sdk-cpp/unit-tests/testdata"
REAL = f"{NVAT_UT}/hopperAttestationReport.txt"
NONCE = bytes(range(32))


def tlv(type_: int, value: bytes) -> bytes:
    return struct.pack("<HH", type_, len(value)) + value


def block(
    index: int, value: bytes = b"\x11" * 48, *, spec: int = 1, vtype: int = 1, vsize: int | None = None
) -> bytes:
    inner = struct.pack("<BH", vtype, len(value) if vsize is None else vsize) + value
    return struct.pack("<BBH", index, spec, len(inner)) + inner


GOOD_OPAQUE = (
    tlv(6, bytes.fromhex("009f009601000000"))
    + tlv(15, b"882\0\0\0\0\0\0")
    + tlv(17, b"1010\0")
    + tlv(18, b"0200\0")
    + tlv(3, b"550.90.07\0")
    + tlv(4, bytes.fromhex("8001000000000000"))
    + tlv(11, b"\x55")
)


def build(
    *,
    req: bytes | None = None,
    version: int = 0x11,
    code: int = 0x60,
    blocks: list[bytes] | None = None,
    count: int | None = None,
    opaque: bytes = GOOD_OPAQUE,
    tail: bytes = b"\x5a" * 96,
) -> bytes:
    request = req if req is not None else bytes([0x11, 0xE0, 0x01, 0xFF]) + NONCE + b"\x00"
    blks = blocks if blocks is not None else [block(i) for i in (1, 2, 3)]
    record = b"".join(blks)
    n = len(blks) if count is None else count
    response = bytes([version, code, 0, 0, n]) + len(record).to_bytes(3, "little") + record
    response += b"\xee" * 32 + struct.pack("<H", len(opaque)) + opaque
    return request + response + tail


def test_synthetic_report_parses() -> None:
    report = parse_attestation_report(build())
    assert report.nonce == NONCE
    assert [b.index for b in report.measurements] == [1, 2, 3]
    assert report.opaque_data.driver_version == "550.90.07"
    assert report.opaque_data.chip_sku == "882"
    assert report.signature == b"\x5a" * 96


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (build(req=bytes([0x10, 0xE0, 0x01, 0xFF]) + NONCE + b"\0"), "request SPDMVersion"),
        (build(req=bytes([0x11, 0xE1, 0x01, 0xFF]) + NONCE + b"\0"), "RequestResponseCode"),
        (build(req=bytes([0x11, 0xE0, 0x00, 0xFF]) + NONCE + b"\0"), "signature"),
        (build(version=0x12), "response SPDMVersion"),
        (build(code=0x61), "RequestResponseCode"),
        (build(blocks=[]), "no measurement blocks"),
        (build(count=2), "trailing"),  # record holds 3 blocks, count says 2
        (build(count=4), "needs"),  # count says 4, record holds 3
        (build(blocks=[block(1), block(1)]), "repeated"),
        (build(blocks=[block(0)]), "out of range"),
        (build(blocks=[block(255)]), "out of range"),
        (build(blocks=[block(1, spec=2)]), "specification"),
        (build(blocks=[block(1, vsize=47)]), "trailing"),
        (build(blocks=[block(1, vsize=49)]), "needs"),
        (build(tail=b"\x5a" * 95), "Signature"),
        (build(tail=b"\x5a" * 97), "trailing"),
        (build(opaque=GOOD_OPAQUE + tlv(3, b"550.90.07\0")), "more than once"),
        (build(opaque=GOOD_OPAQUE + struct.pack("<HH", 20, 48) + b"\0" * 10), "needs"),
        (build(opaque=GOOD_OPAQUE + b"\x14"), "needs"),
        (build(opaque=tlv(20, b"\0" * 47)), "FWID must be 48 bytes"),
        (build(opaque=tlv(3, b"55\xff.1\0")), "DRIVER_VERSION is not printable ASCII"),
        (build(opaque=tlv(12, b"\0" * 5)), "multiple of 4"),
        (build(opaque=tlv(11, b"")), "NVDEC0_STATUS must be 1 bytes"),
        (build(opaque=tlv(34, b"\0" * 9)), "OPAQUE_DATA_VERSION"),
        (build(opaque=tlv(22, b"\0" * 12)), "multiple of 8"),
        (build(opaque=tlv(6, b"96.10.55\0")), "VBIOS_VERSION"),
        (build(opaque=b"NVDAOD" + b"\x01\x00" + b"\x01\x00\x00\x00"), "profile"),
    ],
)
def test_malformed_reports(data: bytes, match: str) -> None:
    with pytest.raises(MalformedEvidence, match=match):
        parse_attestation_report(data)


def test_unknown_opaque_types_are_kept() -> None:
    report = parse_attestation_report(build(opaque=GOOD_OPAQUE + tlv(200, b"\x01\x02") + tlv(0, b"")))
    opaque = report.opaque_data
    unknown = opaque.get(200)
    assert unknown is not None and unknown.name == "UNKNOWN_200" and unknown.value == b"\x01\x02"
    assert opaque.get("UNKNOWN_0") is not None
    assert opaque.json_value(unknown) == "0102"


def test_nvdaod_framing() -> None:
    body = struct.pack("<HHH", 3, 7, 7) + b"580.12\0" + struct.pack("<HHH", 36, 1, 2) + b"\x02\x00"
    opaque = b"NVDAOD" + struct.pack("<H", 0) + bytes([2, 1]) + b"\0\0" + body
    parsed = parse_attestation_report(build(opaque=opaque)).opaque_data
    assert (parsed.format_major, parsed.format_minor) == (2, 1)
    assert parsed.driver_version == "580.12"
    assert parsed.feature_flag == 2
    first = parsed.get("DRIVER_VERSION")
    assert first is not None and first.value_type == 7


def test_switch_namespace_follows_vbios_encoding() -> None:
    switch = parse_attestation_report(build(opaque=tlv(6, b"96.10.55.00.01") + tlv(22, b"\x01" * 8)))
    assert switch.opaque_data.device == "switch"
    assert switch.opaque_data.device_pdi == b"\x01" * 8
    assert switch.opaque_data.get(22).name == "DEVICE_PDI"  # type: ignore[union-attr]
    gpu = parse_attestation_report(build(opaque=tlv(6, bytes(8)) + tlv(22, b"\x01" * 16)))
    assert gpu.opaque_data.device == "gpu"
    assert gpu.opaque_data.get(22).name == "SWITCH_PDI"  # type: ignore[union-attr]
    assert gpu.opaque_data.switch_pdis == (b"\x01" * 8, b"\x01" * 8)
    assert gpu.opaque_data.vbios_version == "00.00.00.00.00"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=6000))
def test_random_bytes_raise_only_malformed(data: bytes) -> None:
    with contextlib.suppress(MalformedEvidence):
        parse_attestation_report(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4200))
def test_random_response_after_valid_request_raises_only_malformed(body: bytes) -> None:
    request = bytes([0x11, 0xE0, 0x01, 0xFF]) + NONCE + b"\x00"
    with contextlib.suppress(MalformedEvidence):
        parse_attestation_report(request + bytes([0x11, 0x60]) + body)


@pytest.fixture(scope="module")
def real_report(vectors: Path) -> bytes:
    return load_report((vectors / REAL).read_bytes())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_real_report_parses_or_raises_malformed(real_report: bytes, data: st.DataObject) -> None:
    raw = bytearray(real_report)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if op == "flip":
            raw[pos] ^= data.draw(st.integers(1, 255))
        elif op == "insert":
            raw.insert(pos, data.draw(st.integers(0, 255)))
        else:
            del raw[pos]
    try:
        report = parse_attestation_report(bytes(raw))
    except MalformedEvidence:
        return
    # Whatever parses keeps its exact bytes and a consistent signed region.
    assert report.raw == bytes(raw)
    assert report.signed_bytes + report.signature == report.raw
    for field in report.opaque_data:
        report.opaque_data.json_value(field)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_load_report_raises_only_malformed(data: bytes) -> None:
    with contextlib.suppress(MalformedEvidence):
        load_report(data)
