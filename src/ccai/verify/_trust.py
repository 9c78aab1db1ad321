"""One trust-anchor value for every verifier: GPU device + CoRIM roots, Intel SGX root, AMD roots.

:meth:`TrustAnchors.vendor` is the pinned vendor set (``NVIDIA Device Identity CA``, ``NVIDIA CoRIM
signing Root CA``, Intel SGX Root CA, AMD ARK/ASK/ASVK of Milan, Genoa and Turin; fingerprints in
:mod:`ccai.verify._anchors` and :mod:`ccai.verify._anchors_cpu`). :meth:`TrustAnchors.simulated_test_pki`
builds the anchors of ccai's virtual hardware from their PEM or DER certificates and marks them
``simulated``; the verifiers use such anchors only with ``allow_simulated=True``, always alongside the
vendor roots (real evidence stays genuine under a simulating verifier), and report evidence that chains
to them with ``x-ccai-simulated: true``.

The test PKI is recognised by the anchors a caller passes. When a caller passes none, evidence whose
certificates name the test PKI's organisation (:data:`TEST_PKI_ORGANIZATION`) fails with
:class:`~ccai.errors.SimulatedEvidenceRejected` instead of a bare chain error: the name only chooses
the error class, it never makes anything trusted.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cryptography import x509

from ccai.errors import UsageError
from ccai.evidence import SnpProduct
from ccai.verify._anchors import GpuTrustAnchors, nvidia_gpu_anchors
from ccai.verify._anchors_cpu import AmdRoots, amd_roots, intel_sgx_root_ca

__all__ = ["TEST_PKI_ORGANIZATION", "TrustAnchors", "names_test_pki"]

#: The organisation name every certificate of ccai's virtual-hardware test PKIs carries.
TEST_PKI_ORGANIZATION = "ccai TEST PKI"


def names_test_pki(certs: Iterable[x509.Certificate]) -> bool:
    """True when a certificate's subject or issuer names :data:`TEST_PKI_ORGANIZATION`.

    Used only to choose :class:`~ccai.errors.SimulatedEvidenceRejected` over a plain chain error.
    """
    for cert in certs:
        for attr in (*cert.subject, *cert.issuer):
            if attr.oid == x509.NameOID.ORGANIZATION_NAME and attr.value == TEST_PKI_ORGANIZATION:
                return True
    return False


def _certificate(value: bytes | x509.Certificate, what: str) -> x509.Certificate:
    if isinstance(value, x509.Certificate):
        return value
    try:
        if value.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(value)
        return x509.load_der_x509_certificate(value)
    except ValueError as exc:
        raise UsageError(f"test-PKI anchor {what} is not a PEM or DER certificate: {exc}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class TrustAnchors:
    """The roots a verifier trusts, for every kind of evidence.

    Build it with :meth:`vendor` (the pinned roots) or :meth:`simulated_test_pki` (ccai's virtual
    hardware, by name); a set may lack the roots of a kind of evidence it is not meant for.

    Attributes:
        gpu: NVIDIA device-identity and CoRIM signing roots (or the virtual GPU's stand-ins).
        intel_sgx_root: The Intel SGX Root CA (or the virtual TDX guest's stand-in).
        amd: AMD ARK/ASK/ASVK per product (or the virtual SNP guest's stand-ins).
        simulated: True for ccai's virtual-hardware test PKI: trusted only with
            ``allow_simulated=True``.
        name: Human name for messages.
    """

    gpu: GpuTrustAnchors | None = None
    intel_sgx_root: x509.Certificate | None = None
    amd: Mapping[SnpProduct, AmdRoots] = field(default_factory=dict)
    simulated: bool = False
    name: str = "vendor"

    def __post_init__(self) -> None:
        if self.gpu is not None and self.gpu.simulated != self.simulated:
            raise UsageError("the GPU roots and the trust-anchor set disagree about being simulated")
        for product, roots in self.amd.items():
            if roots.product is not product:
                raise UsageError(f"AMD roots for {roots.product.value} filed under {product.value}")

    @staticmethod
    def vendor() -> TrustAnchors:
        """The pinned vendor roots (loaded and fingerprint-checked once per process).

        Raises:
            UsageError: a packaged root does not match its pinned fingerprint.
        """
        return _vendor()

    @classmethod
    def simulated_test_pki(
        cls,
        *,
        gpu_device_root: bytes | x509.Certificate | None = None,
        gpu_rim_root: bytes | x509.Certificate | None = None,
        sgx_root: bytes | x509.Certificate | None = None,
        amd_ark: bytes | x509.Certificate | None = None,
        amd_ask: bytes | x509.Certificate | None = None,
        amd_product: SnpProduct | str | None = None,
        name: str = "ccai virtual hardware test PKI",
    ) -> TrustAnchors:
        """Anchors for ccai's virtual-hardware test PKI, marked ``simulated``.

        Certificates are PEM or DER bytes (or loaded certificates). The virtual SNP guest signs
        with a VCEK only, so its ASK also stands in for the unused ASVK.

        Args:
            gpu_device_root: The virtual GPU's ``ccai TEST Device Identity CA``.
            gpu_rim_root: The virtual GPU's ``ccai TEST CoRIM signing Root CA`` (with the device root).
            sgx_root: The virtual TDX guest's ``ccai TEST SGX Root CA``.
            amd_ark: The virtual SNP guest's ARK.
            amd_ask: The virtual SNP guest's ASK (with the ARK and the product).
            amd_product: The SNP product the ARK/ASK are for.
            name: Human name for messages.

        Returns:
            A ``simulated=True`` set, trusted only with ``allow_simulated=True``.

        Raises:
            UsageError: a certificate does not load, or a root comes without its partner.
        """
        gpu = None
        if (gpu_device_root is None) != (gpu_rim_root is None):
            raise UsageError("test-PKI GPU anchors need both the device root and the RIM root")
        if gpu_device_root is not None and gpu_rim_root is not None:
            gpu = GpuTrustAnchors(
                device_roots=(_certificate(gpu_device_root, "GPU device root"),),
                rim_roots=(_certificate(gpu_rim_root, "GPU RIM root"),),
                simulated=True,
                name="ccai virtual GPU test PKI",
            )
        amd: dict[SnpProduct, AmdRoots] = {}
        if amd_ark is not None or amd_ask is not None or amd_product is not None:
            if amd_ark is None or amd_ask is None or amd_product is None:
                raise UsageError("test-PKI AMD anchors need the ARK, the ASK and the product")
            product = SnpProduct(amd_product)
            ask = _certificate(amd_ask, "AMD ASK")
            amd[product] = AmdRoots(product=product, ark=_certificate(amd_ark, "AMD ARK"), ask=ask, asvk=ask)
        return cls(
            gpu=gpu,
            intel_sgx_root=_certificate(sgx_root, "SGX root") if sgx_root is not None else None,
            amd=amd,
            simulated=True,
            name=name,
        )


@functools.cache
def _vendor() -> TrustAnchors:
    return TrustAnchors(
        gpu=nvidia_gpu_anchors(),
        intel_sgx_root=intel_sgx_root_ca(),
        amd={product: amd_roots(product) for product in SnpProduct},
        simulated=False,
        name="vendor",
    )
