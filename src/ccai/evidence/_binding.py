"""The composite binding: how one verifier nonce ties GPU evidence, CPU evidence and keys together.

Scheme ``ccai/composite/v1`` (byte-exact layout in docs/composite-evidence.md)::

    gpu_nonce   = SHA-256( "ccai/composite/v1/gpu-nonce" 0x00 ‖ nonce )
    E           = SHA-256( "ccai/composite/v1/gpu-evidence" 0x00 ‖ u32be(n)
                           ‖ for each GPU i in bundle order:
                               lp(arch ASCII) ‖ lp(report) ‖ lp(certificate chain PEM) )
    report_data = SHA-512( "ccai/composite/v1/report-data" 0x00 ‖ nonce ‖ E
                           ‖ lp(tls_spki_sha256) ‖ lp(hpke_public_key)
                           [‖ S   — only when the bundle carries NVSwitch evidence] )
    S           = SHA-256( "ccai/composite/v1/switch-evidence" 0x00 ‖ u32be(m)
                           ‖ for each switch j in bundle order:
                               lp(arch ASCII) ‖ lp(report) ‖ lp(certificate chain PEM) )

where ``lp(x) = u32be(len(x)) ‖ x`` and an absent key is the empty string. Every GPU's and every
NVSwitch's SPDM request nonce is ``gpu_nonce``; the 64-byte CPU REPORTDATA (TDX) / REPORT_DATA (SNP)
is ``report_data``. Without switches the layout is byte for byte the original one, so bundles
without switches verify as before; with switches the 32 bytes of ``S`` follow the length-prefixed
keys, so adding or removing switch evidence changes ``report_data``.

Scheme ``secretvm/nonce-only`` (foreign, verified only when a caller selects it by name): the GPU
SPDM nonce *is* the verifier nonce, ``report_data[32:64] == nonce`` and ``report_data[0:32] ==
SHA-256(TLS SPKI DER)`` (cpu-evidence.md §6.1, the SecretVM row). It does not commit to the GPU
evidence, so a relay can pair the CPU quote with other GPU evidence made for the same nonce.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Sequence

from ccai.errors import BindingError, UsageError
from ccai.evidence._nvidia_json import GpuEvidence

__all__ = [
    "BINDING_NONCE_ONLY",
    "BINDING_SCHEMES",
    "BINDING_V1",
    "check_report_data",
    "composite_report_data",
    "derive_gpu_nonce",
    "gpu_evidence_digest",
    "switch_evidence_digest",
]

#: ccai's binding scheme (the default; the only one :func:`ccai.attest.collect_composite` writes).
BINDING_V1 = "ccai/composite/v1"
#: The SecretVM / NEAR-style nonce-only scheme of the real TDX + H100 vector (legacy, foreign).
BINDING_NONCE_ONLY = "secretvm/nonce-only"
#: Every scheme a bundle may name.
BINDING_SCHEMES = (BINDING_V1, BINDING_NONCE_ONLY)

_TAG_GPU_NONCE = b"ccai/composite/v1/gpu-nonce\x00"
_TAG_GPU_EVIDENCE = b"ccai/composite/v1/gpu-evidence\x00"
_TAG_REPORT_DATA = b"ccai/composite/v1/report-data\x00"
_TAG_SWITCH_EVIDENCE = b"ccai/composite/v1/switch-evidence\x00"
_NONCE_SIZE = 32


def _lp(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _check_nonce(nonce: bytes) -> None:
    if len(nonce) != _NONCE_SIZE:
        raise UsageError("the verifier nonce must be 32 bytes", expected=_NONCE_SIZE, actual=len(nonce))


def derive_gpu_nonce(nonce: bytes) -> bytes:
    """The SPDM request nonce every GPU gets under ``ccai/composite/v1``.

    One derived nonce for all GPUs keeps the GPU part verifiable by NVIDIA's tools, which take one
    nonce per evidence list; the order and content of the GPU evidence is committed by
    :func:`gpu_evidence_digest` inside the CPU report.

    Raises:
        UsageError: ``nonce`` is not 32 bytes.
    """
    _check_nonce(nonce)
    return hashlib.sha256(_TAG_GPU_NONCE + nonce).digest()


def _evidence_digest(tag: bytes, items: Sequence[GpuEvidence]) -> bytes:
    h = hashlib.sha256(tag)
    h.update(struct.pack(">I", len(items)))
    for item in items:
        h.update(_lp(item.arch.encode("ascii")))
        h.update(_lp(item.report))
        h.update(_lp(item.certificate_chain))
    return h.digest()


def gpu_evidence_digest(items: Sequence[GpuEvidence]) -> bytes:
    """E: SHA-256 over the exact GPU evidence bytes (arch, report, chain per GPU, in order)."""
    return _evidence_digest(_TAG_GPU_EVIDENCE, items)


def switch_evidence_digest(items: Sequence[GpuEvidence]) -> bytes:
    """S: SHA-256 over the exact NVSwitch evidence bytes (arch, report, chain per switch, in order)."""
    return _evidence_digest(_TAG_SWITCH_EVIDENCE, items)


def composite_report_data(
    nonce: bytes,
    items: Sequence[GpuEvidence],
    *,
    tls_spki_sha256: bytes | None = None,
    hpke_public_key: bytes | None = None,
    switches: Sequence[GpuEvidence] = (),
) -> bytes:
    """The 64-byte CPU report_data of ``ccai/composite/v1``.

    Args:
        nonce: The verifier's 32-byte nonce.
        items: The GPU evidence, in bundle order (may be empty for a CPU-only bundle).
        tls_spki_sha256: SHA-256 of the TLS key's SubjectPublicKeyInfo DER (32 bytes), if bound.
        hpke_public_key: The raw HPKE public key (X25519: 32 bytes), if bound.
        switches: The NVSwitch evidence, in bundle order; when present its digest ``S`` is appended.

    Raises:
        UsageError: a nonce or TLS hash of the wrong size.
    """
    _check_nonce(nonce)
    if tls_spki_sha256 is not None and len(tls_spki_sha256) != 32:
        raise UsageError("tls_spki_sha256 must be 32 bytes", expected=32, actual=len(tls_spki_sha256))
    return hashlib.sha512(
        _TAG_REPORT_DATA
        + nonce
        + gpu_evidence_digest(items)
        + _lp(tls_spki_sha256 or b"")
        + _lp(hpke_public_key or b"")
        + (switch_evidence_digest(switches) if switches else b"")
    ).digest()


def check_report_data(
    actual: bytes,
    *,
    scheme: str,
    nonce: bytes,
    items: Sequence[GpuEvidence],
    tls_spki_sha256: bytes | None = None,
    hpke_public_key: bytes | None = None,
    step: str = "binding",
    switches: Sequence[GpuEvidence] = (),
) -> None:
    """Recompute the binding of ``scheme`` and compare it with the CPU report's ``actual`` 64 bytes
    in constant time.

    Raises:
        BindingError: the CPU report does not commit to this nonce, GPU (and NVSwitch) evidence and
            keys; or the nonce-only scheme is asked to bind NVSwitch evidence.
        UsageError: an unknown scheme.
    """
    if scheme == BINDING_V1:
        expected = composite_report_data(
            nonce,
            items,
            tls_spki_sha256=tls_spki_sha256,
            hpke_public_key=hpke_public_key,
            switches=switches,
        )
        if not hmac.compare_digest(actual, expected):
            raise BindingError(
                "the CPU report_data does not commit to this nonce, GPU"
                + (" and NVSwitch" if switches else "")
                + " evidence and bound keys",
                step=step,
                expected=expected.hex(),
                actual=actual.hex(),
                hint="the GPU evidence, the keys or the nonce were swapped after the CPU quote was made",
            )
        return
    if scheme == BINDING_NONCE_ONLY:
        _check_nonce(nonce)
        if switches:
            raise BindingError("the nonce-only binding cannot bind NVSwitch evidence", step=step)
        if not hmac.compare_digest(actual[32:64], nonce):
            raise BindingError(
                "report_data[32:64] is not the verifier nonce (nonce-only binding)",
                step=step,
                expected=nonce.hex(),
                actual=actual[32:64].hex(),
            )
        if tls_spki_sha256 is not None and not hmac.compare_digest(actual[0:32], tls_spki_sha256):
            raise BindingError(
                "report_data[0:32] is not the TLS SPKI hash (nonce-only binding)",
                step=step,
                expected=tls_spki_sha256.hex(),
                actual=actual[0:32].hex(),
            )
        if hpke_public_key is not None:
            raise BindingError("the nonce-only binding cannot bind an HPKE key", step=step)
        return
    raise UsageError(f"unknown binding scheme {scheme!r}", expected=list(BINDING_SCHEMES))
