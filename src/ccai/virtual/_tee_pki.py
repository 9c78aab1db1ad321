"""The test PKI behind the virtual CPU TEE: an Intel-SGX-like and an AMD-KDS-like hierarchy.

Shaped like the vendors' (cpu-evidence.md §2.6, §2.7, §3.3) and named so nobody can mistake them
for the real thing (organisation ``ccai TEST PKI``):

* Intel-like, ECDSA P-256 / SHA-256: ``ccai TEST SGX Root CA`` → ``ccai TEST SGX PCK Platform CA``
  → ``ccai TEST SGX PCK Certificate`` (carrying the SGX extension, OID 1.2.840.113741.1.13.1, with
  PPID, the 16 CPUSVN components, PCESVN, CPUSVN, PCE-ID, FMSPC and SGX type), and
  ``ccai TEST SGX TCB Signing`` for TCB Info and QE Identity; CRLs of the root and the PCK CA.
* AMD-like: ``ARK-<product>`` (self-signed RSA-4096) → ``SEV-<product>`` (the ASK, RSA-4096) →
  ``SEV-VCEK`` (ECDSA P-384, AMD's extensions 1.3.6.1.4.1.3704.1.*, hwID without a DER tag), every
  certificate signed with RSASSA-PSS / SHA-384 (MGF1-SHA-384, salt 48) like AMD's; an ARK CRL.

Elliptic-curve keys are derived with HKDF-SHA-384 from the seed and a label and certificates are
signed with deterministic ECDSA (RFC 6979), as for the virtual GPU, so they are byte-identical for a
seed. ``cryptography`` cannot derive RSA keys from a seed, so the two RSA keys are generated once
per seed and kept (mode 0600) under ``$CCAI_HOME`` and in a per-process memo. Nothing here is
trusted by ccai's verifiers unless a caller asks for simulation by name.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from ccai.virtual._common import SeededKeys, der_tlv, key_usage, read_cache, write_private_file

__all__ = [
    "AMD_PSS",
    "SGX_EXTENSION_OID",
    "TEST_ORG",
    "VirtualTeePki",
    "pck_sgx_extension",
    "vcek_extensions",
]

#: The organisation of every test-PKI certificate (how verifiers recognise simulated evidence).
TEST_ORG = "ccai TEST PKI"
#: Intel's SGX extension in PCK certificates.
SGX_EXTENSION_OID = "1.2.840.113741.1.13.1"
_AMD_EXT = "1.3.6.1.4.1.3704.1"
#: AMD's signature scheme for ARK/ASK/VCEK certificates: RSASSA-PSS, MGF1-SHA-384, salt 48.
AMD_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)

_CACHE_FORMAT = "ccai-virtual-tee-pki/1"
_RSA_MEMO: dict[str, dict[str, rsa.RSAPrivateKey]] = {}
# RSA-PSS signatures are randomised, so certificates an RSA key signs are kept too: the same seed
# must always present the same ARK/ASK/VCEK bytes (verifiers compare supplied roots byte for byte).
_PSS_CERT_MEMO: dict[str, dict[str, bytes]] = {}
_RSA_LOCK = threading.Lock()


def _utc(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


# Fixed windows (reproducible certificates), shaped like the vendors': Intel's root 2018-05-21..
# 2049-12-31; AMD's ARK/ASK 25 years; VCEKs 7 years (here extended so the demo works for decades).
_INTEL_WINDOW = (_utc(2018, 5, 21), _utc(2049, 12, 31))
_PCK_WINDOW = (_utc(2024, 1, 1), _utc(2049, 12, 31))
_AMD_WINDOW = (_utc(2022, 1, 26), _utc(2047, 1, 26))
_VCEK_WINDOW = (_utc(2024, 1, 1), _utc(2049, 12, 31))


# -- minimal DER framing for the two vendor extensions (no crypto, only TLV encoding) ------------


def _der_int(value: int) -> bytes:
    raw = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True)
    return der_tlv(0x02, raw)


def _der_oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        rest = arc >> 7
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        body += bytes(reversed(chunk))
    return der_tlv(0x06, bytes(body))


def pck_sgx_extension(
    *,
    ppid: bytes,
    cpusvn_components: tuple[int, ...],
    pcesvn: int,
    pce_id: bytes,
    fmspc: bytes,
    sgx_type: int = 0,
) -> bytes:
    """The DER value of Intel's SGX extension (PCK Certificate and CRL Profile §1.5): a SEQUENCE of
    (OID, value) pairs — ``.1`` PPID, ``.2`` TCB (``.2.1``–``.2.16`` components, ``.2.17`` PCESVN,
    ``.2.18`` CPUSVN), ``.3`` PCE-ID, ``.4`` FMSPC, ``.5`` SGX type (ENUMERATED)."""
    oid = SGX_EXTENSION_OID

    def pair(suffix: str, value: bytes) -> bytes:
        return der_tlv(0x30, _der_oid(f"{oid}.{suffix}") + value)

    tcb = b"".join(pair(f"2.{i + 1}", _der_int(svn)) for i, svn in enumerate(cpusvn_components))
    tcb += pair("2.17", _der_int(pcesvn)) + pair("2.18", der_tlv(0x04, bytes(cpusvn_components)))
    body = (
        pair("1", der_tlv(0x04, ppid))
        + pair("2", der_tlv(0x30, tcb))
        + pair("3", der_tlv(0x04, pce_id))
        + pair("4", der_tlv(0x04, fmspc))
        + pair("5", der_tlv(0x0A, bytes([sgx_type])))
    )
    return der_tlv(0x30, body)


def vcek_extensions(
    *, product_name: str, bl: int, tee: int, snp: int, ucode: int, hw_id: bytes
) -> list[x509.UnrecognizedExtension]:
    """AMD's VCEK extensions (KDS spec #57230): structVersion, productName, the SPLs and hwID —
    hwID as raw bytes without a DER tag, exactly as in AMD's certificates."""
    values = [
        ("1", _der_int(0)),
        ("2", der_tlv(0x16, product_name.encode("ascii"))),
        ("3.1", _der_int(bl)),
        ("3.2", _der_int(tee)),
        ("3.3", _der_int(snp)),
        ("3.4", _der_int(0)),
        ("3.5", _der_int(0)),
        ("3.6", _der_int(0)),
        ("3.7", _der_int(0)),
        ("3.8", _der_int(ucode)),
        ("4", hw_id),
    ]
    return [x509.UnrecognizedExtension(x509.ObjectIdentifier(f"{_AMD_EXT}.{k}"), v) for k, v in values]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Cred:
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _intel_name(cn: str) -> x509.Name:
    # Intel's attribute order: CN, O, L, ST, C.
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, TEST_ORG),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Santa Clara"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        ]
    )


