"""Opaque data of an NVIDIA SPDM MEASUREMENTS response: NVIDIA's TLV list.

The opaque data field of the signed MEASUREMENTS response carries NVIDIA-specific facts about the
device: driver and VBIOS versions, board identity (project, SKU, chip SKU), the FWID of the
attestation key, NVDEC0 and protected-PCIe status, per-index measurement counts, and on NVSwitches
the topology (PDIs, ports). Layout (gpu-evidence.md §5.1; NVAT ``gpu_opaque_data_parser.hpp``):

======  ======  ===========================================
off     size    field
======  ======  ===========================================
0       2       DataType (u16 little-endian)
2       2       DataSize (u16 little-endian)
4       n       Data
======  ======  ===========================================

repeated until the opaque data ends exactly. A newer framing (NVAT, no real reports yet) starts
with a 12-byte ``NVDAOD`` header (magic, u16 profile = 0, major, minor, 2 reserved) and adds a u16
value type after DataType; it is parsed too.

Parsing rules (and why):

* Unknown types are kept with their raw value (NVIDIA's Python tool crashes on them; NVAT keeps
  them) so that evidence from newer firmware still parses and can be inspected.
* A type that occurs twice is rejected: the verifier must never have to guess which of two
  driver versions is "the" driver version.
* Fields with a known format are checked while parsing (sizes, ASCII text, counts), so the
  accessors on :class:`OpaqueData` never fail later.

GPU reports and NVSwitch (LS10) reports share types 1–21 but give 22–25 different meanings; the
names follow NVAT's GPU and switch enums respectively. :attr:`OpaqueData.device` says which
namespace applies: a report whose VBIOS_VERSION is dotted ASCII (``96.10.55.00.01``) is a switch
report, the GPU encodes it in 8 binary bytes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from ccai._binary import Reader
from ccai.errors import MalformedEvidence

__all__ = [
    "GPU_FIELD_NAMES",
    "SWITCH_FIELD_NAMES",
    "DeviceKind",
    "OpaqueData",
    "OpaqueField",
    "parse_opaque_data",
]

DeviceKind = Literal["gpu", "switch"]

#: GPU opaque TLV types, NVIDIA's names (NVAT ``GpuOpaqueDataType``; gpu-evidence.md §5.1).
GPU_FIELD_NAMES: dict[int, str] = {
    1: "CERT_ISSUER_NAME",
    2: "CERT_AUTHORITY_KEY_IDENTIFIER",
    3: "DRIVER_VERSION",
    4: "GPU_INFO",
    5: "SKU",
    6: "VBIOS_VERSION",
    7: "MANUFACTURER_ID",
    8: "TAMPER_DETECTION",
    9: "SMC",
    10: "VPR",
    11: "NVDEC0_STATUS",
    12: "MSRSCNT",
    13: "CPRINFO",
    14: "BOARD_ID",
    15: "CHIP_SKU",
    16: "CHIP_SKU_MOD",
    17: "PROJECT",
    18: "PROJECT_SKU",
    19: "PROJECT_SKU_MOD",
    20: "FWID",
    21: "PROTECTED_PCIE_STATUS",
    22: "SWITCH_PDI",
    23: "FLOORSWEPT_PORTS",
    24: "POSITION_ID",
    25: "LOCK_SWITCH_STATUS",
    32: "GPU_LINK_CONN",
    33: "SYS_ENABLE_STATUS",
    34: "OPAQUE_DATA_VERSION",
    35: "CHIP_INFO",
    36: "FEATURE_FLAG",
    255: "INVALID",
}

#: NVSwitch opaque TLV types (NVAT ``SwitchOpaqueDataType``): 1–21 as on GPUs, then the topology.
SWITCH_FIELD_NAMES: dict[int, str] = {
    **{t: n for t, n in GPU_FIELD_NAMES.items() if t <= 21},
    22: "DEVICE_PDI",
    23: "DISABLED_PORTS",
    24: "SWITCH_POSITION_ID",
    25: "SWITCH_LOCK_STATUS",
    26: "SWITCH_GPU_PDIS",
    255: "INVALID",
}

_NVDAOD_MAGIC = b"NVDAOD"
_NVDAOD_HEADER_SIZE = 12
_NVDAOD_PROFILE = 0

_FWID_SIZE = 48  # SHA-384 (gpu-evidence.md §6.2)
_PDI_SIZE = 8
_SWITCH_GPU_PDI_COUNT = 8  # NVAT TOTAL_NUMBER_OF_PDI: 8 GPU PDIs, then one port byte per link
_MAX_INT_FIELD = 8  # NVAT MAX_OPAQUE_DATA_VERSION_SIZE: integers are at most 8 bytes LE

#: Status bytes of NVDEC0_STATUS and PROTECTED_PCIE_STATUS (gpu-evidence.md §5.1).
STATUS_ENABLED = 0xAA
STATUS_DISABLED = 0x55

_DOTTED_VERSION = re.compile(rb"[0-9A-Fa-f]{2}(\.[0-9A-Fa-f]{2}){4}")


@dataclass(frozen=True, slots=True, kw_only=True)
class OpaqueField:
    """One opaque-data TLV, exactly as it appeared in the signed response.

    Attributes:
        type: The TLV DataType.
        name: NVIDIA's name for the type (``UNKNOWN_<n>`` for types NVIDIA has not named).
        value: The raw Data bytes.
        value_type: The DataValueType of the ``NVDAOD`` framing; ``None`` in the legacy framing.
    """

    type: int
    name: str
    value: bytes
    value_type: int | None = None


def _text(field: OpaqueField) -> str:
    """A NUL-terminated / NUL-padded ASCII string (C-string semantics, as NVIDIA's tools read it)."""
    head = field.value.split(b"\0", 1)[0]
    if not all(0x20 <= b < 0x7F for b in head):
        raise MalformedEvidence(
            f"opaque data: {field.name} is not printable ASCII",
            step="parse",
            actual=field.value.hex(),
        )
    return head.decode("ascii")


def _uint(field: OpaqueField) -> int:
    if not 1 <= len(field.value) <= _MAX_INT_FIELD:
        raise MalformedEvidence(
            f"opaque data: {field.name} must be a 1..{_MAX_INT_FIELD}-byte integer, "
            f"got {len(field.value)} bytes",
            step="parse",
        )
    return int.from_bytes(field.value, "little")


def _fixed(size: int) -> Callable[[OpaqueField], bytes]:
    def check(field: OpaqueField) -> bytes:
        if len(field.value) != size:
            raise MalformedEvidence(
                f"opaque data: {field.name} must be {size} bytes, got {len(field.value)}",
                step="parse",
                expected=size,
                actual=len(field.value),
            )
        return field.value

    return check


def _status(field: OpaqueField) -> int:
    return _fixed(1)(field)[0]


def _u32_list(field: OpaqueField) -> tuple[int, ...]:
    if len(field.value) % 4:
        raise MalformedEvidence(
            f"opaque data: {field.name} length {len(field.value)} is not a multiple of 4", step="parse"
        )
    r = Reader(field.value, what=f"opaque {field.name}")
    return tuple(r.u32le(f"count[{i}]") for i in range(len(field.value) // 4))


def _pdi_list(field: OpaqueField) -> tuple[bytes, ...]:
    if len(field.value) % _PDI_SIZE:
        raise MalformedEvidence(
            f"opaque data: {field.name} length {len(field.value)} is not a multiple of {_PDI_SIZE}",
            step="parse",
        )
    v = field.value
    return tuple(v[i : i + _PDI_SIZE] for i in range(0, len(v), _PDI_SIZE))


def _switch_gpu_pdis(field: OpaqueField) -> tuple[tuple[bytes, ...], bytes]:
    head = _SWITCH_GPU_PDI_COUNT * _PDI_SIZE
    if len(field.value) < head:
        raise MalformedEvidence(
            f"opaque data: {field.name} needs at least {head} bytes, got {len(field.value)}",
            step="parse",
        )
    v = field.value
    return tuple(v[i : i + _PDI_SIZE] for i in range(0, head, _PDI_SIZE)), v[head:]


def _vbios(field: OpaqueField) -> str:
    v = field.value
    if len(v) == 8:
        # GPU: 8 bytes, printed as bytes [3].[2].[1].[0].[4] in upper-case hex (gpu-evidence.md §5.1);
        # bytes 5..7 are not part of the version NVIDIA's tools print.
        return ".".join(f"{b:02X}" for b in (v[3], v[2], v[1], v[0], v[4]))
    text = v.split(b"\0", 1)[0]
    if _DOTTED_VERSION.fullmatch(text):
        return text.decode("ascii").upper()  # NVSwitch: ASCII "96.10.55.00.01"
    raise MalformedEvidence(
        "opaque data: VBIOS_VERSION is neither 8 binary bytes nor a dotted ASCII version",
        step="parse",
        actual=v.hex(),
    )


# Validators for the GPU namespace (types whose format is known); the switch namespace differs
# only from type 22 on.
_COMMON_CHECKS: dict[int, Callable[[OpaqueField], object]] = {
    3: _text,  # DRIVER_VERSION
    6: _vbios,
    11: _status,  # NVDEC0_STATUS
    12: _u32_list,  # MSRSCNT
    14: _uint,  # BOARD_ID
    15: _text,  # CHIP_SKU
    16: _text,  # CHIP_SKU_MOD
    17: _text,  # PROJECT
    18: _text,  # PROJECT_SKU
    19: _text,  # PROJECT_SKU_MOD
    20: _fixed(_FWID_SIZE),  # FWID
    21: _status,  # PROTECTED_PCIE_STATUS
}
_GPU_CHECKS: dict[int, Callable[[OpaqueField], object]] = {
    **_COMMON_CHECKS,
    22: _pdi_list,  # SWITCH_PDI
    34: _uint,  # OPAQUE_DATA_VERSION
    35: _text,  # CHIP_INFO
    36: _uint,  # FEATURE_FLAG
}
_SWITCH_CHECKS: dict[int, Callable[[OpaqueField], object]] = {
    **_COMMON_CHECKS,
    22: _fixed(_PDI_SIZE),  # DEVICE_PDI
    26: _switch_gpu_pdis,  # SWITCH_GPU_PDIS
}


@dataclass(frozen=True, slots=True, kw_only=True)
class OpaqueData:
    """The parsed opaque data of a MEASUREMENTS response.

    Attributes:
        raw: The opaque data bytes as signed.
        fields: Every TLV in wire order (unknown types included).
        device: ``"gpu"`` or ``"switch"``: which of NVIDIA's two type namespaces names the fields.
        format_major: Major version from an ``NVDAOD`` header; ``None`` for the legacy framing.
        format_minor: Minor version from an ``NVDAOD`` header; ``None`` for the legacy framing.
    """

    raw: bytes
    fields: tuple[OpaqueField, ...]
    device: DeviceKind
    format_major: int | None = None
    format_minor: int | None = None

    def __iter__(self) -> Iterator[OpaqueField]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def get(self, key: int | str) -> OpaqueField | None:
        """The field with this type number or NVIDIA name (``"FWID"``), or ``None`` if absent."""
        for f in self.fields:
            if key in (f.type, f.name):
                return f
        return None

    def json_value(self, field: OpaqueField) -> str | int | list[int] | list[str]:
        """A JSON-friendly decoded value of one of this data's fields, for display and claims.

        Text fields give their string, integers and status bytes their number, MSRSCNT and
        DISABLED_PORTS a list of numbers, PDI lists a list of hex strings, VBIOS_VERSION the
        formatted version; anything else (unknown types included) its hex.

        Args:
            field: One of :attr:`fields`.

        Returns:
            The decoded value.
        """
        checks = _SWITCH_CHECKS if self.device == "switch" else _GPU_CHECKS
        check = checks.get(field.type)
        value = None if check is None else check(field)
        if isinstance(value, str | int):
            return value
        if field.type == 12:
            return list(_u32_list(field))
        if field.type == 22 and self.device == "gpu":
            return [pdi.hex() for pdi in _pdi_list(field)]
        if field.type == 23 and self.device == "switch":
            return list(self.disabled_ports or ())
        return field.value.hex()

    def _field(self, type_: int) -> OpaqueField | None:
        for f in self.fields:
            if f.type == type_:
                return f
        return None

    def _text_of(self, type_: int) -> str | None:
        f = self._field(type_)
        return None if f is None else _text(f)

    def _uint_of(self, type_: int) -> int | None:
        f = self._field(type_)
        return None if f is None else _uint(f)

    # -- fields every device has ------------------------------------------------------------

    @property
    def driver_version(self) -> str | None:
        """DRIVER_VERSION (type 3), e.g. ``"550.90.07"``; ``None`` on NVSwitch reports."""
        return self._text_of(3)

    @property
    def vbios_version(self) -> str | None:
        """VBIOS_VERSION (type 6) formatted as NVIDIA prints it, e.g. ``"96.00.9F.00.01"`` (upper-case)."""
        f = self._field(6)
        return None if f is None else _vbios(f)

    @property
    def project(self) -> str | None:
        """PROJECT (type 17), e.g. ``"1010"`` (H100 SXM) or ``"G520"`` (HGX)."""
        return self._text_of(17)

    @property
    def project_sku(self) -> str | None:
        """PROJECT_SKU (type 18), e.g. ``"0200"``."""
        return self._text_of(18)

    @property
    def project_sku_mod(self) -> str | None:
        """PROJECT_SKU_MOD (type 19), often empty."""
        return self._text_of(19)

    @property
    def chip_sku(self) -> str | None:
        """CHIP_SKU (type 15), e.g. ``"882"``."""
        return self._text_of(15)

    @property
    def chip_sku_mod(self) -> str | None:
        """CHIP_SKU_MOD (type 16), e.g. ``"0"``."""
        return self._text_of(16)

    @property
    def board_id(self) -> int | None:
        """BOARD_ID (type 14) as an integer (little-endian), e.g. ``0x3B1``."""
        return self._uint_of(14)

    @property
    def gpu_info(self) -> bytes | None:
        """GPU_INFO (type 4), raw. On the GPUs seen, u32 LE architecture (0x180 GH100, 0x1A0 GB100,
        0x1B0 GB20x) followed by u32 LE implementation."""
        f = self._field(4)
        return None if f is None else f.value

    @property
    def fwid(self) -> bytes | None:
        """FWID (type 20): 48-byte SHA-384 to compare with the leaf certificate's FWID extension."""
        f = self._field(20)
        return None if f is None else f.value

    @property
    def nvdec0_status(self) -> int | None:
        """NVDEC0_STATUS (type 11): ``0xAA`` enabled, ``0x55`` disabled (RIM index 35 is then skipped)."""
        f = self._field(11)
        return None if f is None else _status(f)

    @property
    def protected_pcie_status(self) -> int | None:
        """PROTECTED_PCIE_STATUS (type 21): ``0xAA`` PPCIe on, ``0x55`` off."""
        f = self._field(21)
        return None if f is None else _status(f)

    @property
    def measurement_counts(self) -> tuple[int, ...] | None:
        """MSRSCNT (type 12): how many times each measurement index was extended."""
        f = self._field(12)
        return None if f is None else _u32_list(f)

    @property
    def cprinfo(self) -> bytes | None:
        """CPRINFO (type 13), raw."""
        f = self._field(13)
        return None if f is None else f.value

    @property
    def opaque_data_version(self) -> int | None:
        """OPAQUE_DATA_VERSION (type 34); ``None`` when absent (older firmware, read as version 0)."""
        return None if self.device == "switch" else self._uint_of(34)

    @property
    def feature_flag(self) -> int | None:
        """FEATURE_FLAG (type 36): 0 single-GPU passthrough, 1 multi-GPU passthrough, 2 protected PCIe."""
        return None if self.device == "switch" else self._uint_of(36)

    @property
    def chip_info(self) -> str | None:
        """CHIP_INFO (type 35, Blackwell): e.g. ``"GB202"``; used in the driver RIM id."""
        return None if self.device == "switch" else self._text_of(35)

    @property
    def sys_enable_status(self) -> bytes | None:
        """SYS_ENABLE_STATUS (type 33, Blackwell), raw."""
        if self.device == "switch":
            return None
        f = self._field(33)
        return None if f is None else f.value

    @property
    def switch_pdis(self) -> tuple[bytes, ...] | None:
        """GPU reports, SWITCH_PDI (type 22): the PDI of the NVSwitch on each NVLink (all-zero: link off)."""
        if self.device != "gpu":
            return None
        f = self._field(22)
        return None if f is None else _pdi_list(f)

    # -- NVSwitch reports -------------------------------------------------------------------

    @property
    def device_pdi(self) -> bytes | None:
        """Switch reports, DEVICE_PDI (type 22): this switch's own PDI (byte-reversed vs the GPU side)."""
        if self.device != "switch":
            return None
        f = self._field(22)
        return None if f is None else f.value

    @property
    def disabled_ports(self) -> tuple[int, ...] | None:
        """Switch reports, DISABLED_PORTS (type 23) expanded as NVAT does: each bit, most significant
        first, stands for 4 ports (1 = disabled)."""
        if self.device != "switch":
            return None
        f = self._field(23)
        if f is None:
            return None
        return tuple(bit for byte in f.value for i in range(7, -1, -1) for bit in [(byte >> i) & 1] * 4)

    @property
    def switch_position_id(self) -> bytes | None:
        """Switch reports, SWITCH_POSITION_ID (type 24), raw."""
        if self.device != "switch":
            return None
        f = self._field(24)
        return None if f is None else f.value

    @property
    def switch_lock_status(self) -> bytes | None:
        """Switch reports, SWITCH_LOCK_STATUS (type 25), raw."""
        if self.device != "switch":
            return None
        f = self._field(25)
        return None if f is None else f.value

    @property
    def switch_gpu_pdis(self) -> tuple[bytes, ...] | None:
        """Switch reports, the 8 GPU PDIs at the start of SWITCH_GPU_PDIS (type 26)."""
        if self.device != "switch":
            return None
        f = self._field(26)
        return None if f is None else _switch_gpu_pdis(f)[0]

    @property
    def switch_ports(self) -> bytes | None:
        """Switch reports, the per-link port bytes after the GPU PDIs in type 26 (NVAT's SWITCH_PORT)."""
        if self.device != "switch":
            return None
        f = self._field(26)
        return None if f is None else _switch_gpu_pdis(f)[1]


def _looks_like_switch(fields: list[tuple[int, bytes]]) -> bool:
    for t, v in fields:
        if t == 6:
            return len(v) != 8 and _DOTTED_VERSION.fullmatch(v.split(b"\0", 1)[0]) is not None
    return False


def parse_opaque_data(data: bytes, *, base: int = 0) -> OpaqueData:
    """Parse the opaque data of a MEASUREMENTS response.

    Args:
        data: The OpaqueData bytes (exactly OpaqueLength of them).
        base: Offset of ``data`` in the report, for error messages.

    Returns:
        The fields in wire order, with NVIDIA's names.

    Raises:
        MalformedEvidence: a truncated TLV, a duplicated type, or a known field in the wrong format.
    """
    r = Reader(data, what="opaque data", base=base)
    major: int | None = None
    minor: int | None = None
    has_value_type = False
    if len(data) >= _NVDAOD_HEADER_SIZE and data.startswith(_NVDAOD_MAGIC):
        # NVDAOD framing (NVAT spdm_opaque_data_parser.cpp): magic, u16 profile, major, minor, reserved.
        r.skip(len(_NVDAOD_MAGIC), "magic")
        profile = r.u16le("profile")
        if profile != _NVDAOD_PROFILE:
            raise MalformedEvidence(f"opaque data: unsupported NVDAOD profile {profile}", step="parse")
        major = r.u8("major")
        minor = r.u8("minor")
        r.skip(2, "reserved")
        has_value_type = True

    raw_fields: list[tuple[int, int | None, bytes]] = []
    seen: set[int] = set()
    while r.remaining:
        type_ = r.u16le("DataType")
        value_type = r.u16le("DataValueType") if has_value_type else None
        size = r.u16le("DataSize")
        value = r.take(size, f"Data of type {type_}")
        if type_ in seen:
            raise MalformedEvidence(
                f"opaque data: type {type_} occurs more than once", step="parse", index=type_
            )
        seen.add(type_)
        raw_fields.append((type_, value_type, value))
    r.expect_end()

    device: DeviceKind = "switch" if _looks_like_switch([(t, v) for t, _, v in raw_fields]) else "gpu"
    names = SWITCH_FIELD_NAMES if device == "switch" else GPU_FIELD_NAMES
    checks = _SWITCH_CHECKS if device == "switch" else _GPU_CHECKS
    fields = tuple(
        OpaqueField(type=t, name=names.get(t, f"UNKNOWN_{t}"), value=v, value_type=vt)
        for t, vt, v in raw_fields
    )
    for f in fields:
        check = checks.get(f.type)
        if check is not None:
            check(f)
    return OpaqueData(raw=bytes(data), fields=fields, device=device, format_major=major, format_minor=minor)
