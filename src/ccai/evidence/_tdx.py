"""Intel TDX DCAP quotes, versions 4 and 5: a pure, bounds-checked parser.

Layouts follow Intel's ``sgx_quote_4.h`` / ``sgx_quote_5.h`` (SGXDataCenterAttestationPrimitives,
QuoteGeneration/quote_wrapper/common/inc) and the "Intel TDX DCAP Quoting Library API" appendix A.3
(v4) and A.4 (v5). All integers are little-endian; signatures and keys are raw big-endian r‖s / x‖y.

The parser keeps the exact signed bytes (:attr:`TdxQuote.signed_bytes`, the raw QE report) so the
verifier hashes what was signed, and it stops at ``signature_data_len``: bytes after the signature
data are kept in :attr:`TdxQuote.trailing` for the policy to judge (real quotes are zero-padded).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cryptography import x509

from ccai._binary import Reader
from ccai.errors import MalformedEvidence, UnsupportedEvidence
from ccai.evidence._certs import load_pem_certificates
from ccai.evidence._cpu_der import (
    TAG_OCTET_STRING,
    TAG_OID,
    TAG_SEQUENCE,
    decode_integer,
    decode_oid,
    read_all,
)

__all__ = [
    "INTEL_QE_VENDOR_ID",
    "PckExtensions",
    "QeReport",
    "TdAttributes",
    "TdReportBody",
    "TdxQuote",
    "TdxQuoteHeader",
    "parse_pck_extensions",
    "parse_tdx_quote",
]

#: QE vendor id of Intel's quoting enclave (header offset 12).
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")

_TEE_TYPE_TDX = 0x00000081
_ATT_KEY_ECDSA_P256 = 2
_CERT_TYPE_PCK_CHAIN = 5
_CERT_TYPE_QE_REPORT = 6  # ECDSA_SIG_AUX_DATA: QE report certification data
_BODY_TDX10 = 2
_BODY_TDX15 = 3
_BODY_SIZE = {_BODY_TDX10: 584, _BODY_TDX15: 648}
_QE_REPORT_SIZE = 384

_SGX_EXT_OID = "1.2.840.113741.1.13.1"


class TdAttributes(enum.IntFlag):
    """TDATTRIBUTES bits (TDX module ABI, "TD attributes" table; go-tdx-guest ``validate.go``)."""

    DEBUG = 1 << 0  # TUD: host may read TD state
    SEPT_VE_DISABLE = 1 << 28
    MIGRATABLE = 1 << 29  # reserved in TDX 1.0
    PKS = 1 << 30
    KL = 1 << 31
    PERFMON = 1 << 63


@dataclass(frozen=True, slots=True, kw_only=True)
class TdxQuoteHeader:
    """Quote header, 48 bytes (``sgx_quote4_header_t``; identical in v4 and v5).

    Attributes:
        version: 4 or 5.
        att_key_type: 2 = ECDSA-256-with-P-256.
        tee_type: 0x81 for TDX.
        reserved_8: 4 reserved bytes at offset 8 (QE/PCE SVN in SGX v3 quotes).
        qe_vendor_id: 16 bytes; Intel's QE is :data:`INTEL_QE_VENDOR_ID`.
        user_data: 20 bytes chosen by the attestation-key owner.
    """

    version: int
    att_key_type: int
    tee_type: int
    reserved_8: bytes
    qe_vendor_id: bytes
    user_data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class TdReportBody:
    """TD quote body: ``sgx_report2_body_t`` (TDX 1.0, 584 bytes) or its v1.5 form (648 bytes).

    Attributes mirror the spec names; ``tee_tcb_svn_2`` and ``mr_servicetd`` exist only in the
    TDX 1.5 body (v5 body type 3) and are ``None`` otherwise.
    """

    tee_tcb_svn: bytes
    mr_seam: bytes
    mr_signer_seam: bytes
    seam_attributes: bytes
    td_attributes: bytes
    xfam: bytes
    mr_td: bytes
    mr_config_id: bytes
    mr_owner: bytes
    mr_owner_config: bytes
    rtmr0: bytes
    rtmr1: bytes
    rtmr2: bytes
    rtmr3: bytes
    report_data: bytes
    tee_tcb_svn_2: bytes | None = None
    mr_servicetd: bytes | None = None

    @property
    def rtmrs(self) -> tuple[bytes, bytes, bytes, bytes]:
        """RTMR0..RTMR3."""
        return (self.rtmr0, self.rtmr1, self.rtmr2, self.rtmr3)

    @property
    def td_attributes_flags(self) -> TdAttributes:
        """TDATTRIBUTES as a little-endian u64 bit set."""
        return TdAttributes(int.from_bytes(self.td_attributes, "little"))

    @property
    def debug(self) -> bool:
        """True when the TD's DEBUG attribute is set (the host can read TD memory)."""
        return bool(self.td_attributes_flags & TdAttributes.DEBUG)


