"""The test PKI behind the virtual CC GPU, generated deterministically from a seed.

Two hierarchies, shaped like NVIDIA's (gpu-evidence.md §6.1, §6.4) and named so nobody can
mistake them for NVIDIA's:

* device identity: ``ccai TEST Device Identity CA`` → ``ccai TEST <chip> Identity`` →
  ``ccai TEST <chip> Provisioner ICA …`` → per-GPU ``<chip> A01 GSP BROM`` → per-boot
  ``<chip> A01 GSP FMC LF`` leaf carrying the TCG DICE FWID extension in the Hopper or the
  Blackwell encoding (§6.2);
* RIM signing: ``ccai TEST CoRIM signing Root CA`` → ``ccai TEST Reference Value <chip> CA`` →
  ``… L3 …`` → ``… L4 Signer``.

Keys are P-384, derived with HKDF-SHA-384 from the seed and a label, and certificates are signed
with deterministic ECDSA (RFC 6979), so the same seed always gives byte-identical certificates.
Generated material is cached under ``$CCAI_HOME`` so later processes skip the key derivations.
Nothing here is trusted by ccai's verifiers unless a caller asks for simulation by name.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from ccai.device import Architecture
from ccai.virtual._common import SeededKeys, der_tlv, key_usage, read_cache, write_private_file
from ccai.virtual._gpu_model import VirtualGpuModel

__all__ = [
    "EXPIRED_WINDOW",
    "FWID_OID_BLACKWELL",
    "FWID_OID_HOPPER",
    "OCSP_URL",
    "PkiCredential",
    "VirtualPki",
    "VirtualRevocation",
    "blackwell_fwid_extension",
    "hopper_fwid_extension",
]

#: TCG DICE TcbInfo, used by Hopper leaves with an NVIDIA-specific body (gpu-evidence.md §6.2).
FWID_OID_HOPPER = x509.ObjectIdentifier("2.23.133.5.4.1")
#: TCG DICE TcbInfo "alias" variant, used by Blackwell leaves (standard DiceTcbInfo).
FWID_OID_BLACKWELL = x509.ObjectIdentifier("2.23.133.5.4.1.1")
#: NVIDIA's SAN otherName type for the device id in the leaf certificate.
_SAN_DEVICE_OID = x509.ObjectIdentifier("1.3.6.1.4.1.412.274.1")
#: Where the test PKI says its OCSP responder lives (``.invalid``: never resolvable, RFC 2606).
OCSP_URL = "http://ocsp.ccai-test.invalid"
_CRL_BASE = "http://crl.ccai-test.invalid/crl"

_ORG = "ccai TEST PKI"
_CURVE = ec.SECP384R1()
_FOREVER = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
_CACHE_FORMAT = "ccai-virtual-pki/2"  # bump whenever generated certificates change
# DER of the sha384 AlgorithmIdentifier OID 2.16.840.1.101.3.4.2.2.
_SHA384_OID_DER = bytes.fromhex("0609608648016503040202")


def _rim_name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _utc(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


# Validity windows (fixed, so certificates are reproducible). Device chains follow NVIDIA's
# (valid from 2020–2023 to 9999-12-31); RIM signers get long windows so virtual RIMs verify today.
_DEVICE_ROOT_FROM = _utc(2021, 11, 5)
_CHAIN_FROM = {Architecture.HOPPER: _utc(2022, 3, 1), Architecture.BLACKWELL: _utc(2023, 6, 20)}
_RIM_ROOT_WINDOW = (_utc(2023, 3, 16), _utc(2053, 3, 8))
_RIM_CA_WINDOW = (_utc(2023, 4, 1), _utc(2049, 12, 31))
_RIM_L4_WINDOW = (_utc(2025, 1, 1), _utc(2045, 1, 1))
#: The window of a leaf issued by the EXPIRED_CERTIFICATE fault: over before any plausible "now".
EXPIRED_WINDOW = (_utc(2022, 3, 1), _utc(2024, 1, 1))
_REVOKED_AT = _utc(2024, 6, 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class PkiCredential:
    """A certificate and its private key (for CAs: what an OCSP responder or signer needs)."""

    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey

    @property
    def certificate_pem(self) -> bytes:
        """The certificate as PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True, slots=True, kw_only=True)
