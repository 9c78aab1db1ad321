"""Virtual Intel TDX: quotes in the exact DCAP v4/v5 layout and the collateral that verifies them.

The quote is laid out as Intel's ``sgx_quote_4.h`` / ``sgx_quote_5.h`` (cpu-evidence.md §2.1–§2.5):
header (48 bytes, Intel's QE vendor id) ‖ [v5: body type, body size] ‖ TD report body (584 or
648 bytes) ‖ signature data length ‖ ECDSA P-256 signature ‖ attestation key ‖ certification
data type 6 (QE report, QE report signature by the PCK key, QE auth data, inner type 5 with the
PEM PCK chain ending in a NUL byte). The QE report's REPORTDATA binds the attestation key as
Intel's QE does: SHA-256(key ‖ QE auth data) ‖ 32 zero bytes.

The collateral mirrors Intel PCS v4: TDX TCB Info v3 (``id`` TDX, one UpToDate level, module
identity ``TDX_01``), TD QE Identity v2 (``id`` TD_QE), both signed over their exact JSON text by
the test TCB signing key; the PCK CRL and the Root CA CRL.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from ccai.collateral import TdxCollateral
from ccai.evidence import INTEL_QE_VENDOR_ID
from ccai.virtual._tee_pki import VirtualTeePki

__all__ = ["TdxPlatform", "build_tdx_quote", "tdx_collateral"]

_TDX_TEE_TYPE = 0x81
_PCE_ID = bytes.fromhex("0000")
_QE_ISVSVN = 4
_QE_ATTRIBUTES = bytes.fromhex("11000000000000000000000000000000")
_TCB_DATE = "2024-03-13T00:00:00Z"
#: How long virtual collateral stays valid after its issue date (Intel PCS: 30 days).
COLLATERAL_LIFETIME = timedelta(days=30)


@dataclass(frozen=True, slots=True, kw_only=True)
class TdxPlatform:
    """The virtual TDX platform's identity and TCB (what PCS keys collateral by).

    Attributes:
        fmspc: 6-byte family-model-stepping-platform-custom SKU.
        cpusvn_components: The 16 CPUSVN component SVNs in the PCK certificate.
        pcesvn: PCE security version.
        tee_tcb_svn: 16-byte TEE_TCB_SVN of the TDX module ([0] module SVN, [1] major version).
    """

    fmspc: bytes = bytes.fromhex("00c0ffee0000")
    cpusvn_components: tuple[int, ...] = (3, 3, 2, 2, 2, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0)
    pcesvn: int = 13
    tee_tcb_svn: bytes = bytes.fromhex("03010200000000000000000000000000")


def _raw_sig(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True)))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _raw_point(key: ec.EllipticCurvePrivateKey) -> bytes:
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return point[1:]  # x‖y without the 0x04 prefix


def _qe_mrsigner(pki: VirtualTeePki) -> bytes:
    return pki.derive_bytes("td-qe-mrsigner", 32)


def _qe_report(pki: VirtualTeePki, report_data: bytes) -> bytes:
    # sgx_report_body_t (384 bytes), cpu-evidence.md §2.5.
    out = bytearray(384)
    out[0:16] = bytes(16)  # CPUSVN
    out[16:20] = struct.pack("<I", 0)  # MISCSELECT
    out[48:64] = _QE_ATTRIBUTES
    out[64:96] = pki.derive_bytes("td-qe-mrenclave", 32)
    out[128:160] = _qe_mrsigner(pki)
    out[256:258] = struct.pack("<H", 2)  # ISVPRODID of the TD QE
    out[258:260] = struct.pack("<H", _QE_ISVSVN)
    out[320:384] = report_data
    return bytes(out)


def build_tdx_quote(
    pki: VirtualTeePki,
    platform: TdxPlatform,
    *,
    report_data: bytes,
    body_fields: dict[str, bytes],
    attestation_key: ec.EllipticCurvePrivateKey,
    version: int = 4,
) -> bytes:
    """Build and sign a TDX quote.

    Args:
        pki: The test PKI (PCK chain and key).
        platform: FMSPC and TCB of the virtual platform.
        report_data: The 64 REPORTDATA bytes chosen by the guest.
        body_fields: MRTD, RTMRs, attributes …: ``mr_td``, ``mr_config_id``, ``mr_owner``,
            ``mr_owner_config``, ``rtmr0``..``rtmr3`` (48 bytes each), ``td_attributes``,
            ``xfam`` (8 bytes each).
        attestation_key: The QE's P-256 attestation key.
        version: 4 (TDX 1.0 body) or 5 (body type 3, the TDX 1.5 body).

    Returns:
        The quote bytes.
    """
    if len(report_data) != 64:
        raise ValueError("report_data must be 64 bytes")
    header = struct.pack("<HHI", version, 2, _TDX_TEE_TYPE) + bytes(4) + INTEL_QE_VENDOR_ID
    header += pki.derive_bytes("qe-user-data", 16) + bytes(4)
    f = body_fields
    body = b"".join(
        [
            platform.tee_tcb_svn,
            pki.derive_bytes("mr-seam", 48),
            bytes(48),  # MRSIGNERSEAM: zero for Intel's module
            bytes(8),  # SEAMATTRIBUTES
            f["td_attributes"],
            f["xfam"],
            f["mr_td"],
            f["mr_config_id"],
            f["mr_owner"],
            f["mr_owner_config"],
            f["rtmr0"],
            f["rtmr1"],
            f["rtmr2"],
            f["rtmr3"],
            report_data,
        ]
    )
    if version == 5:
        body += bytes(16) + bytes(48)  # TEE_TCB_SVN_2, MRSERVICETD (no service TD)
        signed = header + struct.pack("<HI", 3, len(body)) + body
    elif version == 4:
        signed = header + body
    else:
        raise ValueError("TDX quote version must be 4 or 5")

    pck = pki.pck(
        cpusvn_components=platform.cpusvn_components,
        pcesvn=platform.pcesvn,
        fmspc=platform.fmspc,
        pce_id=_PCE_ID,
    )
    att_point = _raw_point(attestation_key)
    qe_auth = bytes(range(32))
    qe_report = _qe_report(pki, hashlib.sha256(att_point + qe_auth).digest() + bytes(32))
    pck_key = pck.private_key
    assert isinstance(pck_key, ec.EllipticCurvePrivateKey)  # the PCK key is always P-256
    chain = b"".join(
        c.public_bytes(serialization.Encoding.PEM)
        for c in (pck.certificate, pki.pck_platform_ca.certificate, pki.sgx_root.certificate)
    )
    chain += b"\x00"  # real quotes end the PEM chain with a NUL
    cert_data = (
        qe_report
        + _raw_sig(pck_key, qe_report)
        + struct.pack("<H", len(qe_auth))
        + qe_auth
        + struct.pack("<HI", 5, len(chain))
        + chain
    )
    sig_data = (
        _raw_sig(attestation_key, signed) + att_point + struct.pack("<HI", 6, len(cert_data)) + cert_data
    )
    return signed + struct.pack("<I", len(sig_data)) + sig_data


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _components(svns: tuple[int, ...] | bytes) -> list[dict[str, int]]:
    return [{"svn": int(s)} for s in svns]


def tdx_collateral(pki: VirtualTeePki, platform: TdxPlatform, *, issued: datetime) -> TdxCollateral:
    """Signed TCB Info, QE Identity and CRLs for ``platform``, valid for 30 days from ``issued``.

    Args:
        pki: The test PKI.
        platform: The platform the TCB Info describes.
        issued: ``issueDate`` / CRL ``thisUpdate`` (timezone-aware).

    Returns:
        Collateral in ccai's :class:`~ccai.collateral.TdxCollateral` form.
    """
    next_update = issued + COLLATERAL_LIFETIME
    module_svn, module_major = platform.tee_tcb_svn[0], platform.tee_tcb_svn[1]
    tdx_components = bytes([0, 0]) + platform.tee_tcb_svn[2:]
    tcb_info = {
        "id": "TDX",
        "version": 3,
        "issueDate": _iso(issued),
        "nextUpdate": _iso(next_update),
        "fmspc": platform.fmspc.hex(),
        "pceId": _PCE_ID.hex(),
        "tcbType": 0,
        "tcbEvaluationDataNumber": 17,
        "tdxModule": {"mrsigner": "00" * 48, "attributes": "0000000000000000", "attributesMask": "FF" * 8},
        "tdxModuleIdentities": [
            {
                "id": f"TDX_{module_major:02X}",
                "mrsigner": "00" * 48,
                "attributes": "0000000000000000",
                "attributesMask": "FF" * 8,
                "tcbLevels": [
                    {"tcb": {"isvsvn": module_svn}, "tcbDate": _TCB_DATE, "tcbStatus": "UpToDate"},
                ],
            }
        ],
        "tcbLevels": [
            {
                "tcb": {
                    "sgxtcbcomponents": _components(platform.cpusvn_components),
                    "pcesvn": platform.pcesvn,
                    "tdxtcbcomponents": _components(tdx_components),
                },
                "tcbDate": _TCB_DATE,
                "tcbStatus": "UpToDate",
            }
        ],
    }
    qe_identity = {
        "id": "TD_QE",
        "version": 2,
        "issueDate": _iso(issued),
        "nextUpdate": _iso(next_update),
        "tcbEvaluationDataNumber": 17,
        "miscselect": "00000000",
        "miscselectMask": "FFFFFFFF",
        "attributes": _QE_ATTRIBUTES.hex().upper(),
        "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
        "mrsigner": _qe_mrsigner(pki).hex().upper(),
        "isvprodid": 2,
        "tcbLevels": [{"tcb": {"isvsvn": _QE_ISVSVN}, "tcbDate": _TCB_DATE, "tcbStatus": "UpToDate"}],
    }
    signer = pki.tcb_signing
    signer_key = signer.private_key
    assert isinstance(signer_key, ec.EllipticCurvePrivateKey)  # the TCB signing key is always P-256
    pem = serialization.Encoding.PEM
    signing_chain = (
        signer.certificate.public_bytes(pem) + pki.sgx_root.certificate.public_bytes(pem)
    ).decode()
    pck_chain = (
        pki.pck_platform_ca.certificate.public_bytes(pem) + pki.sgx_root.certificate.public_bytes(pem)
    ).decode()
    tcb_text = json.dumps(tcb_info, separators=(",", ":"))
    qe_text = json.dumps(qe_identity, separators=(",", ":"))
    return TdxCollateral(
        tcb_info=tcb_text,
        tcb_info_signature=_raw_sig(signer_key, tcb_text.encode()),
        tcb_info_issuer_chain=signing_chain,
        qe_identity=qe_text,
        qe_identity_signature=_raw_sig(signer_key, qe_text.encode()),
        qe_identity_issuer_chain=signing_chain,
        pck_crl=pki.crl(pki.pck_platform_ca, this_update=issued, next_update=next_update),
        pck_crl_issuer_chain=pck_chain,
        root_ca_crl=pki.crl(pki.sgx_root, this_update=issued, next_update=next_update),
    )