@dataclass(frozen=True, slots=True, kw_only=True)
class QeReport:
    """The quoting enclave's report, ``sgx_report_body_t`` (384 bytes; SGX SDK ``sgx_report.h``)."""

    cpu_svn: bytes
    misc_select: int
    reserved_20: bytes
    isv_ext_prod_id: bytes
    attributes: bytes
    mr_enclave: bytes
    reserved_96: bytes
    mr_signer: bytes
    reserved_160: bytes
    config_id: bytes
    isv_prod_id: int
    isv_svn: int
    config_svn: int
    reserved_262: bytes
    isv_family_id: bytes
    report_data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class TdxQuote:
    """A parsed TDX quote.

    Attributes:
        header: The 48-byte header.
        body_type: 2 (TDX 1.0 body) or 3 (TDX 1.5 body); v4 quotes are always 2.
        body: The TD report body.
        signed_bytes: Exactly the bytes the attestation key signed (header ‖ [v5 type/size] ‖ body).
        signature: ECDSA P-256 r‖s (64 bytes) over ``signed_bytes``.
        attestation_key: Raw P-256 public key x‖y (64 bytes).
        qe_report_raw: The 384 QE report bytes the PCK key signed.
        qe_report: ``qe_report_raw`` parsed.
        qe_report_signature: ECDSA P-256 r‖s by the PCK leaf key over ``qe_report_raw``.
        qe_auth_data: QE authentication data (hashed into the QE report's report_data).
        pck_chain_pem: The PEM PCK certificate chain (leaf, intermediate, root) as carried, NULs stripped.
        pck_chain: ``pck_chain_pem`` loaded (leaf first).
        trailing: Bytes after the signature data (usually zero padding).
        raw: The whole input.
    """

    header: TdxQuoteHeader
    body_type: int
    body: TdReportBody
    signed_bytes: bytes
    signature: bytes
    attestation_key: bytes
    qe_report_raw: bytes
    qe_report: QeReport
    qe_report_signature: bytes
    qe_auth_data: bytes
    pck_chain_pem: bytes
    pck_chain: tuple[x509.Certificate, ...]
    trailing: bytes
    raw: bytes

    @property
    def version(self) -> int:
        """The quote version (4 or 5)."""
        return self.header.version

    @property
    def trailing_is_zero(self) -> bool:
        """True when every byte after the signature data is zero (or there are none)."""
        return not self.trailing.strip(b"\x00")


@dataclass(frozen=True, slots=True, kw_only=True)
class PckExtensions:
    """The SGX extension of a PCK certificate (OID 1.2.840.113741.1.13.1; Intel "SGX PCK Certificate
    and CRL Profile", section 1.5).

    Attributes:
        ppid: Platform provisioning id (16 bytes).
        cpusvn_components: The 16 CPUSVN component SVNs (``.2.1``..``.2.16``).
        pcesvn: PCE security version (``.2.17``).
        cpusvn: Raw 16-byte CPUSVN (``.2.18``).
        pce_id: PCE id (2 bytes, ``.3``).
        fmspc: Family-model-stepping-platform-custom-SKU (6 bytes, ``.4``).
        sgx_type: 0 Standard, 1 Scalable, 2 Scalable with integrity (``.5``).
    """

    ppid: bytes
    cpusvn_components: tuple[int, ...]
    pcesvn: int
    cpusvn: bytes
    pce_id: bytes
    fmspc: bytes
    sgx_type: int


