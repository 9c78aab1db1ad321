"""Golden measurements and SPDM attestation reports of the virtual CC GPU, in NVIDIA's exact layout.

The report is what ``nvmlDeviceGetConfComputeGpuAttestationReport`` returns (gpu-evidence.md §4):
the 37-byte SPDM 1.1 GET_MEASUREMENTS request ‖ the MEASUREMENTS response with 64 DMTF
measurement blocks, the responder nonce, the opaque-data TLVs (§5.1, in the order real GPUs emit
them) and a raw ``r‖s`` ECDSA P-384/SHA-384 signature by the leaf key over everything before it.

Golden values are SHA-384 digests of (chip, component, version, index, alternative), so they
depend only on the architecture/chip and the driver and VBIOS versions — never on the seed.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from ccai.device import Architecture
from ccai.virtual._gpu_model import VirtualGpuModel, check_driver_version, vbios_tlv_bytes

__all__ = [
    "BLOCK_COUNT",
    "NVDEC0_INDEX",
    "FeatureFlag",
    "GoldenMeasurement",
    "Tlv",
    "build_report",
    "fwid_for",
    "golden_measurements",
    "runtime_measurements",
]

BLOCK_COUNT = 64
DIGEST_SIZE = 48
#: RIM index skipped by verifiers when NVDEC0_STATUS is 0x55 (gpu-evidence.md §8 rule 5).
NVDEC0_INDEX = 35

# SPDM 1.1 constants (DSP0274; gpu-evidence.md §4).
_SPDM_VERSION_1_1 = 0x11
_GET_MEASUREMENTS = 0xE0
_MEASUREMENTS = 0x60
_DMTF_SPEC = 0x01
_DMTF_DIGEST_TYPE = 0x01  # immutable ROM / digest representation, as every real block

# Number of alternatives per RIM index, as in real GH100 RIMs (gpu-evidence.md §7.4).
_ALTERNATIVES = {12: 4, 23: 2, 24: 2, 32: 2, 33: 2, 34: 2, 35: 4, 36: 3}


class Tlv:
    """Opaque-data TLV types (NVIDIA's names; gpu-evidence.md §5.1)."""

    DRIVER_VERSION = 3
    GPU_INFO = 4
    VBIOS_VERSION = 6
    NVDEC0_STATUS = 11
    MSRSCNT = 12
    CPRINFO = 13
    BOARD_ID = 14
    CHIP_SKU = 15
    CHIP_SKU_MOD = 16
    PROJECT = 17
    PROJECT_SKU = 18
    PROJECT_SKU_MOD = 19
    FWID = 20
    PROTECTED_PCIE_STATUS = 21
    SWITCH_PDI = 22
    SYS_ENABLE_STATUS = 33
    OPAQUE_DATA_VERSION = 34
    CHIP_INFO = 35
    FEATURE_FLAG = 36


class FeatureFlag:
    """FEATURE_FLAG values: single-GPU passthrough, multi-GPU passthrough, protected PCIe."""

    SPT = 0
    MPT = 1
    PPCIE = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class GoldenMeasurement:
    """One RIM entry: golden index ``index`` (SPDM block ``index + 1``).

    Attributes:
        index: RIM index 0..63.
        component: ``"driver"``, ``"vbios"`` or ``None`` when no RIM measures it.
        name: NVIDIA-style resource name (``Measurement_7``, ``HashedMeasurement_1_FSP``, …).
        alternatives: Accepted 48-byte values (one or more).
    """

    index: int
    component: str | None
    name: str
    alternatives: tuple[bytes, ...]

    @property
    def active(self) -> bool:
        """Whether a RIM marks this index active."""
        return self.component is not None


def _digest(*parts: str | int) -> bytes:
    return hashlib.sha384("\x00".join(str(p) for p in ("ccai virtual gpu golden", *parts)).encode()).digest()


def _name(component: str, index: int) -> str:
    if component == "vbios":
        return f"HashedMeasurement_{index}_FSP" if 1 <= index <= 6 else f"Measurement_{index}"
    if index in (32, 33, 36, 37, 38):
        return f"HashedMeasurement_{index}_GSP"
    if index == 34:
        return "MixedHashedMeasurement_34"
    if index in (7, 28, 35):
        return f"Measurement_{index}"
    return f"MixedMeasurement_{index}"


def golden_measurements(
    model: VirtualGpuModel, driver_version: str, vbios_version: str
) -> tuple[GoldenMeasurement, ...]:
    """The 64 golden entries for ``model`` at these versions (index order).

    VBIOS index 0 is active with an all-zero value, as in real GH100 VBIOS RIMs.
    """
    out = []
    for i in range(BLOCK_COUNT):
        if i in model.vbios_indices:
            component, version = "vbios", vbios_version.upper()
        elif i in model.driver_indices:
            component, version = "driver", driver_version
        else:
            out.append(
                GoldenMeasurement(index=i, component=None, name=f"Measurement_{i}", alternatives=(bytes(48),))
            )
            continue
        if component == "vbios" and i == 0:
            alts: tuple[bytes, ...] = (bytes(DIGEST_SIZE),)
        else:
            alts = tuple(
                _digest(model.chip, component, version, i, k) for k in range(_ALTERNATIVES.get(i, 1))
            )
        out.append(
            GoldenMeasurement(index=i, component=component, name=_name(component, i), alternatives=alts)
        )
    return tuple(out)


def runtime_measurements(
    model: VirtualGpuModel,
    golden: Sequence[GoldenMeasurement],
    *,
    gpu_index: int,
    devtools: bool,
    drift: bool,
) -> tuple[bytes, ...]:
    """The 64 values GPU ``gpu_index`` reports (block ``i + 1`` ↔ golden ``i``).

    * An index with several alternatives reports alternative ``gpu_index mod n``.
    * NVDEC0 disabled (``0x55``): index 35 reports a value no RIM lists — verifiers must skip it.
    * DevTools mode: the model's ``devtools_indices`` report different values (the mode is measured).
    * ``drift``: the model's ``drift_index`` reports a value outside the RIM (fault injection).
    """
    values = []
    for g in golden:
        if not g.active:
            values.append(bytes(DIGEST_SIZE))
            continue
        value = g.alternatives[gpu_index % len(g.alternatives)]
        if g.index == NVDEC0_INDEX and model.nvdec0_status == 0x55:
            value = _digest(model.chip, "nvdec0-disabled", g.index)
        if devtools and g.index in model.devtools_indices:
            value = hashlib.sha384(b"ccai virtual gpu devtools\x00" + value).digest()
        if drift and g.index == model.drift_index:
            value = hashlib.sha384(b"ccai virtual gpu drift\x00" + value).digest()
        values.append(value)
    return tuple(values)


def fwid_for(model: VirtualGpuModel, vbios_version: str) -> bytes:
    """The 48-byte FWID of the GSP FMC firmware that ships with this VBIOS (same on every GPU)."""
    return _digest(model.chip, "gsp-fmc", vbios_version.upper())


def _tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("<HH", kind, len(value)) + value


def _ascii(text: str, size: int) -> bytes:
    raw = text.encode("ascii")
    return raw + bytes(size - len(raw))


def _opaque(
    model: VirtualGpuModel,
    *,
    driver_version: str,
    vbios_version: str,
    measurements: Sequence[bytes],
    fwid: bytes,
    feature_flag: int,
    switch_pdis: bytes | None,
) -> bytes:
    counts = b"".join(
        struct.pack("<I", 0 if not any(m) else 1 + hashlib.sha256(m).digest()[0] % 7) for m in measurements
    )
    parts = [
        _tlv(Tlv.VBIOS_VERSION, vbios_tlv_bytes(vbios_version)),
        _tlv(Tlv.BOARD_ID, struct.pack("<I", model.board_id)),
        _tlv(Tlv.CHIP_SKU, _ascii(model.chip_sku, 9)),
        _tlv(Tlv.CHIP_SKU_MOD, _ascii("0", 5)),
        _tlv(Tlv.PROJECT, _ascii(model.project, 5)),
        _tlv(Tlv.PROJECT_SKU, _ascii(model.project_sku, 5)),
        _tlv(Tlv.PROJECT_SKU_MOD, model.project_sku_mod),
        _tlv(Tlv.DRIVER_VERSION, check_driver_version(driver_version).encode("ascii") + b"\x00"),
        _tlv(Tlv.GPU_INFO, model.gpu_info),
        _tlv(Tlv.MSRSCNT, counts),
        _tlv(Tlv.CPRINFO, model.cprinfo),
        _tlv(Tlv.NVDEC0_STATUS, bytes([model.nvdec0_status])),
        _tlv(Tlv.FWID, fwid),
    ]
    # Observed orders (gpu-evidence.md §5.1): Hopper …,20,21,[22],34,36; Blackwell …,20,33,35,34,36.
    if model.architecture is Architecture.HOPPER:
        parts.append(
            _tlv(Tlv.PROTECTED_PCIE_STATUS, b"\xaa" if feature_flag == FeatureFlag.PPCIE else b"\x55")
        )
        if switch_pdis is not None:
            parts.append(_tlv(Tlv.SWITCH_PDI, switch_pdis))
    else:
        if model.sys_enable_status is not None:
            parts.append(_tlv(Tlv.SYS_ENABLE_STATUS, model.sys_enable_status))
        if model.chip_info is not None:
            parts.append(_tlv(Tlv.CHIP_INFO, model.chip_info.encode("ascii") + b"\x00"))
    parts.append(_tlv(Tlv.OPAQUE_DATA_VERSION, struct.pack("<H", 1)))
    parts.append(_tlv(Tlv.FEATURE_FLAG, struct.pack("<H", feature_flag)))
    return b"".join(parts)


def build_report(
    model: VirtualGpuModel,
    *,
    driver_version: str,
    vbios_version: str,
    measurements: Sequence[bytes],
    request_nonce: bytes,
    responder_nonce: bytes,
    fwid: bytes,
    feature_flag: int,
    signing_key: ec.EllipticCurvePrivateKey,
    switch_pdis: bytes | None = None,
) -> bytes:
    """Assemble and sign one attestation report.

    Args:
        model: GPU model (opaque identity fields, TLV order).
        driver_version: Driver version for DRIVER_VERSION.
        vbios_version: VBIOS version for VBIOS_VERSION.
        measurements: 64 values of 48 bytes (block 1..64).
        request_nonce: The 32-byte nonce placed in the signed request copy.
        responder_nonce: The GPU's own 32-byte nonce.
        fwid: 48-byte FWID (must equal the leaf certificate's).
        feature_flag: :class:`FeatureFlag` value.
        signing_key: The per-boot leaf key.
        switch_pdis: 18 × 8-byte NVSwitch PDIs (PPCIe only).

    Returns:
        ``request (37 B) ‖ response``, the response ending in a 96-byte ``r‖s`` signature.
    """
    if len(request_nonce) != 32 or len(responder_nonce) != 32 or len(fwid) != DIGEST_SIZE:
        raise ValueError("nonces must be 32 bytes and the FWID 48 bytes")
    if len(measurements) != BLOCK_COUNT or any(len(m) != DIGEST_SIZE for m in measurements):
        raise ValueError("need 64 measurements of 48 bytes")
    opaque = _opaque(
        model,
        driver_version=driver_version,
        vbios_version=vbios_version,
        measurements=measurements,
        fwid=fwid,
        feature_flag=feature_flag,
        switch_pdis=switch_pdis,
    )
    return sign_spdm_report(
        measurements=measurements,
        opaque=opaque,
        request_nonce=request_nonce,
        responder_nonce=responder_nonce,
        signing_key=signing_key,
    )


def sign_spdm_report(
    *,
    measurements: Sequence[bytes],
    opaque: bytes,
    request_nonce: bytes,
    responder_nonce: bytes,
    signing_key: ec.EllipticCurvePrivateKey,
) -> bytes:
    """``request ‖ MEASUREMENTS response ‖ r‖s`` for any NVIDIA device (GPU or NVSwitch).

    Args:
        measurements: The blocks' 48-byte values, block 1 first.
        opaque: The opaque data (TLVs).
        request_nonce: The 32-byte nonce placed in the signed request copy.
        responder_nonce: The device's own 32-byte nonce.
        signing_key: The per-boot leaf key.
    """
    # Request: SPDMVersion, GET_MEASUREMENTS, Param1 = signature requested, Param2 = all blocks,
    # nonce, SlotIDParam (gpu-evidence.md §4.1).
    request = bytes([_SPDM_VERSION_1_1, _GET_MEASUREMENTS, 0x01, 0xFF]) + request_nonce + b"\x00"
    record = b"".join(
        struct.pack("<BBHBH", i + 1, _DMTF_SPEC, 3 + DIGEST_SIZE, _DMTF_DIGEST_TYPE, DIGEST_SIZE) + value
        for i, value in enumerate(measurements)
    )
    # Response header: version, MEASUREMENTS, Param1, Param2 (slot 0), block count, 24-bit record length.
    response = (
        bytes([_SPDM_VERSION_1_1, _MEASUREMENTS, 0x00, 0x00, len(measurements)])
        + len(record).to_bytes(3, "little")
        + record
        + responder_nonce
        + struct.pack("<H", len(opaque))
        + opaque
    )
    signed = request + response
    r, s = decode_dss_signature(signing_key.sign(signed, ec.ECDSA(hashes.SHA384())))
    return signed + r.to_bytes(48, "big") + s.to_bytes(48, "big")