class VirtualRevocation:
    """A revoked test-PKI certificate, as the OCSP responder should report it."""

    serial_number: int
    issuer: x509.Name
    revoked_at: datetime
    reason: x509.ReasonFlags


# -- the two FWID extension bodies (DER framing only, no crypto) -------------------------------


def hopper_fwid_extension(brom_public_key: ec.EllipticCurvePublicKey, fwid: bytes) -> bytes:
    """Hopper FWID body: ``SEQUENCE { INTEGER 1, SubjectPublicKeyInfo (BROM key), SEQUENCE { sha384, OCTET
    STRING fwid } }`` — verifiers take its last 48 bytes (gpu-evidence.md §6.2)."""
    spki = brom_public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = der_tlv(0x30, _SHA384_OID_DER + der_tlv(0x04, fwid))
    return der_tlv(0x30, der_tlv(0x02, b"\x01") + spki + digest)


def blackwell_fwid_extension(model_name: str, fwid: bytes) -> bytes:
    """Blackwell FWID body: a DiceTcbInfo with implicit context tags; ``[6] fwids`` holds the FWID and an
    all-zero second entry, as in real GB100/GB202 leaves (gpu-evidence.md §6.2)."""
    fwids = der_tlv(0x30, _SHA384_OID_DER + der_tlv(0x04, fwid)) + der_tlv(
        0x30, _SHA384_OID_DER + der_tlv(0x04, bytes(48))
    )
    body = b"".join(
        [
            der_tlv(0x80, b"ccai TEST"),  # [0] vendor
            der_tlv(0x81, model_name.encode()),  # [1] model
            der_tlv(0x82, b"01"),  # [2] version
            der_tlv(0x83, b"\x01"),  # [3] svn
            der_tlv(0x84, b"\x00"),  # [4] layer
            der_tlv(0x85, b"\x00"),  # [5] index
            der_tlv(0xA6, fwids),  # [6] fwids
            der_tlv(0x87, bytes.fromhex("0080000001")),  # [7] flags (BIT STRING, 0 unused bits)
            der_tlv(0x88, b"\xc0"),  # [8] vendorInfo
            der_tlv(0x89, b"\x00"),  # [9] type
        ]
    )
    return der_tlv(0x30, body)


def _name(cn: str, *, serial: str | None = None, country: bool = False) -> x509.Name:
    """A subject in NVIDIA's attribute order: per-device names are ``serialNumber, C, O, CN``;
    CA names are ``CN, O[, C]`` (as in the real chains, gpu-evidence.md §6.1)."""
    org = x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG)
    common = x509.NameAttribute(NameOID.COMMON_NAME, cn)
    us = x509.NameAttribute(NameOID.COUNTRY_NAME, "US")
    if serial is not None:
        return x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, serial), us, org, common])
    return x509.Name([common, org, us] if country else [common, org])