def _parse_header(r: Reader) -> TdxQuoteHeader:
    # Quoting Library API A.3.1 "Quote Header" (sgx_quote4_header_t).
    header = TdxQuoteHeader(
        version=r.u16le("version"),
        att_key_type=r.u16le("att_key_type"),
        tee_type=r.u32le("tee_type"),
        reserved_8=r.take(4, "reserved"),
        qe_vendor_id=r.take(16, "qe_vendor_id"),
        user_data=r.take(20, "user_data"),
    )
    if header.version not in (4, 5):
        raise UnsupportedEvidence(
            "TDX quote version is not 4 or 5", step="parse", expected="4 or 5", actual=header.version
        )
    if header.tee_type != _TEE_TYPE_TDX:
        raise UnsupportedEvidence(
            "quote is not a TDX quote", step="parse", expected="tee_type 0x81", actual=hex(header.tee_type)
        )
    if header.att_key_type != _ATT_KEY_ECDSA_P256:
        raise UnsupportedEvidence(
            "attestation key type is not ECDSA-256-with-P-256",
            step="parse",
            expected=_ATT_KEY_ECDSA_P256,
            actual=header.att_key_type,
        )
    return header


def _parse_body(r: Reader, body_type: int) -> TdReportBody:
    # Quoting Library API A.3.2 "TD Quote Body" (sgx_report2_body_t); v1.5 adds two fields (A.4.2).
    fields: dict[str, bytes | None] = {
        "tee_tcb_svn": r.take(16, "tee_tcb_svn"),
        "mr_seam": r.take(48, "mr_seam"),
        "mr_signer_seam": r.take(48, "mr_signer_seam"),
        "seam_attributes": r.take(8, "seam_attributes"),
        "td_attributes": r.take(8, "td_attributes"),
        "xfam": r.take(8, "xfam"),
        "mr_td": r.take(48, "mr_td"),
        "mr_config_id": r.take(48, "mr_config_id"),
        "mr_owner": r.take(48, "mr_owner"),
        "mr_owner_config": r.take(48, "mr_owner_config"),
        "rtmr0": r.take(48, "rtmr0"),
        "rtmr1": r.take(48, "rtmr1"),
        "rtmr2": r.take(48, "rtmr2"),
        "rtmr3": r.take(48, "rtmr3"),
        "report_data": r.take(64, "report_data"),
    }
    if body_type == _BODY_TDX15:
        fields["tee_tcb_svn_2"] = r.take(16, "tee_tcb_svn_2")
        fields["mr_servicetd"] = r.take(48, "mr_servicetd")
    return TdReportBody(**fields)  # type: ignore[arg-type]


def _parse_qe_report(data: bytes, base: int) -> QeReport:
    # SGX SDK sgx_report.h, sgx_report_body_t (384 bytes).
    r = Reader(data, what="TDX QE report", base=base)
    report = QeReport(
        cpu_svn=r.take(16, "cpu_svn"),
        misc_select=r.u32le("misc_select"),
        reserved_20=r.take(12, "reserved"),
        isv_ext_prod_id=r.take(16, "isv_ext_prod_id"),
        attributes=r.take(16, "attributes"),
        mr_enclave=r.take(32, "mr_enclave"),
        reserved_96=r.take(32, "reserved"),
        mr_signer=r.take(32, "mr_signer"),
        reserved_160=r.take(32, "reserved"),
        config_id=r.take(64, "config_id"),
        isv_prod_id=r.u16le("isv_prod_id"),
        isv_svn=r.u16le("isv_svn"),
        config_svn=r.u16le("config_svn"),
        reserved_262=r.take(42, "reserved"),
        isv_family_id=r.take(16, "isv_family_id"),
        report_data=r.take(64, "report_data"),
    )
    r.expect_end()
    return report