def _amd_name(cn: str) -> x509.Name:
    # AMD's attribute order: OU, C, L, ST, O, CN.
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Santa Clara"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "CA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, TEST_ORG),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


class VirtualTeePki(SeededKeys):
    """The test PKI of the virtual CPU TEE for one seed.

    Args:
        seed: Secret seed: the same seed gives the same EC keys and Intel-like certificates.
        cache_dir: Where the RSA keys of the AMD-like hierarchy are kept (``None``: memory only).
    """

    def __init__(self, seed: bytes, *, cache_dir: Path | None = None) -> None:
        super().__init__(seed, salt=b"ccai virtual tee v1")
        self.seed_id = hashlib.sha256(b"ccai virtual tee pki id\x00" + self._seed).hexdigest()[:16]
        self._cache_path = cache_dir / f"virtual-tee-pki-{self.seed_id}.json" if cache_dir else None
        self._creds: dict[str, _Cred] = {}
        self._cache_checked = False  # RSA memo written to this instance's cache file once

    def _rsa_key(self, label: str) -> rsa.RSAPrivateKey:
        with _RSA_LOCK:
            keys = _RSA_MEMO.setdefault(self.seed_id, {})
            certs = _PSS_CERT_MEMO.setdefault(self.seed_id, {})
            if label in keys and self._cache_checked:
                return keys[label]
            if label not in keys:
                cached_keys, cached_certs = self._load_rsa_cache()
                keys.update(cached_keys)
                for name, der in cached_certs.items():
                    certs.setdefault(name, der)
            if label not in keys:
                keys[label] = rsa.generate_private_key(public_exponent=65537, key_size=4096)
            self._save_rsa_cache()
            self._cache_checked = True
            return keys[label]

    def _pss_certificate(self, label: str, make: Callable[[], x509.Certificate]) -> x509.Certificate:
        with _RSA_LOCK:
            certs = _PSS_CERT_MEMO.setdefault(self.seed_id, {})
            der = certs.get(label)
        if der is None:
            cert = make()
            with _RSA_LOCK:
                der = certs.setdefault(label, cert.public_bytes(serialization.Encoding.DER))
                self._save_rsa_cache()
        return x509.load_der_x509_certificate(der)

    def _load_rsa_cache(self) -> tuple[dict[str, rsa.RSAPrivateKey], dict[str, bytes]]:
        data = read_cache(self._cache_path, cache_format=_CACHE_FORMAT, seed_id=self.seed_id)
        if data is None:
            return {}, {}
        try:
            out: dict[str, rsa.RSAPrivateKey] = {}
            for label, pem in data["rsa_keys"].items():
                key = serialization.load_pem_private_key(pem.encode(), password=None)
                if isinstance(key, rsa.RSAPrivateKey):
                    out[str(label)] = key
            certs = {str(k): bytes.fromhex(v) for k, v in data.get("pss_certificates", {}).items()}
            return out, certs
        except (ValueError, KeyError, TypeError, AttributeError):
            return {}, {}  # a damaged cache is only a cache

    def _save_rsa_cache(self) -> None:
        if self._cache_path is None:
            return
        keys = _RSA_MEMO.get(self.seed_id, {})
        certs = _PSS_CERT_MEMO.get(self.seed_id, {})
        on_disk_keys, on_disk_certs = self._load_rsa_cache()
        if set(on_disk_keys) >= set(keys) and set(on_disk_certs) >= set(certs):
            return
        pems = {
            label: key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode()
            for label, key in sorted(keys.items())
        }
        payload = {
            "format": _CACHE_FORMAT,
            "seed_id": self.seed_id,
            "rsa_keys": pems,
            "pss_certificates": {k: v.hex() for k, v in sorted(certs.items())},
        }
        write_private_file(self._cache_path, json.dumps(payload).encode())

    # -- issuance ---------------------------------------------------------------------------------

    def _issue(
        self,
        label: str,
        *,
        subject: x509.Name,
        key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
        issuer: _Cred | None,
        window: tuple[datetime, datetime],
        ca: bool,
        extra: Iterable[x509.ExtensionType] = (),
    ) -> _Cred:
        cached = self._creds.get(label)
        if cached is not None:
            return cached
        signer = issuer.private_key if issuer else key
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer.certificate.subject if issuer else subject)
            .public_key(key.public_key())
            .serial_number(self._serial(label))
            .not_valid_before(window[0])
            .not_valid_after(window[1])
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(key_usage(ca=ca), critical=True)
            .add_extension(ski, critical=False)
        )
        for ext in extra:
            builder = builder.add_extension(ext, critical=False)
        if isinstance(signer, rsa.RSAPrivateKey):
            rsa_signer = signer
            cert = self._pss_certificate(
                label, lambda: builder.sign(rsa_signer, hashes.SHA384(), rsa_padding=AMD_PSS)
            )
        else:
            cert = builder.sign(signer, hashes.SHA256(), ecdsa_deterministic=True)
        cred = _Cred(certificate=cert, private_key=key)
        self._creds[label] = cred
        return cred

    # Intel-like hierarchy ------------------------------------------------------------------------

    @property
    def sgx_root(self) -> _Cred:
        """``ccai TEST SGX Root CA`` (stands in for ``Intel SGX Root CA``)."""
        return self._issue(
            "sgx-root",
            subject=_intel_name("ccai TEST SGX Root CA"),
            key=self.derive_ec_key("sgx-root", ec.SECP256R1()),
            issuer=None,
            window=_INTEL_WINDOW,
            ca=True,
        )

    @property
    def pck_platform_ca(self) -> _Cred:
        """``ccai TEST SGX PCK Platform CA`` (issues PCK certificates and signs the PCK CRL)."""
        return self._issue(
            "pck-platform-ca",
            subject=_intel_name("ccai TEST SGX PCK Platform CA"),
            key=self.derive_ec_key("pck-platform-ca", ec.SECP256R1()),
            issuer=self.sgx_root,
            window=_INTEL_WINDOW,
            ca=True,
        )

    @property
    def tcb_signing(self) -> _Cred:
        """``ccai TEST SGX TCB Signing`` (signs TCB Info and QE Identity)."""
        return self._issue(
            "tcb-signing",
            subject=_intel_name("ccai TEST SGX TCB Signing"),
            key=self.derive_ec_key("tcb-signing", ec.SECP256R1()),
            issuer=self.sgx_root,
            window=_INTEL_WINDOW,
            ca=False,
        )

    def pck(self, *, cpusvn_components: tuple[int, ...], pcesvn: int, fmspc: bytes, pce_id: bytes) -> _Cred:
        """The platform's PCK leaf certificate with the SGX extension."""
        ext = pck_sgx_extension(
            ppid=self.derive_bytes("ppid", 16),
            cpusvn_components=cpusvn_components,
            pcesvn=pcesvn,
            pce_id=pce_id,
            fmspc=fmspc,
        )
        return self._issue(
            "pck",
            subject=_intel_name("ccai TEST SGX PCK Certificate"),
            key=self.derive_ec_key("pck", ec.SECP256R1()),
            issuer=self.pck_platform_ca,
            window=_PCK_WINDOW,
            ca=False,
            extra=[x509.UnrecognizedExtension(x509.ObjectIdentifier(SGX_EXTENSION_OID), ext)],
        )

    def crl(self, issuer: _Cred, *, this_update: datetime, next_update: datetime) -> bytes:
        """An empty DER CRL of ``issuer`` valid from ``this_update`` to ``next_update``."""
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(issuer.certificate.subject)
            .last_update(this_update)
            .next_update(next_update)
        )
        key = issuer.private_key
        if isinstance(key, rsa.RSAPrivateKey):
            crl = builder.sign(key, hashes.SHA384(), rsa_padding=AMD_PSS)
        else:
            crl = builder.sign(key, hashes.SHA256(), ecdsa_deterministic=True)
        return crl.public_bytes(serialization.Encoding.DER)

    # AMD-like hierarchy --------------------------------------------------------------------------

    def ark(self, product: str) -> _Cred:
        """``ARK-<product>`` (self-signed RSA-4096, RSA-PSS; stands in for AMD's root key)."""
        return self._issue(
            f"ark:{product}",
            subject=_amd_name(f"ARK-{product}"),
            key=self._creds[f"ark:{product}"].private_key
            if f"ark:{product}" in self._creds
            else self._rsa_key(f"ark:{product}"),
            issuer=None,
            window=_AMD_WINDOW,
            ca=True,
        )

    def ask(self, product: str) -> _Cred:
        """``SEV-<product>`` (the ASK, RSA-4096, signed by the ARK with RSA-PSS)."""
        return self._issue(
            f"ask:{product}",
            subject=_amd_name(f"SEV-{product}"),
            key=self._creds[f"ask:{product}"].private_key
            if f"ask:{product}" in self._creds
            else self._rsa_key(f"ask:{product}"),
            issuer=self.ark(product),
            window=_AMD_WINDOW,
            ca=True,
        )

    def vcek(self, product: str, *, chip_id: bytes, bl: int, tee: int, snp: int, ucode: int) -> _Cred:
        """``SEV-VCEK`` for ``chip_id`` at the given TCB (ECDSA P-384 key, signed by the ASK)."""
        key = self.derive_ec_key(f"vcek:{product}:{chip_id.hex()}:{bl}:{tee}:{snp}:{ucode}", ec.SECP384R1())
        return self._issue(
            f"vcek:{product}:{chip_id.hex()}:{bl}:{tee}:{snp}:{ucode}",
            subject=_amd_name("SEV-VCEK"),
            key=key,
            issuer=self.ask(product),
            window=_VCEK_WINDOW,
            ca=False,
            extra=vcek_extensions(product_name=product, bl=bl, tee=tee, snp=snp, ucode=ucode, hw_id=chip_id),
        )