class VirtualPki(SeededKeys):
    """The deterministic test PKI for one seed.

    Certificates are created on first use and remembered (in memory and in a cache file under
    ``cache_dir``). :meth:`issuer_of` finds the CA credential of any certificate this PKI issued,
    which is what an OCSP responder for the test PKI needs.

    Args:
        seed: Secret seed; the same seed gives the same keys, serials and certificates.
        cache_dir: Where to keep ``virtual-pki-<id>.json``; ``None`` keeps everything in memory.
        revoked: Serial numbers the test OCSP responder must report as revoked.
    """

    def __init__(self, seed: bytes, *, cache_dir: Path | None = None, revoked: Iterable[int] = ()) -> None:
        super().__init__(seed, salt=b"ccai virtual gpu v1")
        self.seed_id = hashlib.sha256(b"ccai virtual pki id\x00" + self._seed).hexdigest()[:16]
        self._cache_path = cache_dir / f"virtual-pki-{self.seed_id}.json" if cache_dir else None
        self._creds: dict[str, PkiCredential] = {}
        self._dirty = False
        self._load_cache()
        self._revoked = frozenset(revoked)

    # -- derivations ----------------------------------------------------------------------------

    def derive_key(self, label: str) -> ec.EllipticCurvePrivateKey:
        """The P-384 private key for ``label``: HKDF output reduced into [1, n-1]."""
        return self.derive_ec_key(label, _CURVE)

    # -- cache ----------------------------------------------------------------------------------

    def _load_cache(self) -> None:
        data = read_cache(self._cache_path, cache_format=_CACHE_FORMAT, seed_id=self.seed_id)
        if data is None:
            return
        try:
            for label, item in data["credentials"].items():
                key = serialization.load_pem_private_key(item["key"].encode(), password=None)
                cert = x509.load_pem_x509_certificate(item["cert"].encode())
                if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
                    return
                self._creds[label] = PkiCredential(certificate=cert, private_key=key)
        except (ValueError, KeyError, TypeError, AttributeError):
            self._creds.clear()  # a damaged cache is only a cache: regenerate

    def save_cache(self) -> None:
        """Write newly generated material to the cache file (atomically); no-op without changes."""
        if self._cache_path is None or not self._dirty:
            return
        creds = {
            label: {
                "key": c.private_key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ).decode(),
                "cert": c.certificate_pem.decode(),
            }
            for label, c in sorted(self._creds.items())
            # Per-boot leaves are cheap and change with every boot: caching them would only grow the file.
            if not label.startswith("leaf:")
        }
        payload = {"format": _CACHE_FORMAT, "seed_id": self.seed_id, "credentials": creds}
        write_private_file(self._cache_path, json.dumps(payload).encode())
        self._dirty = False

    # -- issuance -------------------------------------------------------------------------------

    def _issue(
        self,
        label: str,
        *,
        subject: x509.Name,
        issuer: PkiCredential | None,
        window: tuple[datetime, datetime],
        ca: bool,
        serial: int | None = None,
        key: ec.EllipticCurvePrivateKey | None = None,
        crl_sign: bool = True,
        extra: Iterable[tuple[x509.ExtensionType, bool]] = (),
    ) -> PkiCredential:
        cached = self._creds.get(label)
        if cached is not None:
            return cached
        key = key or self.derive_key(label)
        public = key.public_key()
        ski = x509.SubjectKeyIdentifier.from_public_key(public)
        signer_key = issuer.private_key if issuer else key
        aki = (
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            )
            if issuer
            else x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer.certificate.subject if issuer else subject)
            .public_key(public)
            .serial_number(serial if serial is not None else self._serial(label))
            .not_valid_before(window[0])
            .not_valid_after(window[1])
        )
        if ca:
            builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        builder = builder.add_extension(key_usage(ca=ca, crl_sign=crl_sign), critical=True)
        for ext, critical in extra:
            builder = builder.add_extension(ext, critical=critical)
        builder = builder.add_extension(ski, critical=False).add_extension(aki, critical=False)
        cert = builder.sign(signer_key, hashes.SHA384(), ecdsa_deterministic=True)
        cred = PkiCredential(certificate=cert, private_key=key)
        self._creds[label] = cred
        self._dirty = self._dirty or not label.startswith("leaf:")
        return cred

    @staticmethod
    def _ocsp_ext() -> tuple[x509.ExtensionType, bool]:
        return (
            x509.AuthorityInformationAccess(
                [
                    x509.AccessDescription(
                        AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(OCSP_URL)
                    )
                ]
            ),
            False,
        )

    @staticmethod
    def _crl_ext(name: str) -> tuple[x509.ExtensionType, bool]:
        point = x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(f"{_CRL_BASE}/{name}.crl")],
            relative_name=None,
            reasons=None,
            crl_issuer=None,
        )
        return x509.CRLDistributionPoints([point]), False

    # device identity hierarchy ---------------------------------------------------------------

    @property
    def device_root(self) -> PkiCredential:
        """``ccai TEST Device Identity CA`` (self-signed; stands in for ``NVIDIA Device Identity CA``)."""
        return self._issue(
            "device-root",
            subject=_name("ccai TEST Device Identity CA"),
            issuer=None,
            window=(_DEVICE_ROOT_FROM, _FOREVER),
            ca=True,
        )

    def identity_ca(self, model: VirtualGpuModel) -> PkiCredential:
        """``ccai TEST <chip> Identity`` (stands in for ``NVIDIA GH100 Identity``)."""
        chip = model.identity_chip
        return self._issue(
            f"identity:{chip}",
            subject=_name(f"ccai TEST {chip} Identity"),
            issuer=self.device_root,
            window=(_CHAIN_FROM[model.architecture], _FOREVER),
            ca=True,
            extra=[self._crl_ext("l1-root"), self._ocsp_ext()],
        )

    def provisioner_ca(self, model: VirtualGpuModel) -> PkiCredential:
        """``ccai TEST <chip> Provisioner ICA <n>`` (stands in for ``NVIDIA GH100 Provisioner ICA 1``)."""
        return self._issue(
            f"provisioner:{model.chip}",
            subject=_name(f"ccai TEST {model.chip} Provisioner ICA {model.provisioner_suffix}", country=True),
            issuer=self.identity_ca(model),
            window=(_CHAIN_FROM[model.architecture], _FOREVER),
            ca=True,
            extra=[self._crl_ext(f"l2-{model.chip.lower()}"), self._ocsp_ext()],
        )

    def device_id(self, model: VirtualGpuModel, index: int) -> int:
        """The per-GPU device id: the BROM certificate's serial (9 bytes, like NVIDIA's)."""
        return self._serial(f"brom:{model.chip}:{index}", 9)

    def brom(self, model: VirtualGpuModel, index: int) -> PkiCredential:
        """The per-GPU identity certificate ``<chip> A01 GSP BROM`` (Blackwell ones carry AIA OCSP)."""
        serial = self.device_id(model, index)
        extra = [self._ocsp_ext()] if model.architecture is Architecture.BLACKWELL else []
        return self._issue(
            f"brom:{model.chip}:{index}",
            subject=_name(f"{model.cert_chip} A01 GSP BROM", serial=f"{serial:X}", country=True),
            issuer=self.provisioner_ca(model),
            window=(_CHAIN_FROM[model.architecture], _FOREVER),
            ca=True,
            serial=serial,
            crl_sign=False,
            extra=extra,
        )

    def leaf(
        self, model: VirtualGpuModel, index: int, *, boot: int, fwid: bytes, expired: bool = False
    ) -> PkiCredential:
        """The per-boot attestation leaf ``<chip> A01 GSP FMC LF`` carrying the FWID extension.

        Args:
            model: GPU model (selects the FWID encoding and names).
            index: GPU index.
            boot: Boot counter: a new boot gets a new attestation key, as on real GPUs.
            fwid: The 48-byte firmware id, equal to the report's opaque FWID.
            expired: Issue it with a validity window that has already ended (fault injection).
        """
        label = f"leaf:{model.chip}:{index}:{boot}:{fwid.hex()}:{'expired' if expired else 'valid'}"
        key = self.derive_key(f"leaf:{model.chip}:{index}:{boot}")
        brom = self.brom(model, index)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
        # NVIDIA's leaf serial is the SKI with its top two bits forced to 01.
        serial = (int.from_bytes(ski, "big") & ~(0b11 << 158)) | (1 << 158)
        if model.architecture is Architecture.HOPPER:
            fwid_ext = x509.UnrecognizedExtension(
                FWID_OID_HOPPER, hopper_fwid_extension(brom.private_key.public_key(), fwid)
            )
        else:
            fwid_ext = x509.UnrecognizedExtension(
                FWID_OID_BLACKWELL, blackwell_fwid_extension(f"{model.cert_chip} A01 GSP", fwid)
            )
        san = x509.SubjectAlternativeName(
            [
                x509.OtherName(
                    _SAN_DEVICE_OID, der_tlv(0x0C, f"CCAI-TEST:{model.chip}:{serial >> 96:016X}".encode())
                )
            ]
        )
        window = EXPIRED_WINDOW if expired else (_CHAIN_FROM[model.architecture], _FOREVER)
        return self._issue(
            label,
            subject=_name(f"{model.cert_chip} A01 GSP FMC LF", serial=f"{serial:040X}", country=True),
            issuer=brom,
            window=window,
            ca=False,
            serial=serial,
            key=key,
            extra=[(san, False), (fwid_ext, False)],
        )

    def device_chain(
        self, model: VirtualGpuModel, index: int, *, boot: int, fwid: bytes, expired: bool = False
    ) -> tuple[x509.Certificate, ...]:
        """The 5-certificate attestation chain of GPU ``index``, leaf first, root last."""
        return (
            self.leaf(model, index, boot=boot, fwid=fwid, expired=expired).certificate,
            self.brom(model, index).certificate,
            self.provisioner_ca(model).certificate,
            self.identity_ca(model).certificate,
            self.device_root.certificate,
        )

    # RIM signing hierarchy ---------------------------------------------------------------------

    @property
    def rim_root(self) -> PkiCredential:
        """``ccai TEST CoRIM signing Root CA`` (stands in for ``NVIDIA CoRIM signing Root CA``)."""
        return self._issue(
            "rim-root",
            subject=_rim_name("ccai TEST CoRIM signing Root CA"),
            issuer=None,
            window=_RIM_ROOT_WINDOW,
            ca=True,
        )

    def _rim_names(self, model: VirtualGpuModel) -> tuple[str, str, str]:
        if model.architecture is Architecture.HOPPER:
            return (
                "ccai TEST Reference Value GH100 CA",
                "ccai TEST Reference Value L3 GH100 001",
                "ccai TEST HCC RIM L4 Signer",
            )
        return (
            "ccai TEST Reference Value GB1XX CA 001",
            "ccai TEST Reference Value L3 GB100-CC 001",
            "ccai TEST RIM L4 Signer",
        )

    def rim_signer(self, model: VirtualGpuModel) -> PkiCredential:
        """The L4 RIM signer for ``model``'s family (its chain: :meth:`rim_chain`)."""
        ca_name, l3_name, l4_name = self._rim_names(model)
        family = "hopper" if model.architecture is Architecture.HOPPER else "blackwell"
        ca = self._issue(
            f"rim-ca:{family}",
            subject=_rim_name(ca_name),
            issuer=self.rim_root,
            window=_RIM_CA_WINDOW,
            ca=True,
            extra=[self._ocsp_ext()],
        )
        l3 = self._issue(
            f"rim-l3:{family}",
            subject=_rim_name(l3_name),
            issuer=ca,
            window=_RIM_CA_WINDOW,
            ca=True,
            extra=[self._ocsp_ext()],
        )
        return self._issue(
            f"rim-l4:{family}",
            subject=_rim_name(l4_name),
            issuer=l3,
            window=_RIM_L4_WINDOW,
            ca=False,
            extra=[self._ocsp_ext()],
        )

    def rim_chain(self, model: VirtualGpuModel) -> tuple[x509.Certificate, ...]:
        """The RIM signing chain for ``model``: L4 signer, L3, CA, root (as embedded in RIMs)."""
        l4 = self.rim_signer(model).certificate
        chain = [l4]
        while chain[-1].issuer != chain[-1].subject:
            parent = self.issuer_of(chain[-1])
            if parent is None:  # pragma: no cover - every RIM certificate is issued here
                break
            chain.append(parent.certificate)
        return tuple(chain)

    # lookups -----------------------------------------------------------------------------------

    def credentials(self) -> tuple[PkiCredential, ...]:
        """Every credential generated so far (CAs and leaves)."""
        return tuple(self._creds.values())

    def issuer_of(self, certificate: x509.Certificate) -> PkiCredential | None:
        """The CA credential that issued ``certificate`` (for OCSP), or ``None`` if not from this PKI."""
        for cred in self._creds.values():
            if cred.certificate.subject != certificate.issuer:
                continue
            try:
                certificate.verify_directly_issued_by(cred.certificate)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return cred
        return None

    def ocsp_signer(self, certificate: x509.Certificate) -> PkiCredential | None:
        """Who signs OCSP responses for ``certificate``: its issuing CA (no delegated responder)."""
        return self.issuer_of(certificate)

    @property
    def revoked_serials(self) -> frozenset[int]:
        """Serial numbers the test OCSP responder must report as revoked."""
        return self._revoked

    def revocation(self, certificate: x509.Certificate) -> VirtualRevocation | None:
        """The revocation record of ``certificate``, or ``None`` if it is good."""
        if certificate.serial_number not in self._revoked:
            return None
        return VirtualRevocation(
            serial_number=certificate.serial_number,
            issuer=certificate.issuer,
            revoked_at=_REVOKED_AT,
            reason=x509.ReasonFlags.key_compromise,
        )