def _load_pem_chain(pem: bytes) -> tuple[x509.Certificate, ...]:
    return load_pem_certificates(pem, what="TDX quote: PCK certificate chain")


def parse_tdx_quote(data: bytes) -> TdxQuote:
    """Parse a TDX DCAP quote (v4, or v5 with body type 2 or 3).

    Args:
        data: The raw quote bytes.

    Returns:
        The parsed quote, keeping the signed bytes.

    Raises:
        MalformedEvidence: short, inconsistent sizes, or an unreadable PCK chain.
        UnsupportedEvidence: another version, TEE type, key type, body type or certification type.
    """
    data = bytes(data)
    r = Reader(data, what="TDX quote")
    header = _parse_header(r)
    if header.version == 4:
        body_type = _BODY_TDX10
        body = _parse_body(r.sub(_BODY_SIZE[body_type], "td quote body"), body_type)
    else:
        # Quoting Library API A.4: u16 body type, u32 body size, then the body.
        body_type = r.u16le("body_type")
        body_size = r.u32le("body_size")
        if body_type not in _BODY_SIZE:
            raise UnsupportedEvidence(
                "TDX v5 body type is not a TD report (2 or 3)",
                step="parse",
                expected="2 or 3",
                actual=body_type,
            )
        if body_size != _BODY_SIZE[body_type]:
            raise MalformedEvidence(
                "TDX v5 body size does not match its body type",
                step="parse",
                expected=_BODY_SIZE[body_type],
                actual=body_size,
            )
        body_reader = r.sub(body_size, "td quote body")
        body = _parse_body(body_reader, body_type)
        body_reader.expect_end()
    signed_end = r.offset
    sig_len = r.u32le("signature_data_len")
    sig = r.sub(sig_len, "signature data")
    trailing = r.rest("trailing")

    # A.3.8 "ECDSA 256-bit Quote Signature Data Structure" (sgx_ecdsa_sig_data_v4_t).
    signature = sig.take(64, "quote_signature")
    attestation_key = sig.take(64, "ecdsa_attestation_key")
    cert_type = sig.u16le("certification_data_type")
    cert_size = sig.u32le("certification_data_size")
    if cert_type != _CERT_TYPE_QE_REPORT:
        raise UnsupportedEvidence(
            "TDX certification data is not QE report certification data (type 6)",
            step="parse",
            expected=_CERT_TYPE_QE_REPORT,
            actual=cert_type,
        )
    cert = sig.sub(cert_size, "qe_report_certification_data")
    sig.expect_end()

    # A.3.11 "QE Report Certification Data" (sgx_qe_report_certification_data_t).
    qe_report_base = cert.base + cert.offset
    qe_report_raw = cert.take(_QE_REPORT_SIZE, "qe_report")
    qe_report_signature = cert.take(64, "qe_report_signature")
    qe_auth_size = cert.u16le("qe_auth_data_size")
    qe_auth_data = cert.take(qe_auth_size, "qe_auth_data")
    inner_type = cert.u16le("pck_certification_data_type")
    inner_size = cert.u32le("pck_certification_data_size")
    if inner_type != _CERT_TYPE_PCK_CHAIN:
        raise UnsupportedEvidence(
            "TDX QE certification data does not carry a PCK certificate chain (type 5)",
            step="parse",
            expected=_CERT_TYPE_PCK_CHAIN,
            actual=inner_type,
        )
    pem = cert.take(inner_size, "pck_cert_chain")
    cert.expect_end()
    pck_chain_pem = pem.replace(b"\x00", b"")
    pck_chain = _load_pem_chain(pck_chain_pem)
    if not pck_chain:
        raise MalformedEvidence("TDX quote: PCK certificate chain is empty", step="parse")

    return TdxQuote(
        header=header,
        body_type=body_type,
        body=body,
        signed_bytes=data[:signed_end],
        signature=signature,
        attestation_key=attestation_key,
        qe_report_raw=qe_report_raw,
        qe_report=_parse_qe_report(qe_report_raw, qe_report_base),
        qe_report_signature=qe_report_signature,
        qe_auth_data=qe_auth_data,
        pck_chain_pem=pck_chain_pem,
        pck_chain=pck_chain,
        trailing=trailing,
        raw=data,
    )


