"""Virtual NVSwitches (LS10) of a virtual HGX system, in the real LS10 evidence format.

An HGX H100/H200 board has 8 GPUs and 4 NVSwitches. Each virtual switch produces what a real one
does (gpu-evidence.md §16.3): an SPDM 1.1 MEASUREMENTS report of 31 blocks whose opaque data
carries the ASCII BIOS version, the switch's DEVICE_PDI, the measurement counts, the GPU PDIs of its
links (SWITCH_GPU_PDIS), DISABLED_PORTS, SWITCH_POSITION_ID and SWITCH_LOCK_STATUS — signed by a
per-boot ``LS_10 A01 FSP FMC LF`` key whose 5-certificate chain (``LS_10 A01 FSP BROM`` →
``LS_10 Provisioner ICA 1`` → ``GH100 Identity`` → device root) lives in the virtual GPU's test
PKI, and a BIOS RIM ``NV_SWITCH_BIOS_5612_0002_890_<BIOS>`` signed under the test RIM root by an
``L4 LS10`` signer.

The GPU side of the topology is the virtual GPU's: in protected-PCIe mode each GPU lists, in
SWITCH_PDI, the PDIs of the switches its 18 NVLinks reach (byte-reversed, as real GPUs do).
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ccai.virtual._common import der_tlv
from ccai.virtual._gpu_model import GH100, VirtualGpuModel
from ccai.virtual._gpu_pki import (
    _CHAIN_FROM,
    _FOREVER,
    _RIM_CA_WINDOW,
    _RIM_L4_WINDOW,
    _SAN_DEVICE_OID,
    PkiCredential,
    VirtualPki,
    _name,
    _rim_name,
)
from ccai.virtual._gpu_report import BLOCK_COUNT, DIGEST_SIZE, GoldenMeasurement, sign_spdm_report
from ccai.virtual._gpu_rim import build_rim

__all__ = [
    "DEFAULT_SWITCH_BIOS",
    "LS10",
    "SWITCH_BLOCKS",
    "switch_bios_rim",
    "switch_bios_rim_id",
    "switch_chain",
    "switch_golden",
    "switch_report",
]

#: BIOS version of the virtual switches (the real vector's).
DEFAULT_SWITCH_BIOS = "96.10.55.00.01"
#: Measurement blocks an LS10 report carries (RIM indices 0–30).
SWITCH_BLOCKS = 31
#: The LS10 switch as a device model of the test PKI (names, chain window; GH100 Identity CA).
LS10: VirtualGpuModel = dataclasses.replace(
    GH100, chip="LS_10", cert_chip="LS_10", identity_chip="GH100", provisioner_suffix="1"
)
_PDI_SIZE = 8
_GPU_PDIS = 8
_SWITCH_LINKS = 64
# Alternatives per index, as in the real LS10 BIOS RIM (indices 9–25 carry 4).
_ALTERNATIVES = {i: 4 for i in range(9, 26)}


def switch_bios_rim_id(bios_version: str) -> str:
    """``NV_SWITCH_BIOS_5612_0002_890_<BIOS>`` (the constants NVIDIA's tools use for LS10)."""
    return f"NV_SWITCH_BIOS_5612_0002_890_{bios_version.replace('.', '').upper()}"


def switch_golden(bios_version: str) -> tuple[GoldenMeasurement, ...]:
    """The BIOS RIM's 64 entries: 0–30 active (component ``bios``), the rest inactive."""
    out = []
    for i in range(BLOCK_COUNT):
        if i >= SWITCH_BLOCKS:
            out.append(
                GoldenMeasurement(index=i, component=None, name=f"Measurement_{i}", alternatives=(bytes(48),))
            )
            continue
        alts = tuple(
            hashlib.sha384(
                f"ccai virtual ls10 golden\x00{bios_version.upper()}\x00{i}\x00{k}".encode()
            ).digest()
            for k in range(_ALTERNATIVES.get(i, 1))
        )
        out.append(GoldenMeasurement(index=i, component="bios", name=f"Measurement_{i}", alternatives=alts))
    return tuple(out)


def _brom(pki: VirtualPki, index: int) -> PkiCredential:
    serial = pki.device_id(LS10, index)
    return pki._issue(
        f"brom:{LS10.chip}:{index}",
        subject=_name("LS_10 A01 FSP BROM", serial=f"{serial:X}", country=True),
        issuer=pki.provisioner_ca(LS10),
        window=(_CHAIN_FROM[LS10.architecture], _FOREVER),
        ca=True,
        serial=serial,
        crl_sign=False,
    )


def _leaf(pki: VirtualPki, index: int, boot: int) -> PkiCredential:
    key = pki.derive_key(f"leaf:{LS10.chip}:{index}:{boot}")
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
    serial = (int.from_bytes(ski, "big") & ~(0b11 << 158)) | (1 << 158)
    san = x509.SubjectAlternativeName(
        [x509.OtherName(_SAN_DEVICE_OID, der_tlv(0x0C, f"CCAI-TEST:LS10:{serial >> 96:016X}".encode()))]
    )
    return pki._issue(
        f"leaf:{LS10.chip}:{index}:{boot}",
        subject=_name("LS_10 A01 FSP FMC LF", serial=f"{serial:040X}", country=True),
        issuer=_brom(pki, index),
        window=(_CHAIN_FROM[LS10.architecture], _FOREVER),
        ca=False,
        serial=serial,
        key=key,
        extra=[(san, False)],
    )


def switch_chain(pki: VirtualPki, index: int, *, boot: int) -> tuple[x509.Certificate, ...]:
    """Switch ``index``'s 5-certificate chain, leaf first, test root last."""
    return (
        _leaf(pki, index, boot).certificate,
        _brom(pki, index).certificate,
        pki.provisioner_ca(LS10).certificate,
        pki.identity_ca(GH100).certificate,
        pki.device_root.certificate,
    )


def _rim_signer(pki: VirtualPki) -> PkiCredential:
    ca = pki._issue(
        "rim-ca:ls10",
        subject=_rim_name("ccai TEST Reference Value LS10 CA"),
        issuer=pki.rim_root,
        window=_RIM_CA_WINDOW,
        ca=True,
        extra=[pki._ocsp_ext()],
    )
    l3 = pki._issue(
        "rim-l3:ls10",
        subject=_rim_name("ccai TEST Reference Value L3 LS10 001"),
        issuer=ca,
        window=_RIM_CA_WINDOW,
        ca=True,
        extra=[pki._ocsp_ext()],
    )
    return pki._issue(
        "rim-l4:ls10",
        subject=_rim_name("ccai TEST Reference Value L4 LS10"),
        issuer=l3,
        window=_RIM_L4_WINDOW,
        ca=False,
        extra=[pki._ocsp_ext()],
    )


def switch_bios_rim(pki: VirtualPki, bios_version: str) -> bytes:
    """The signed BIOS RIM of the virtual switches (product ``LS10``, edition ``SWITCH``)."""
    signer = _rim_signer(pki)
    chain = [signer.certificate]
    while chain[-1].issuer != chain[-1].subject:
        parent = pki.issuer_of(chain[-1])
        assert parent is not None  # every RIM certificate is issued by this PKI
        chain.append(parent.certificate)
    return build_rim(
        LS10,
        component="bios",
        version=bios_version.upper(),
        golden=switch_golden(bios_version),
        signer=signer,
        chain=[c.public_bytes(serialization.Encoding.PEM) for c in chain],
        product="LS10",
        edition="SWITCH",
    )


def _tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("<HH", kind, len(value)) + value


def switch_report(
    pki: VirtualPki,
    index: int,
    *,
    boot: int,
    bios_version: str,
    device_pdi: bytes,
    gpu_pdis: Sequence[bytes],
    request_nonce: bytes,
    responder_nonce: bytes,
    drift: bool = False,
) -> bytes:
    """A signed LS10 attestation report of switch ``index``.

    Args:
        pki: The test PKI (the switch's leaf key).
        index: Switch index (SWITCH_POSITION_ID).
        boot: Boot counter (a new boot, a new attestation key).
        bios_version: Dotted BIOS version.
        device_pdi: This switch's PDI as it signs it.
        gpu_pdis: The PDIs of the (up to 8) GPUs on its links.
        request_nonce: The verifier's 32-byte nonce.
        responder_nonce: The switch's own nonce.
        drift: Report a value outside the BIOS RIM at index 9 (fault injection).
    """
    golden = switch_golden(bios_version)
    values = []
    for g in golden[:SWITCH_BLOCKS]:
        value = g.alternatives[index % len(g.alternatives)]
        if drift and g.index == 9:
            value = hashlib.sha384(b"ccai virtual switch drift\x00" + value).digest()
        values.append(value)
    counts = b"".join(struct.pack("<I", 1) for _ in range(26))
    pdis = b"".join(gpu_pdis[:_GPU_PDIS]).ljust(_GPU_PDIS * _PDI_SIZE, b"\x00")
    # One port byte per link: the GPU (0–7) on it, 0xff for an unused link.
    ports = bytes((link // 4) % _GPU_PDIS if link < 32 else 0xFF for link in range(_SWITCH_LINKS))
    opaque = b"".join(
        [
            _tlv(6, bios_version.upper().encode("ascii")),
            _tlv(22, device_pdi),
            _tlv(12, counts + bytes(104 - len(counts))),
            _tlv(26, pdis + ports),
            _tlv(23, bytes([0xEC, 0x00])),
            _tlv(24, struct.pack("<H", index)),
            _tlv(25, struct.pack("<H", 1)),
        ]
    )
    leaf = _leaf(pki, index, boot)
    if len(device_pdi) != _PDI_SIZE or any(len(p) != _PDI_SIZE for p in gpu_pdis):
        raise ValueError("PDIs are 8 bytes")
    assert all(len(v) == DIGEST_SIZE for v in values)
    return sign_spdm_report(
        measurements=values,
        opaque=opaque,
        request_nonce=request_nonce,
        responder_nonce=responder_nonce,
        signing_key=leaf.private_key,
    )
