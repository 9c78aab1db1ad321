"""TDX measurement event logs: the CCEL (TCG2 crypto-agile) binary log and the JSON log form.

The CCEL ACPI table (TDX Guest-Host-Communication Interface spec, "CC Event Log ACPI Table") points
at a log in the TCG PC Client Platform Firmware Profile "crypto agile" format (section 10.2): one
SHA-1-format ``TCG_PCClientPCREvent`` carrying the ``Spec ID Event03`` algorithm list, then
``TCG_PCR_EVENT2`` records. In a TD the record's "PCR index" is the CC measurement-register index:
1..4 = RTMR0..RTMR3 (0 would be MRTD, which the log never extends). Parsing only: replaying the
log against the quote's RTMRs is a verification step (``ccai.verify``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ccai._binary import Reader
from ccai._json import load_json
from ccai.errors import MalformedEvidence, UnsupportedEvidence

__all__ = [
    "EV_NO_ACTION",
    "CcelTable",
    "TdxEvent",
    "parse_ccel",
    "parse_ccel_table",
    "parse_json_event_log",
]

#: TCG event type whose digest is never extended into a register.
EV_NO_ACTION = 0x00000003
_TPM_ALG_SHA384 = 0x000C
_SHA384_SIZE = 48
_U32_MAX = 0xFFFFFFFF  # TCG event types are UINT32
_SPEC_ID = b"Spec ID Event03\x00"


@dataclass(frozen=True, slots=True, kw_only=True)
class TdxEvent:
    """One measured event.

    Attributes:
        rtmr: The RTMR the event extends (0..3), or ``None`` for an MRTD/EV_NO_ACTION entry.
        event_type: The TCG event type.
        digest: The SHA-384 digest extended into the register.
        event: The event data as logged.
    """

    rtmr: int | None
    event_type: int
    digest: bytes
    event: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class CcelTable:
    """The CCEL ACPI table (36-byte ACPI header, then CC type/subtype, LAML and LASA).

    Attributes:
        cc_type: 2 = Intel TDX.
        cc_subtype: 0.
        log_area_minimum_length: LAML, bytes reserved for the log.
        log_area_start_address: LASA, guest-physical address of the log.
    """

    revision: int
    oem_id: bytes
    cc_type: int
    cc_subtype: int
    log_area_minimum_length: int
    log_area_start_address: int


def parse_ccel_table(data: bytes) -> CcelTable:
    """Parse the CCEL ACPI table.

    Raises:
        MalformedEvidence: short, wrong signature or length.
    """
    r = Reader(data, what="CCEL ACPI table")
    if r.take(4, "Signature") != b"CCEL":
        raise MalformedEvidence("ACPI table signature is not CCEL", step="parse")
    length = r.u32le("Length")
    revision = r.u8("Revision")
    r.skip(1, "Checksum")
    oem_id = r.take(6, "OEMID")
    r.skip(8 + 4 + 4 + 4, "OEM Table ID / OEM Revision / Creator ID / Creator Revision")
    cc_type = r.u8("CC Type")
    cc_subtype = r.u8("CC Subtype")
    r.skip(2, "Reserved")
    table = CcelTable(
        revision=revision,
        oem_id=oem_id,
        cc_type=cc_type,
        cc_subtype=cc_subtype,
        log_area_minimum_length=r.u64le("LAML"),
        log_area_start_address=r.u64le("LASA"),
    )
    if length != len(data):
        raise MalformedEvidence(
            "CCEL table length field disagrees", step="parse", expected=len(data), actual=length
        )
    return table


def parse_ccel(data: bytes) -> tuple[TdxEvent, ...]:
    """Parse a CCEL event log area (TCG2 crypto-agile format, SHA-384 digests).

    The log ends at the first record whose index is 0xFFFFFFFF or where only 0xFF/0x00 filler remains.

    Args:
        data: The log area bytes.

    Returns:
        The events after the Spec ID header, in log order.

    Raises:
        MalformedEvidence: a truncated record or a digest size that disagrees with the header.
        UnsupportedEvidence: the log does not carry SHA-384 digests.
    """
    r = Reader(data, what="CCEL event log")
    # TCG_PCClientPCREvent (SHA-1 format) holding TCG_EfiSpecIDEvent.
    r.u32le("pcrIndex")
    if r.u32le("eventType") != EV_NO_ACTION:
        raise MalformedEvidence("CCEL log does not start with the Spec ID event", step="parse")
    r.skip(20, "digest")
    spec = r.sub(r.u32le("eventSize"), "TCG_EfiSpecIDEvent")
    if spec.take(16, "signature") != _SPEC_ID:
        raise MalformedEvidence("CCEL log lacks the 'Spec ID Event03' header", step="parse")
    spec.skip(4 + 4, "platformClass / version / errata / uintnSize")
    sizes: dict[int, int] = {}
    for i in range(spec.u32le("numberOfAlgorithms")):
        alg = spec.u16le(f"algorithmId[{i}]")
        sizes[alg] = spec.u16le(f"digestSize[{i}]")
    spec.skip(spec.u8("vendorInfoSize"), "vendorInfo")
    if sizes.get(_TPM_ALG_SHA384) != _SHA384_SIZE:
        raise UnsupportedEvidence("CCEL log has no SHA-384 digests", step="parse", actual=sorted(sizes))

    events: list[TdxEvent] = []
    while r.remaining >= 8:
        rest = data[r.offset :]
        if not rest.strip(b"\xff") or not rest.strip(b"\x00"):
            break
        index = r.u32le("pcrIndex")
        if index == 0xFFFFFFFF:
            break
        event_type = r.u32le("eventType")
        digest = b""
        for i in range(r.u32le("digests.count")):
            alg = r.u16le(f"digests[{i}].hashAlg")
            if alg not in sizes:
                raise MalformedEvidence("CCEL event uses an algorithm absent from the header", step="parse")
            value = r.take(sizes[alg], f"digests[{i}]")
            if alg == _TPM_ALG_SHA384:
                digest = value
        event = r.take(r.u32le("eventSize"), "event")
        if len(digest) != _SHA384_SIZE:
            raise MalformedEvidence("CCEL event lacks a SHA-384 digest", step="parse", index=len(events))
        rtmr = index - 1 if 1 <= index <= 4 and event_type != EV_NO_ACTION else None
        events.append(TdxEvent(rtmr=rtmr, event_type=event_type, digest=digest, event=event))
    return tuple(events)


def parse_json_event_log(log: str | bytes | list[Any]) -> tuple[TdxEvent, ...]:
    """Parse the JSON event-log form used by dstack and others: a list of
    ``{"imr": 0..3, "event_type": int, "digest": hex48, "event_payload": hex}``.

    ``imr`` is the RTMR index directly. Events of type EV_NO_ACTION are kept but extend nothing.

    Raises:
        MalformedEvidence: not a JSON list of such objects.
    """
    try:
        items = load_json(log, what="TDX JSON event log") if isinstance(log, str | bytes) else log
        if not isinstance(items, list):
            raise TypeError("not a list")
        events = []
        for item in items:
            imr = int(item["imr"])
            event_type = int(item["event_type"])
            digest = bytes.fromhex(item["digest"])
            payload = bytes.fromhex(item.get("event_payload") or "")
            if len(digest) != _SHA384_SIZE or not 0 <= imr <= 3:
                raise ValueError("digest is not SHA-384 or imr is not 0..3")
            if not 0 <= event_type <= _U32_MAX:
                raise ValueError("event_type is not a 32-bit unsigned integer")
            rtmr = None if event_type == EV_NO_ACTION else imr
            events.append(TdxEvent(rtmr=rtmr, event_type=event_type, digest=digest, event=payload))
    except MalformedEvidence as exc:
        raise MalformedEvidence(exc.message, step="parse") from None
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        # OverflowError: int() of a JSON number that decodes to infinity (1e999).
        raise MalformedEvidence(f"TDX JSON event log is malformed: {exc}", step="parse") from None
    return tuple(events)