def parse_pck_extensions(cert: x509.Certificate) -> PckExtensions:
    """Decode the SGX extension of a PCK certificate.

    Args:
        cert: A PCK leaf certificate.

    Returns:
        FMSPC, PCE id, the TCB components and the other fields the TCB evaluation needs.

    Raises:
        MalformedEvidence: the extension is missing or not the SEQUENCE of (OID, value) Intel defines.
    """
    try:
        ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(_SGX_EXT_OID))
    except x509.ExtensionNotFound:
        raise MalformedEvidence("PCK certificate has no SGX extension", step="parse") from None
    raw = ext.value.public_bytes()
    what = "PCK SGX extension"
    outer = read_all(raw, what=what)
    if len(outer) != 1 or outer[0].tag != TAG_SEQUENCE:
        raise MalformedEvidence(f"{what} is not a SEQUENCE", step="parse")
    values: dict[str, bytes | list[tuple[str, bytes]] | int] = {}
    tcb: dict[str, int | bytes] = {}
    for item in read_all(outer[0].value, what=what):
        pair = read_all(item.value, what=what)
        if item.tag != TAG_SEQUENCE or len(pair) != 2 or pair[0].tag != TAG_OID:
            raise MalformedEvidence(f"{what}: entry is not (OID, value)", step="parse")
        oid = decode_oid(pair[0].value)
        value = pair[1]
        if oid == f"{_SGX_EXT_OID}.2":
            for comp in read_all(value.value, what=what):
                cpair = read_all(comp.value, what=what)
                if len(cpair) != 2 or cpair[0].tag != TAG_OID:
                    raise MalformedEvidence(f"{what}: TCB entry is not (OID, value)", step="parse")
                coid = decode_oid(cpair[0].value)
                tcb[coid] = (
                    cpair[1].value if cpair[1].tag == TAG_OCTET_STRING else decode_integer(cpair[1], coid)
                )
        elif oid == f"{_SGX_EXT_OID}.5":
            values[oid] = decode_integer(value, "sgx type")
        else:
            values[oid] = value.value
    try:
        components = tuple(int(tcb[f"{_SGX_EXT_OID}.2.{i}"]) for i in range(1, 17))
        pcesvn = int(tcb[f"{_SGX_EXT_OID}.2.17"])
        cpusvn = tcb[f"{_SGX_EXT_OID}.2.18"]
        ppid = values[f"{_SGX_EXT_OID}.1"]
        pce_id = values[f"{_SGX_EXT_OID}.3"]
        fmspc = values[f"{_SGX_EXT_OID}.4"]
        sgx_type = values.get(f"{_SGX_EXT_OID}.5", 0)
    except KeyError as exc:
        raise MalformedEvidence(f"{what} lacks {exc.args[0]}", step="parse") from None
    if not (isinstance(cpusvn, bytes) and isinstance(ppid, bytes) and isinstance(pce_id, bytes)):
        raise MalformedEvidence(f"{what}: CPUSVN, PPID or PCE-ID has the wrong type", step="parse")
    if not isinstance(fmspc, bytes) or len(fmspc) != 6 or len(pce_id) != 2 or not isinstance(sgx_type, int):
        raise MalformedEvidence(f"{what}: FMSPC or PCE-ID has the wrong size", step="parse")
    return PckExtensions(
        ppid=ppid,
        cpusvn_components=components,
        pcesvn=pcesvn,
        cpusvn=cpusvn,
        pce_id=pce_id,
        fmspc=fmspc,
        sgx_type=sgx_type,
    )
