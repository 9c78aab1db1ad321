"""AMD SEV-SNP attestation reports (versions 2, 3, 5): a pure, bounds-checked parser.

Layout: AMD "SEV Secure Nested Paging Firmware ABI Specification" (#56860), Table 23
"ATTESTATION_REPORT Structure" (revision 1.57); TCB_VERSION: Table 3 (Milan/Genoa) and the Turin
layout (virtee ``TcbVersion::from_turin_bytes``); GUEST_POLICY: Table 9; PLATFORM_INFO: Table 24.
Everything is little-endian. The signature covers bytes 0x000..0x29F; its r and s are stored
little-endian, 72 bytes each.

Also here: the X.509 extensions of VCEK/VLEK certificates (AMD KDS specification #57230, "VCEK
certificate extensions"), whose hwID value carries no DER tag.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cryptography import x509

from ccai._binary import Reader
from ccai.errors import MalformedEvidence, UnsupportedEvidence
from ccai.evidence._cpu_der import TAG_IA5STRING, TAG_OCTET_STRING, Tlv, decode_integer, read_all

__all__ = [
    "SNP_REPORT_SIZE",
    "SNP_SIGNED_SIZE",
    "SnpGuestPolicy",
    "SnpPlatformInfo",
    "SnpProduct",
    "SnpReport",
    "SnpSigningKey",
    "SnpTcbVersion",
    "VcekExtensions",
    "parse_snp_report",
    "parse_vcek_extensions",
    "snp_product_from_cpuid",
]

SNP_REPORT_SIZE = 0x4A0
SNP_SIGNED_SIZE = 0x2A0

_AMD_EXT = "1.3.6.1.4.1.3704.1"


class SnpProduct(enum.StrEnum):
    """AMD EPYC generations with an SNP root of trust (ARK/ASK per product)."""

    MILAN = "Milan"
    GENOA = "Genoa"
    TURIN = "Turin"


class SnpSigningKey(enum.IntEnum):
    """SIGNING_KEY field of the signer info (report offset 0x48, bits 4:2)."""

    VCEK = 0
    VLEK = 1
    NONE = 7


class SnpGuestPolicy(enum.IntFlag):
    """GUEST_POLICY bits above the ABI version bytes (ABI spec Table 9)."""

    SMT = 1 << 16
    RESERVED_17_MUST_BE_ONE = 1 << 17
    MIGRATE_MA = 1 << 18
    DEBUG = 1 << 19
    SINGLE_SOCKET = 1 << 20
    CXL_ALLOW = 1 << 21
    MEM_AES_256_XTS = 1 << 22
    RAPL_DIS = 1 << 23
    CIPHERTEXT_HIDING = 1 << 24
    PAGE_SWAP_DISABLE = 1 << 25


class SnpPlatformInfo(enum.IntFlag):
    """PLATFORM_INFO bits (ABI spec Table 24)."""

    SMT_EN = 1 << 0
    TSME_EN = 1 << 1
    ECC_EN = 1 << 2
    RAPL_DIS = 1 << 3
    CIPHERTEXT_HIDING_EN = 1 << 4
    ALIAS_CHECK_COMPLETE = 1 << 5
    TIO_EN = 1 << 7


@dataclass(frozen=True, slots=True, kw_only=True)
class SnpTcbVersion:
    """A TCB_VERSION decoded for one product generation.

    Attributes:
        raw: The 8 bytes as stored.
        boot_loader, tee, snp, microcode: The SPLs present on every generation.
        fmc: Firmware-microcode SPL, Turin and later only (``None`` before).
    """

    raw: bytes
    boot_loader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None

    @classmethod
    def decode(cls, raw: bytes, product: SnpProduct) -> SnpTcbVersion:
        """Decode 8 TCB_VERSION bytes with the layout of ``product``.

        Milan/Genoa: [0] BOOT_LOADER, [1] TEE, [2:6] reserved, [6] SNP, [7] MICROCODE.
        Turin: [0] FMC, [1] BOOT_LOADER, [2] TEE, [3] SNP, [4:7] reserved, [7] MICROCODE.
        """
        if len(raw) != 8:
            raise MalformedEvidence("TCB_VERSION must be 8 bytes", step="parse", expected=8, actual=len(raw))
        if product is SnpProduct.TURIN:
            return cls(raw=raw, fmc=raw[0], boot_loader=raw[1], tee=raw[2], snp=raw[3], microcode=raw[7])
        return cls(raw=raw, boot_loader=raw[0], tee=raw[1], snp=raw[6], microcode=raw[7])

    def as_dict(self) -> dict[str, int]:
        """The SPLs by their KDS names (``blSPL``, ``teeSPL``, ``snpSPL``, ``ucodeSPL``, ``fmcSPL``)."""
        out = {"blSPL": self.boot_loader, "teeSPL": self.tee, "snpSPL": self.snp, "ucodeSPL": self.microcode}
        if self.fmc is not None:
            out["fmcSPL"] = self.fmc
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class SnpReport:
    """A parsed SEV-SNP ATTESTATION_REPORT (Table 23). TCB fields stay raw (``*_raw``) because
    their layout depends on the product; decode them with :meth:`tcb`.

    Attributes:
        signed_bytes: Bytes 0x000..0x29F, exactly what the VCEK/VLEK signed.
        signature_r, signature_s: The ECDSA P-384 scalars (decoded from little-endian).
        cpuid_fam_id, cpuid_mod_id, cpuid_step: Present from version 3 (``None`` in v2).
        launch_mit_vector, current_mit_vector: Present from version 5 (``None`` before).
        raw: The whole 1184-byte report.
    """

    version: int
    guest_svn: int
    policy: int
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb_raw: bytes
    platform_info: int
    signer_info: int
    reserved_04c: bytes
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb_raw: bytes
    cpuid_fam_id: int | None
    cpuid_mod_id: int | None
    cpuid_step: int | None
    reserved_188: bytes
    chip_id: bytes
    committed_tcb_raw: bytes
    current_build: int
    current_minor: int
    current_major: int
    reserved_1eb: int
    committed_build: int
    committed_minor: int
    committed_major: int
    reserved_1ef: int
    launch_tcb_raw: bytes
    launch_mit_vector: int | None
    current_mit_vector: int | None
    reserved_208: bytes
    signature_r: int
    signature_s: int
    reserved_signature: bytes
    signed_bytes: bytes
    raw: bytes

    @property
    def signing_key(self) -> SnpSigningKey | int:
        """SIGNING_KEY (signer info bits 4:2): VCEK, VLEK, NONE or an unknown value."""
        value = (self.signer_info >> 2) & 0x7
        try:
            return SnpSigningKey(value)
        except ValueError:
            return value

    @property
    def author_key_en(self) -> bool:
        """AUTHOR_KEY_EN (signer info bit 0)."""
        return bool(self.signer_info & 1)

    @property
    def mask_chip_key(self) -> bool:
        """MASK_CHIP_KEY (signer info bit 1): CHIP_ID is zeroed."""
        return bool(self.signer_info & 2)

    @property
    def policy_flags(self) -> SnpGuestPolicy:
        """GUEST_POLICY bits 16 and up."""
        return SnpGuestPolicy(self.policy & ~0xFFFF & ((1 << 26) - 1))

    @property
    def policy_abi_minor(self) -> int:
        """GUEST_POLICY.ABI_MINOR (bits 7:0)."""
        return self.policy & 0xFF

    @property
    def policy_abi_major(self) -> int:
        """GUEST_POLICY.ABI_MAJOR (bits 15:8)."""
        return (self.policy >> 8) & 0xFF

    @property
    def debug(self) -> bool:
        """GUEST_POLICY.DEBUG: the hypervisor may debug (read) the guest."""
        return bool(self.policy & SnpGuestPolicy.DEBUG)

    @property
    def platform_info_flags(self) -> SnpPlatformInfo:
        """PLATFORM_INFO as a bit set."""
        return SnpPlatformInfo(self.platform_info & 0xBF)

    @property
    def product(self) -> SnpProduct | None:
        """The product from CPUID (v3+ reports), or ``None`` when the report does not say."""
        if self.cpuid_fam_id is None or self.cpuid_mod_id is None:
            return None
        return snp_product_from_cpuid(self.cpuid_fam_id, self.cpuid_mod_id)

    def tcb(self, which: str, product: SnpProduct) -> SnpTcbVersion:
        """Decode ``current``, ``reported``, ``committed`` or ``launch`` TCB for ``product``."""
        raw = {
            "current": self.current_tcb_raw,
            "reported": self.reported_tcb_raw,
            "committed": self.committed_tcb_raw,
            "launch": self.launch_tcb_raw,
        }[which]
        return SnpTcbVersion.decode(raw, product)


@dataclass(frozen=True, slots=True, kw_only=True)
class VcekExtensions:
    """AMD's VCEK/VLEK certificate extensions (KDS spec, OID prefix 1.3.6.1.4.1.3704.1).

    Attributes:
        struct_version: 0 on Milan/Genoa, 1 on Turin.
        product_name: e.g. ``"Milan-B0"``, ``"Genoa"``, ``"Turin"``.
        bl_spl, tee_spl, snp_spl, ucode_spl: TCB SPLs the key was derived for.
        fmc_spl: Turin's FMC SPL (``None`` when absent).
        hw_id: CHIP_ID (64 bytes, 8 on Turin); ``None`` for a VLEK.
        csp_id: The cloud provider of a VLEK (``None`` for a VCEK).
    """

    struct_version: int | None
    product_name: str
    bl_spl: int
    tee_spl: int
    snp_spl: int
    ucode_spl: int
    fmc_spl: int | None
    hw_id: bytes | None
    csp_id: str | None

    @property
    def product(self) -> SnpProduct | None:
        """The product family named by ``product_name`` (``"Milan-B0"`` → Milan)."""
        stem = self.product_name.split("-")[0]
        try:
            return SnpProduct(stem)
        except ValueError:
            return None


def snp_product_from_cpuid(family: int, model: int) -> SnpProduct | None:
    """The product for a CPUID family/model (Zen 3/4: family 0x19; Zen 5: family 0x1A).

    Returns ``None`` for a combination ccai does not know.
    """
    if family == 0x19 and model <= 0x0F:
        return SnpProduct.MILAN
    if family == 0x19 and (0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF):
        return SnpProduct.GENOA
    if family == 0x1A and model <= 0x11:
        return SnpProduct.TURIN
    return None


def parse_snp_report(data: bytes) -> SnpReport:
    """Parse a 1184-byte SEV-SNP attestation report (versions 2 to 5).

    Args:
        data: The raw report.

    Returns:
        The parsed report, keeping the signed bytes.

    Raises:
        MalformedEvidence: wrong size, must-be-one/zero bits or reserved fields violated.
        UnsupportedEvidence: a version below 2 or a signature algorithm other than ECDSA P-384.
    """
    data = bytes(data)
    if len(data) != SNP_REPORT_SIZE:
        raise MalformedEvidence(
            "SEV-SNP report must be 1184 bytes", step="parse", expected=SNP_REPORT_SIZE, actual=len(data)
        )
    r = Reader(data, what="SEV-SNP report")
    version = r.u32le("VERSION")
    if version < 2:
        raise UnsupportedEvidence(
            "SEV-SNP report version below 2", step="parse", expected=">= 2", actual=version
        )
    guest_svn = r.u32le("GUEST_SVN")
    policy = r.u64le("POLICY")
    family_id = r.take(16, "FAMILY_ID")
    image_id = r.take(16, "IMAGE_ID")
    vmpl = r.u32le("VMPL")
    signature_algo = r.u32le("SIGNATURE_ALGO")
    current_tcb = r.take(8, "CURRENT_TCB")
    platform_info = r.u64le("PLATFORM_INFO")
    signer_info = r.u32le("signer info")
    reserved_04c = r.take(4, "reserved 0x4C")
    report_data = r.take(64, "REPORT_DATA")
    measurement = r.take(48, "MEASUREMENT")
    host_data = r.take(32, "HOST_DATA")
    id_key_digest = r.take(48, "ID_KEY_DIGEST")
    author_key_digest = r.take(48, "AUTHOR_KEY_DIGEST")
    report_id = r.take(32, "REPORT_ID")
    report_id_ma = r.take(32, "REPORT_ID_MA")
    reported_tcb = r.take(8, "REPORTED_TCB")
    cpuid = r.take(3, "CPUID_FAM_ID/CPUID_MOD_ID/CPUID_STEP")
    reserved_188 = r.take(21, "reserved 0x18B")
    chip_id = r.take(64, "CHIP_ID")
    committed_tcb = r.take(8, "COMMITTED_TCB")
    current_build, current_minor, current_major, reserved_1eb = r.take(4, "CURRENT_BUILD/MINOR/MAJOR")
    committed_build, committed_minor, committed_major, reserved_1ef = r.take(4, "COMMITTED_BUILD/MINOR/MAJOR")
    launch_tcb = r.take(8, "LAUNCH_TCB")
    launch_mit = r.u64le("LAUNCH_MIT_VECTOR")
    current_mit = r.u64le("CURRENT_MIT_VECTOR")
    reserved_208 = r.take(0x98, "reserved 0x208")
    signed_end = r.offset
    sig_r = r.take(72, "SIGNATURE.R")
    sig_s = r.take(72, "SIGNATURE.S")
    reserved_signature = r.take(512 - 144, "SIGNATURE reserved")
    r.expect_end()

    # Must-be-one / must-be-zero checks from Table 9 and Table 23 (go-sev-guest is equally strict).
    if not policy & SnpGuestPolicy.RESERVED_17_MUST_BE_ONE:
        raise MalformedEvidence("SEV-SNP POLICY bit 17 must be 1", step="parse", actual=hex(policy))
    if policy >> 26:
        raise MalformedEvidence("SEV-SNP POLICY bits 63:26 must be zero", step="parse", actual=hex(policy))
    if signer_info >> 5:
        raise MalformedEvidence(
            "SEV-SNP signer info bits 31:5 must be zero", step="parse", actual=hex(signer_info)
        )
    if any(reserved_04c) or any(reserved_188) or any(reserved_208):
        raise MalformedEvidence("SEV-SNP reserved fields must be zero", step="parse")
    if version == 2 and any(cpuid):
        raise MalformedEvidence("SEV-SNP v2 report has non-zero bytes at 0x188..0x18A", step="parse")
    if any(reserved_signature):
        raise MalformedEvidence("SEV-SNP signature padding must be zero", step="parse")
    if version < 5 and (launch_mit or current_mit):
        raise MalformedEvidence("SEV-SNP report below v5 has mitigation vector bytes set", step="parse")
    if signature_algo != 1:
        raise UnsupportedEvidence(
            "SEV-SNP SIGNATURE_ALGO is not ECDSA P-384 with SHA-384",
            step="parse",
            expected=1,
            actual=signature_algo,
        )

    return SnpReport(
        version=version,
        guest_svn=guest_svn,
        policy=policy,
        family_id=family_id,
        image_id=image_id,
        vmpl=vmpl,
        signature_algo=signature_algo,
        current_tcb_raw=current_tcb,
        platform_info=platform_info,
        signer_info=signer_info,
        reserved_04c=reserved_04c,
        report_data=report_data,
        measurement=measurement,
        host_data=host_data,
        id_key_digest=id_key_digest,
        author_key_digest=author_key_digest,
        report_id=report_id,
        report_id_ma=report_id_ma,
        reported_tcb_raw=reported_tcb,
        cpuid_fam_id=cpuid[0] if version >= 3 else None,
        cpuid_mod_id=cpuid[1] if version >= 3 else None,
        cpuid_step=cpuid[2] if version >= 3 else None,
        reserved_188=reserved_188,
        chip_id=chip_id,
        committed_tcb_raw=committed_tcb,
        current_build=current_build,
        current_minor=current_minor,
        current_major=current_major,
        reserved_1eb=reserved_1eb,
        committed_build=committed_build,
        committed_minor=committed_minor,
        committed_major=committed_major,
        reserved_1ef=reserved_1ef,
        launch_tcb_raw=launch_tcb,
        launch_mit_vector=launch_mit if version >= 5 else None,
        current_mit_vector=current_mit if version >= 5 else None,
        reserved_208=reserved_208,
        signature_r=int.from_bytes(sig_r, "little"),
        signature_s=int.from_bytes(sig_s, "little"),
        reserved_signature=reserved_signature,
        signed_bytes=data[:signed_end],
        raw=data,
    )


def _ext_int(tlv: Tlv, name: str) -> int:
    return decode_integer(tlv, f"VCEK extension {name}")


def parse_vcek_extensions(cert: x509.Certificate) -> VcekExtensions:
    """Decode the AMD extensions of a VCEK or VLEK certificate.

    Args:
        cert: The VCEK/VLEK certificate.

    Returns:
        The product name, TCB SPLs, hwID (VCEK) and csp_id (VLEK).

    Raises:
        MalformedEvidence: a required extension is missing or badly encoded.
    """
    raw: dict[str, bytes] = {}
    for ext in cert.extensions:
        oid = ext.oid.dotted_string
        if oid.startswith(_AMD_EXT + ".") and isinstance(ext.value, x509.UnrecognizedExtension):
            raw[oid[len(_AMD_EXT) + 1 :]] = ext.value.value

    def der(suffix: str) -> Tlv | None:
        if suffix not in raw:
            return None
        items = read_all(raw[suffix], what=f"VCEK extension {suffix}")
        if len(items) != 1:
            raise MalformedEvidence(f"VCEK extension {suffix} is not one DER element", step="parse")
        return items[0]

    def spl(suffix: str, name: str) -> int:
        tlv = der(suffix)
        if tlv is None:
            raise MalformedEvidence(f"VCEK certificate lacks {name} ({_AMD_EXT}.{suffix})", step="parse")
        return _ext_int(tlv, name)

    name_tlv = der("2")
    if name_tlv is None or name_tlv.tag != TAG_IA5STRING:
        raise MalformedEvidence("VCEK certificate lacks productName (IA5String)", step="parse")
    version_tlv = der("1")
    fmc_tlv = der("3.9")
    csp_tlv = der("5")
    hw_id: bytes | None = raw.get("4")
    # hwID is raw bytes without a DER tag in real certificates; accept an OCTET STRING wrapper too
    # (go-sev-guest does) when the wrapper's length matches exactly.
    if hw_id is not None and len(hw_id) not in (8, 64) and hw_id[:1] == bytes([TAG_OCTET_STRING]):
        items = read_all(hw_id, what="VCEK hwID")
        if len(items) == 1 and items[0].tag == TAG_OCTET_STRING:
            hw_id = items[0].value
    return VcekExtensions(
        struct_version=_ext_int(version_tlv, "structVersion") if version_tlv else None,
        product_name=name_tlv.value.decode("ascii", "replace"),
        bl_spl=spl("3.1", "blSPL"),
        tee_spl=spl("3.2", "teeSPL"),
        snp_spl=spl("3.3", "snpSPL"),
        ucode_spl=spl("3.8", "ucodeSPL"),
        fmc_spl=_ext_int(fmc_tlv, "fmcSPL") if fmc_tlv else None,
        hw_id=hw_id,
        csp_id=csp_tlv.value.decode("ascii", "replace") if csp_tlv and csp_tlv.tag == TAG_IA5STRING else None,
    )
