"""Virtual AMD SEV-SNP: attestation reports in the exact ATTESTATION_REPORT layout, and their VCEK.

The report follows the SNP Firmware ABI spec #56860, Table 23 (cpu-evidence.md §3.1): 1184 bytes,
little-endian, version 3 (CPUID family/model/stepping of a Genoa part), TCB_VERSION in the
Milan/Genoa byte layout, signer info SIGNING_KEY = VCEK, and an ECDSA P-384/SHA-384 signature over
bytes 0x000..0x29F whose r and s are stored little-endian in 72 bytes each. The VCEK carries the
reported TCB and the CHIP_ID (hwID) as AMD's do, so the verifier's TCB and chip binding applies.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from ccai.collateral import SnpCollateral
from ccai.virtual._tee_pki import VirtualTeePki

__all__ = ["SnpPlatform", "build_snp_report", "snp_collateral"]

_POLICY_RESERVED_17 = 1 << 17
_POLICY_SMT = 1 << 16


@dataclass(frozen=True, slots=True, kw_only=True)
class SnpPlatform:
    """The virtual SEV-SNP platform (one Genoa-like chip).

    Attributes:
        product: ``"Genoa"`` or ``"Milan"`` (selects the CPUID bytes and certificate names).
        bl, tee, snp, ucode: The TCB security patch levels (current = reported = committed = launch).
        firmware: (major, minor, build) of the SNP firmware.
    """

    product: str = "Genoa"
    bl: int = 10
    tee: int = 0
    snp: int = 23
    ucode: int = 84
    firmware: tuple[int, int, int] = (1, 55, 38)

    @property
    def cpuid(self) -> bytes:
        """CPUID family, model, stepping as a v3 report records them."""
        return bytes([0x19, 0x11, 0x01]) if self.product == "Genoa" else bytes([0x19, 0x01, 0x01])

    def tcb_bytes(self) -> bytes:
        """TCB_VERSION in the Milan/Genoa layout: [0] BL, [1] TEE, [2:6] reserved, [6] SNP, [7] UCODE."""
        return bytes([self.bl, self.tee, 0, 0, 0, 0, self.snp, self.ucode])


def chip_id(pki: VirtualTeePki) -> bytes:
    """The chip's 64-byte CHIP_ID (the VCEK's hwID)."""
    return pki.derive_bytes("snp-chip-id", 64)


def build_snp_report(
    pki: VirtualTeePki,
    platform: SnpPlatform,
    *,
    report_data: bytes,
    measurement: bytes,
    host_data: bytes,
    report_id: bytes,
    debug: bool = False,
) -> bytes:
    """Build and sign an SEV-SNP attestation report (version 3).

    Args:
        pki: The test PKI (the VCEK key).
        platform: Product and TCB.
        report_data: The 64 REPORT_DATA bytes chosen by the guest.
        measurement: 48-byte launch digest.
        host_data: 32 bytes chosen by the host at launch.
        report_id: 32-byte REPORT_ID of the guest.
        debug: Set GUEST_POLICY.DEBUG (a debuggable guest; verifiers reject it by default).

    Returns:
        The 1184-byte report.
    """
    if len(report_data) != 64:
        raise ValueError("report_data must be 64 bytes")
    policy = _POLICY_RESERVED_17 | _POLICY_SMT | ((1 << 19) if debug else 0)
    tcb = platform.tcb_bytes()
    major, minor, build = platform.firmware
    chip = chip_id(pki)
    out = bytearray(0x4A0)
    struct.pack_into("<IIQ", out, 0x000, 3, 1, policy)  # VERSION, GUEST_SVN, POLICY
    out[0x010:0x020] = pki.derive_bytes("snp-family-id", 16)
    out[0x020:0x030] = pki.derive_bytes("snp-image-id", 16)
    struct.pack_into("<II", out, 0x030, 0, 1)  # VMPL 0, SIGNATURE_ALGO ECDSA P-384/SHA-384
    out[0x038:0x040] = tcb  # CURRENT_TCB
    struct.pack_into("<QI", out, 0x040, 0x3, 0)  # PLATFORM_INFO (SMT_EN | TSME_EN), signer info: VCEK
    out[0x050:0x090] = report_data
    out[0x090:0x0C0] = measurement
    out[0x0C0:0x0E0] = host_data
    out[0x140:0x160] = report_id
    out[0x160:0x180] = b"\xff" * 32  # REPORT_ID_MA: no migration agent
    out[0x180:0x188] = tcb  # REPORTED_TCB
    out[0x188:0x18B] = platform.cpuid
    out[0x1A0:0x1E0] = chip
    out[0x1E0:0x1E8] = tcb  # COMMITTED_TCB
    out[0x1E8:0x1EC] = bytes([build, minor, major, 0])
    out[0x1EC:0x1F0] = bytes([build, minor, major, 0])
    out[0x1F0:0x1F8] = tcb  # LAUNCH_TCB
    vcek = pki.vcek(
        platform.product,
        chip_id=chip,
        bl=platform.bl,
        tee=platform.tee,
        snp=platform.snp,
        ucode=platform.ucode,
    )
    key = vcek.private_key
    assert isinstance(key, ec.EllipticCurvePrivateKey)  # VCEKs are always P-384
    r, s = decode_dss_signature(
        key.sign(bytes(out[:0x2A0]), ec.ECDSA(hashes.SHA384(), deterministic_signing=True))
    )
    out[0x2A0:0x2E8] = r.to_bytes(72, "little")
    out[0x2E8:0x330] = s.to_bytes(72, "little")
    return bytes(out)


def snp_collateral(pki: VirtualTeePki, platform: SnpPlatform, *, crl: bytes | None = None) -> SnpCollateral:
    """The VCEK, ASK and ARK (DER) for ``platform``, as KDS serves them, and optionally the ARK CRL."""
    from cryptography.hazmat.primitives.serialization import Encoding

    vcek = pki.vcek(
        platform.product,
        chip_id=chip_id(pki),
        bl=platform.bl,
        tee=platform.tee,
        snp=platform.snp,
        ucode=platform.ucode,
    )
    return SnpCollateral(
        vcek=vcek.certificate.public_bytes(Encoding.DER),
        ask=pki.ask(platform.product).certificate.public_bytes(Encoding.DER),
        ark=pki.ark(platform.product).certificate.public_bytes(Encoding.DER),
        crl=crl,
    )
