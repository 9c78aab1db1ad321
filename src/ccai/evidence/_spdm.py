"""NVIDIA attestation report: SPDM 1.1 GET_MEASUREMENTS request ‖ signed MEASUREMENTS response.

NVML (and NSCQ for NVSwitches) returns one blob: the 37-byte request the driver sent, followed by
the device's MEASUREMENTS response. All integers are little-endian (DMTF DSP0274 1.1; layout in
gpu-evidence.md §4).

Request (DSP0274 1.1 Table "GET_MEASUREMENTS request message format"):

====  ====  =====================  =========================================
off   size  field                  required value
====  ====  =====================  =========================================
0     1     SPDMVersion            0x11
1     1     RequestResponseCode    0xE0 (GET_MEASUREMENTS)
2     1     Param1                 bit 0 set: signature requested
3     1     Param2                 0xFF on NVIDIA devices (all blocks)
4     32    Nonce                  the caller's nonce
36    1     SlotIDParam
====  ====  =====================  =========================================

Response (Table "Successful MEASUREMENTS response message format"):

=======  ====  ==============================
off      size  field
=======  ====  ==============================
0        1     SPDMVersion (0x11)
1        1     RequestResponseCode (0x60)
2        1     Param1
3        1     Param2
4        1     NumberOfBlocks (≥ 1)
5        3     MeasurementRecordLength L1
8        L1    MeasurementRecord (blocks)
8+L1     32    Nonce (responder's, unchecked)
40+L1    2     OpaqueLength L2
42+L1    L2    OpaqueData (NVIDIA TLVs)
42+L1+L2 96    Signature (ECDSA P-384 r‖s)
=======  ====  ==============================

The signature covers ``request ‖ response`` up to the signature, i.e. everything but the last 96
bytes; :attr:`AttestationReport.signed_bytes` is exactly that. Trailing bytes after the signature
are rejected (NVAT does the same; a report with one extra byte does not verify anyway).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from ccai._binary import Reader
from ccai.errors import MalformedEvidence
from ccai.evidence._opaque import OpaqueData, parse_opaque_data

__all__ = [
    "GET_MEASUREMENTS",
    "MEASUREMENTS",
    "REQUEST_SIZE",
    "SIGNATURE_SIZE",
    "SPDM_VERSION_1_1",
    "AttestationReport",
    "MeasurementBlock",
    "SpdmRequest",
    "SpdmResponse",
    "load_report",
    "parse_attestation_report",
]

SPDM_VERSION_1_1 = 0x11
GET_MEASUREMENTS = 0xE0
MEASUREMENTS = 0x60
REQUEST_SIZE = 37
NONCE_SIZE = 32
#: Raw ECDSA P-384 signature r‖s (48 + 48 bytes, big-endian each) on Hopper, Blackwell and LS10.
SIGNATURE_SIZE = 96
#: MeasurementSpecification bit 0: DMTF measurement specification (DSP0274 1.1 Table 43).
DMTF_MEASUREMENT_SPEC = 0x01
_SIGNATURE_REQUESTED = 0x01


@dataclass(frozen=True, slots=True, kw_only=True)
class SpdmRequest:
    """The GET_MEASUREMENTS request as the device received it (it is inside the signed bytes).

    Attributes:
        spdm_version: SPDMVersion (0x11).
        request_response_code: 0xE0.
        param1: Bit 0 = signature requested (always set in a report).
        param2: Measurement operation; 0xFF = all blocks.
        nonce: The 32-byte caller nonce — the value a verifier must compare with its own.
        slot_id: SlotIDParam: the certificate slot of the signing key.
    """

    spdm_version: int
    request_response_code: int
    param1: int
    param2: int
    nonce: bytes
    slot_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MeasurementBlock:
    """One measurement block in DMTF format (DSP0274 1.1 Tables 44–45).

    Attributes:
        index: Block index (1-based; RIM index *i* is block *i* + 1).
        measurement_specification: 0x01 (DMTF).
        value_type: DMTFSpecMeasurementValueType; bit 7 set = raw bit stream, otherwise a digest;
            bits 0–6: 0 immutable ROM, 1 mutable firmware, 2 hardware config, 3 firmware config,
            4 measurement manifest.
        value: DMTFSpecMeasurementValue (a 48-byte SHA-384 digest on NVIDIA devices).
    """

    index: int
    measurement_specification: int
    value_type: int
    value: bytes

    @property
    def is_raw_bitstream(self) -> bool:
        """True when the value is a raw bit stream rather than a digest (value_type bit 7)."""
        return bool(self.value_type & 0x80)


@dataclass(frozen=True, slots=True, kw_only=True)
class SpdmResponse:
    """The MEASUREMENTS response.

    Attributes:
        spdm_version: SPDMVersion (0x11).
        request_response_code: 0x60.
        param1: Param1 (0 for a measurement-list response).
        param2: Param2 (slot information).
        measurements: The measurement blocks in wire order.
        measurement_record: The raw MeasurementRecord bytes.
        nonce: The responder's 32-byte nonce (random; binds nothing for the verifier).
        opaque_data: The parsed NVIDIA opaque data.
    """

    spdm_version: int
    request_response_code: int
    param1: int
    param2: int
    measurements: tuple[MeasurementBlock, ...]
    measurement_record: bytes
    nonce: bytes
    opaque_data: OpaqueData


@dataclass(frozen=True, slots=True, kw_only=True)
class AttestationReport:
    """An NVIDIA GPU or NVSwitch attestation report: request ‖ response ‖ signature.

    Attributes:
        raw: The whole report, byte for byte as the device produced it.
        request: The parsed request (its nonce is the caller's).
        response: The parsed response.
        signature: The 96-byte raw ECDSA P-384 signature ``r‖s``.
    """

    raw: bytes
    request: SpdmRequest
    response: SpdmResponse
    signature: bytes

    @property
    def signed_bytes(self) -> bytes:
        """Exactly the bytes the signature covers: everything before the signature."""
        return self.raw[: len(self.raw) - SIGNATURE_SIZE]

    @property
    def nonce(self) -> bytes:
        """The caller's nonce from the signed request copy (there is no nonce TLV)."""
        return self.request.nonce

    @property
    def measurements(self) -> tuple[MeasurementBlock, ...]:
        """The measurement blocks (shortcut for ``response.measurements``)."""
        return self.response.measurements

    @property
    def opaque_data(self) -> OpaqueData:
        """The opaque data (shortcut for ``response.opaque_data``)."""
        return self.response.opaque_data

    def measurement(self, index: int) -> MeasurementBlock | None:
        """The block with SPDM index ``index`` (1-based), or ``None`` if the report has none."""
        for block in self.response.measurements:
            if block.index == index:
                return block
        return None


def _expect(value: int, expected: int, *, field: str, offset: int) -> None:
    if value != expected:
        raise MalformedEvidence(
            f"attestation report: {field} at offset {offset} is 0x{value:02x}, expected 0x{expected:02x}",
            step="parse",
            expected=f"0x{expected:02x}",
            actual=f"0x{value:02x}",
        )


def _parse_request(r: Reader) -> SpdmRequest:
    start = r.offset
    version = r.u8("SPDMVersion")
    _expect(version, SPDM_VERSION_1_1, field="request SPDMVersion", offset=start)
    code = r.u8("RequestResponseCode")
    _expect(code, GET_MEASUREMENTS, field="request RequestResponseCode", offset=start + 1)
    param1 = r.u8("Param1")
    if not param1 & _SIGNATURE_REQUESTED:
        # Without the signature bit the request carries no nonce and the response no signature:
        # not an attestation report.
        raise MalformedEvidence(
            "attestation report: the request did not ask for a signature (Param1 bit 0 clear)",
            step="parse",
            actual=f"0x{param1:02x}",
        )
    param2 = r.u8("Param2")
    nonce = r.take(NONCE_SIZE, "request Nonce")
    slot = r.u8("SlotIDParam")
    return SpdmRequest(
        spdm_version=version,
        request_response_code=code,
        param1=param1,
        param2=param2,
        nonce=nonce,
        slot_id=slot,
    )


_BLOCK_HEADER = struct.Struct(
    "<BBHBH"
)  # Index, MeasurementSpecification, MeasurementSize, ValueType, ValueSize


def _parse_blocks_fast(data: bytes, count: int) -> tuple[MeasurementBlock, ...] | None:
    """The blocks of a well-formed record in one pass (``None``: something is off, and
    :func:`_parse_blocks` then names what and where)."""
    blocks: list[MeasurementBlock] = []
    seen: set[int] = set()
    pos, end, unpack = 0, len(data), _BLOCK_HEADER.unpack_from
    for _ in range(count):
        if pos + _BLOCK_HEADER.size > end:
            return None
        index, spec, size, value_type, value_size = unpack(data, pos)
        if spec != DMTF_MEASUREMENT_SPEC or index in seen or not 1 <= index <= 0xFE or size != value_size + 3:
            return None
        start = pos + _BLOCK_HEADER.size
        pos = start + value_size
        if pos > end:
            return None
        seen.add(index)
        blocks.append(
            MeasurementBlock(
                index=index, measurement_specification=spec, value_type=value_type, value=data[start:pos]
            )
        )
    return tuple(blocks) if pos == end else None


def _parse_blocks(record: Reader, count: int) -> tuple[MeasurementBlock, ...]:
    blocks: list[MeasurementBlock] = []
    seen: set[int] = set()
    for n in range(count):
        at = record.base + record.offset
        index = record.u8(f"block {n} Index")
        spec = record.u8(f"block {n} MeasurementSpecification")
        size = record.u16le(f"block {n} MeasurementSize")
        body = record.sub(size, f"block {n} Measurement")
        if spec != DMTF_MEASUREMENT_SPEC:
            raise MalformedEvidence(
                f"attestation report: measurement block at offset {at} uses specification 0x{spec:02x}, "
                "only DMTF (0x01) is defined",
                step="parse",
                index=index,
            )
        if index in seen or not 1 <= index <= 0xFE:
            raise MalformedEvidence(
                f"attestation report: measurement block index {index} at offset {at} is "
                + ("repeated" if index in seen else "out of range 1..254"),
                step="parse",
                index=index,
            )
        seen.add(index)
        value_type = body.u8("DMTFSpecMeasurementValueType")
        value_size = body.u16le("DMTFSpecMeasurementValueSize")
        value = body.take(value_size, "DMTFSpecMeasurementValue")
        body.expect_end()
        blocks.append(
            MeasurementBlock(index=index, measurement_specification=spec, value_type=value_type, value=value)
        )
    record.expect_end()
    return tuple(blocks)


def _parse_response(r: Reader) -> SpdmResponse:
    start = r.base + r.offset
    version = r.u8("SPDMVersion")
    _expect(version, SPDM_VERSION_1_1, field="response SPDMVersion", offset=start)
    code = r.u8("RequestResponseCode")
    _expect(code, MEASUREMENTS, field="response RequestResponseCode", offset=start + 1)
    param1 = r.u8("Param1")
    param2 = r.u8("Param2")
    count = r.u8("NumberOfBlocks")
    if count == 0:
        raise MalformedEvidence("attestation report: the response holds no measurement blocks", step="parse")
    record_len = r.u24le("MeasurementRecordLength")
    record_at = r.base + r.offset
    measurement_record = r.take(record_len, "MeasurementRecord")
    blocks = _parse_blocks_fast(measurement_record, count)
    if blocks is None:
        record = Reader(measurement_record, what="attestation report/MeasurementRecord", base=record_at)
        blocks = _parse_blocks(record, count)
    nonce = r.take(NONCE_SIZE, "response Nonce")
    opaque_len = r.u16le("OpaqueLength")
    opaque_at = r.base + r.offset
    opaque = parse_opaque_data(r.take(opaque_len, "OpaqueData"), base=opaque_at)
    return SpdmResponse(
        spdm_version=version,
        request_response_code=code,
        param1=param1,
        param2=param2,
        measurements=blocks,
        measurement_record=measurement_record,
        nonce=nonce,
        opaque_data=opaque,
    )


def parse_attestation_report(data: bytes) -> AttestationReport:
    """Parse a raw NVIDIA attestation report (binary; see :func:`load_report` for hex text).

    Args:
        data: request (37 bytes) ‖ MEASUREMENTS response ‖ 96-byte signature.

    Returns:
        The parsed report; ``raw`` is ``data`` unchanged and ``signed_bytes`` what the signature covers.

    Raises:
        MalformedEvidence: a short read, trailing bytes, a wrong version/code, a malformed
            measurement block or opaque field.
    """
    raw = bytes(data)
    r = Reader(raw, what="attestation report")
    request = _parse_request(r)
    response = _parse_response(r)
    signature = r.take(SIGNATURE_SIZE, "Signature")
    if r.remaining:
        # NVAT rejects this too; the signature would not verify over the padded blob anyway.
        raise MalformedEvidence(
            f"attestation report: {r.remaining} unexpected trailing byte(s) after the signature "
            f"at offset {r.offset}",
            step="parse",
            expected=0,
            actual=r.remaining,
            hint="the report must end with its 96-byte signature; strip what a tool appended",
        )
    return AttestationReport(raw=raw, request=request, response=response, signature=signature)


_HEX_TEXT = re.compile(rb"[0-9A-Fa-f\s]*")


def load_report(data: bytes) -> bytes:
    """Return the raw report from binary bytes or from hex text (as in NVIDIA's ``*.txt`` samples).

    Hex text may contain whitespace anywhere (line breaks, a trailing newline); it is recognised
    because a binary report starts with ``0x11 0xE0``, which is not hex text.

    Args:
        data: The file contents.

    Returns:
        The binary report (not yet parsed).

    Raises:
        MalformedEvidence: empty input, or hex text with an odd number of digits.
    """
    if not data.strip():
        raise MalformedEvidence("attestation report: input is empty", step="load")
    if data[:2] == bytes([SPDM_VERSION_1_1, GET_MEASUREMENTS]):
        return bytes(data)
    if _HEX_TEXT.fullmatch(data):
        digits = b"".join(data.split())
        if len(digits) % 2:
            raise MalformedEvidence(
                f"attestation report: hex text has an odd number of digits ({len(digits)})", step="load"
            )
        return bytes.fromhex(digits.decode("ascii"))
    raise MalformedEvidence(
        "attestation report: input is neither a binary SPDM report (starting 11 e0) nor hex text",
        step="load",
        actual=data[:8].hex(),
    )
