"""Pinned NVIDIA trust anchors for GPU evidence, and the trust-anchor set the GPU verifier uses.

The two NVIDIA roots ship as package data (``ccai/verify/anchors/*.pem``, byte-exact copies of
``verifier/certs/*.pem`` from NVIDIA's nvtrust) and are pinned by SHA-256 fingerprint of their DER
encoding: a PEM file that does not hash to the pinned value is never trusted (gpu-evidence.md §6.1,
§6.4).

======================================  ================================================================
anchor                                  SHA-256 fingerprint (DER)
======================================  ================================================================
NVIDIA Device Identity CA               ``102bf659d5419614c9d8e6aecebc80454eb26b1df6a769ac720b9a690b167b48``
NVIDIA CoRIM signing Root CA            ``12977b5115acb0381179279fffeb5a8c4d264971ebb32298023a465fa41df5d1``
======================================  ================================================================

The virtual GPU's test PKI is a separate :class:`GpuTrustAnchors` with ``simulated=True``, built as
part of :meth:`ccai.verify.TrustAnchors.simulated_test_pki`; the verifier trusts it only when its
caller passes ``allow_simulated=True``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass, field
from importlib import resources

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ccai.errors import UsageError

__all__ = [
    "NVIDIA_CORIM_ROOT_SHA256",
    "NVIDIA_DEVICE_ROOT_SHA256",
    "GpuTrustAnchors",
    "certificate_sha256",
    "nvidia_gpu_anchors",
]

#: SHA-256 of the DER of ``NVIDIA Device Identity CA`` (root of every GPU/NVSwitch device chain).
NVIDIA_DEVICE_ROOT_SHA256 = "102bf659d5419614c9d8e6aecebc80454eb26b1df6a769ac720b9a690b167b48"
#: SHA-256 of the DER of ``NVIDIA CoRIM signing Root CA`` (root of every RIM signing chain).
NVIDIA_CORIM_ROOT_SHA256 = "12977b5115acb0381179279fffeb5a8c4d264971ebb32298023a465fa41df5d1"

_DEVICE_ROOT_FILE = "nvidia_device_identity_ca.pem"
_CORIM_ROOT_FILE = "nvidia_corim_signing_root_ca.pem"


def certificate_sha256(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint (lower-case hex) of a certificate's DER encoding."""
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuTrustAnchors:
    """The roots a GPU verification trusts.

    Attributes:
        device_roots: Roots for the attestation-key (device) certificate chain.
        rim_roots: Roots for the RIM signing chain.
        simulated: True for ccai's virtual-hardware test PKI; such anchors are only used when the
            caller asks for simulation with ``allow_simulated=True``.
        name: Human name for messages (``"NVIDIA"``, ``"ccai virtual GPU test PKI"``).
        identity: SHA-256 over every root's DER (computed): the key under which verification
            results for this anchor set are cached, so two sets with the same name never share them.
    """

    device_roots: tuple[x509.Certificate, ...]
    rim_roots: tuple[x509.Certificate, ...]
    simulated: bool = False
    name: str = "NVIDIA"
    identity: str = field(init=False, default="")

    def __post_init__(self) -> None:
        if not self.device_roots or not self.rim_roots:
            raise UsageError("a GPU trust-anchor set needs at least one device root and one RIM root")
        h = hashlib.sha256(b"ccai gpu trust anchors v1")
        for label, roots in ((b"device", self.device_roots), (b"rim", self.rim_roots)):
            for root in roots:
                h.update(label + bytes.fromhex(certificate_sha256(root)))
        h.update(b"simulated" if self.simulated else b"genuine")
        object.__setattr__(self, "identity", h.hexdigest())


def _load_pinned(filename: str, fingerprint: str) -> x509.Certificate:
    data = resources.files("ccai.verify").joinpath("anchors", filename).read_bytes()
    cert = x509.load_pem_x509_certificate(data)
    actual = certificate_sha256(cert)
    # Constant-time for form's sake: the fingerprint is public, but this is the pin check.
    if not hmac.compare_digest(actual, fingerprint):
        raise UsageError(
            f"packaged trust anchor {filename} does not match its pinned fingerprint",
            expected=fingerprint,
            actual=actual,
            hint="the ccai installation is damaged or was modified; reinstall it",
        )
    return cert


@functools.cache
def nvidia_gpu_anchors() -> GpuTrustAnchors:
    """The pinned NVIDIA roots (loaded and fingerprint-checked once per process).

    Returns:
        ``NVIDIA Device Identity CA`` as device root, ``NVIDIA CoRIM signing Root CA`` as RIM root.

    Raises:
        UsageError: the packaged PEM files do not hash to the pinned fingerprints.
    """
    return GpuTrustAnchors(
        device_roots=(_load_pinned(_DEVICE_ROOT_FILE, NVIDIA_DEVICE_ROOT_SHA256),),
        rim_roots=(_load_pinned(_CORIM_ROOT_FILE, NVIDIA_CORIM_ROOT_SHA256),),
        simulated=False,
        name="NVIDIA",
    )
