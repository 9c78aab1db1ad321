"""A minimal DER walker for the vendor extensions ``cryptography`` leaves undecoded.

Intel's SGX PCK extension (OID 1.2.840.113741.1.13.1) and AMD's VCEK/VLEK extensions
(1.3.6.1.4.1.3704.1.*) reach us as raw DER via ``x509.UnrecognizedExtension``. Only the few
universal types they use are needed: SEQUENCE, OBJECT IDENTIFIER, INTEGER, ENUMERATED,
OCTET STRING and IA5String. Every read goes through :class:`ccai._binary.Reader`, so a truncated
or lying length raises :class:`~ccai.errors.MalformedEvidence`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ccai._binary import Reader
from ccai.errors import MalformedEvidence

__all__ = [
    "TAG_ENUMERATED",
    "TAG_IA5STRING",
    "TAG_INTEGER",
    "TAG_OCTET_STRING",
    "TAG_OID",
    "TAG_SEQUENCE",
    "Tlv",
    "decode_integer",
    "decode_oid",
    "read_all",
    "read_tlv",
]

TAG_INTEGER = 0x02
TAG_OCTET_STRING = 0x04
TAG_OID = 0x06
TAG_ENUMERATED = 0x0A
TAG_IA5STRING = 0x16
TAG_SEQUENCE = 0x30


@dataclass(frozen=True, slots=True, kw_only=True)
class Tlv:
    """One DER element: its tag byte and its content octets."""

    tag: int
    value: bytes


def read_tlv(reader: Reader, field: str) -> Tlv:
    """Read one DER tag-length-value (single-byte tags, definite lengths up to 4 length octets).

    Raises:
        MalformedEvidence: truncated element, indefinite or oversized length.
    """
    tag = reader.u8(f"{field} tag")
    first = reader.u8(f"{field} length")
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4:
            raise MalformedEvidence(
                f"{reader.what}: {field} has an unsupported DER length form", step="parse", actual=first
            )
        length = int.from_bytes(reader.take(count, f"{field} long length"), "big")
    return Tlv(tag=tag, value=reader.take(length, f"{field} value"))


def read_all(data: bytes, *, what: str) -> list[Tlv]:
    """Split ``data`` into the consecutive DER elements it holds (the content of a SEQUENCE)."""
    reader = Reader(data, what=what)
    out: list[Tlv] = []
    while reader.remaining:
        out.append(read_tlv(reader, f"element {len(out)}"))
    return out


def decode_oid(value: bytes) -> str:
    """Dotted-decimal text of an OBJECT IDENTIFIER's content octets.

    Raises:
        MalformedEvidence: empty or truncated encoding.
    """
    if not value or value[-1] & 0x80:
        raise MalformedEvidence("DER OBJECT IDENTIFIER is empty or truncated", step="parse")
    arcs: list[int] = []
    acc = 0
    for byte in value:
        acc = (acc << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(acc)
            acc = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])


def decode_integer(tlv: Tlv, field: str) -> int:
    """The value of a DER INTEGER or ENUMERATED element (two's complement, big-endian).

    Raises:
        MalformedEvidence: the element is not an INTEGER/ENUMERATED or is empty.
    """
    if tlv.tag not in (TAG_INTEGER, TAG_ENUMERATED) or not tlv.value:
        raise MalformedEvidence(
            f"{field}: expected a DER INTEGER", step="parse", actual=f"tag 0x{tlv.tag:02x}"
        )
    return int.from_bytes(tlv.value, "big", signed=True)
