"""Pinned CPU-TEE trust anchors: the Intel SGX Root CA and AMD's ARK/ASK/ASVK per product.

The certificates ship as package data under ``ccai/_roots/`` and are accepted only if their DER
SHA-256 equals the fingerprint written here, so a swapped data file cannot move the trust anchor.
Fingerprints: Intel SGX Root CA as distributed by Intel (and dcap-qvl ``TrustedRootCA.der``);
AMD roots as served by KDS ``/{vcek,vlek}/v1/{product}/cert_chain`` (go-sev-guest ``verify/trust``).
"""

from __future__ import annotations

import functools
import hmac
import warnings
from dataclasses import dataclass
from importlib import resources

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.utils import CryptographyDeprecationWarning

from ccai.errors import UsageError
from ccai.evidence import SnpProduct

__all__ = [
    "AMD_ARK_SHA256",
    "AMD_ASK_SHA256",
    "AMD_ASVK_SHA256",
    "INTEL_SGX_ROOT_CA_SHA256",
    "AmdRoots",
    "amd_roots",
    "intel_sgx_root_ca",
    "sha256_fingerprint",
]

#: DER SHA-256 of the Intel SGX Root CA (valid 2018-05-21..2049-12-31).
INTEL_SGX_ROOT_CA_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"

#: DER SHA-256 of AMD's root keys (ARK), per product.
AMD_ARK_SHA256 = {
    SnpProduct.MILAN: "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    SnpProduct.GENOA: "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
    SnpProduct.TURIN: "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
}
#: DER SHA-256 of AMD's SEV signing keys (ASK, signs VCEKs), per product.
AMD_ASK_SHA256 = {
    SnpProduct.MILAN: "67d303bd3905fd38db8b20e0793699870e7fa612eaad5dec358293fd8c0bac1b",
    SnpProduct.GENOA: "5464738c1546aed5f2cecf1dc98c5c960a92e8913238a61711bc90ec6e828521",
    SnpProduct.TURIN: "5b77ef5fe7a7a004fd9032668fba9d0fda22f88c4442069a479636a6ae3b3185",
}
#: DER SHA-256 of AMD's VLEK signing keys (ASVK), per product.
AMD_ASVK_SHA256 = {
    SnpProduct.MILAN: "c5e081f59b7efab1fe2f8b505e159704e72f29cab7ef7cf628a05a42439082f5",
    SnpProduct.GENOA: "197e610743a917d6b9bb982a5a9226ccc0a15b611be0619e626aca9151457372",
    SnpProduct.TURIN: "104e10a8bd060a3c20a434261a57d0588fd65a88915b4f65b08bdecaf8df1a3c",
}


def sha256_fingerprint(cert: x509.Certificate) -> str:
    """Lower-case hex SHA-256 of a certificate's DER encoding."""
    return cert.fingerprint(hashes.SHA256()).hex()


def _data(*parts: str) -> bytes:
    return resources.files("ccai").joinpath("_roots", *parts).read_bytes()


def _pinned(cert: x509.Certificate, expected: str, what: str) -> x509.Certificate:
    # A packaging error, not bad evidence: the shipped anchor file does not match its pin.
    if not hmac.compare_digest(sha256_fingerprint(cert), expected):
        raise UsageError(
            f"packaged {what} does not match its pinned fingerprint; the installation is corrupt"
        )
    return cert


@functools.cache
def intel_sgx_root_ca() -> x509.Certificate:
    """The pinned Intel SGX Root CA certificate.

    Raises:
        UsageError: the packaged file does not match :data:`INTEL_SGX_ROOT_CA_SHA256`.
    """
    cert = x509.load_der_x509_certificate(_data("intel", "intel_sgx_root_ca.der"))
    return _pinned(cert, INTEL_SGX_ROOT_CA_SHA256, "Intel SGX Root CA")


@dataclass(frozen=True, slots=True, kw_only=True)
class AmdRoots:
    """The pinned AMD certificates of one product.

    Attributes:
        product: The EPYC generation.
        ark: AMD Root Key (self-signed, RSA-4096).
        ask: AMD SEV Key, signs VCEKs.
        asvk: AMD SEV VLEK Key, signs VLEKs.
    """

    product: SnpProduct
    ark: x509.Certificate
    ask: x509.Certificate
    asvk: x509.Certificate


@functools.cache
def amd_roots(product: SnpProduct) -> AmdRoots:
    """The pinned ARK, ASK and ASVK of ``product``.

    Raises:
        UsageError: a packaged file does not match its pinned fingerprint.
    """
    name = product.value.lower()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        ask, ark = x509.load_pem_x509_certificates(_data("amd", f"ask_ark_{name}.pem"))
        asvk, ark2 = x509.load_pem_x509_certificates(_data("amd", f"asvk_ark_{name}.pem"))
    _pinned(ark2, AMD_ARK_SHA256[product], f"ARK-{product.value}")
    return AmdRoots(
        product=product,
        ark=_pinned(ark, AMD_ARK_SHA256[product], f"ARK-{product.value}"),
        ask=_pinned(ask, AMD_ASK_SHA256[product], f"ASK {product.value}"),
        asvk=_pinned(asvk, AMD_ASVK_SHA256[product], f"ASVK {product.value}"),
    )
