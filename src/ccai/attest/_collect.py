"""Collect a composite bundle inside the (real or virtual) confidential VM, and gather its collateral.

Order matters (docs/composite-evidence.md): (1) derive the GPU nonce from the verifier nonce;
(2) collect every GPU's report and chain with it, and every NVSwitch's of a protected-PCIe system;
(3) compute report_data over the nonce, the exact GPU (and switch) evidence and the keys; (4) get
the CPU quote/report carrying that report_data. The CPU evidence is made last, so it can commit to
everything else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519

from ccai.attest._ppcie import SwitchSource, collect_switch_evidence
from ccai.collateral import (
    AmdKdsClient,
    CollateralBundle,
    CollateralSource,
    GpuCollateral,
    IntelPcsClient,
    cpu_collateral_section,
    gather_gpu_collateral,
)
from ccai.errors import DeviceNotSupported, UsageError
from ccai.evidence import (
    BINDING_V1,
    CpuEvidence,
    EvidenceBundle,
    GpuEvidence,
    SnpProduct,
    composite_report_data,
    derive_gpu_nonce,
    parse_snp_report,
    parse_tdx_quote,
)

if TYPE_CHECKING:
    from ccai.device import GpuBackend
    from ccai.tee import CpuTee

__all__ = [
    "collect_composite",
    "gather_composite_collateral",
    "keys_from_pem",
]

_ARCH = {"hopper": "HOPPER", "blackwell": "BLACKWELL"}


def keys_from_pem(pems: Sequence[bytes]) -> tuple[bytes | None, bytes | None]:
    """Sort PEM files into the keys a bundle binds: (TLS SPKI SHA-256, raw HPKE public key).

    A certificate or a non-X25519 public key is the TLS key (its SubjectPublicKeyInfo DER is
    hashed); an X25519 public key is the HPKE key (raw 32 bytes).

    Raises:
        UsageError: not a PEM certificate or public key, or two keys of one kind.
    """
    tls: bytes | None = None
    hpke: bytes | None = None
    for pem in pems:
        try:
            if b"-----BEGIN CERTIFICATE-----" in pem:
                key = x509.load_pem_x509_certificate(pem).public_key()
            else:
                key = serialization.load_pem_public_key(pem)  # type: ignore[assignment]
        except ValueError as exc:
            raise UsageError(f"--bind-key: not a PEM certificate or public key ({exc})") from None
        if isinstance(key, x25519.X25519PublicKey):
            if hpke is not None:
                raise UsageError("--bind-key: two HPKE (X25519) keys given")
            hpke = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        else:
            if tls is not None:
                raise UsageError("--bind-key: two TLS keys given")
            spki = key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            tls = hashlib.sha256(spki).digest()
    return tls, hpke


def _collect_gpus(backend: GpuBackend, gpu_nonce: bytes) -> tuple[GpuEvidence, ...]:
    items = []
    for gpu in backend.status().gpus:
        arch = _ARCH.get(gpu.architecture.value)
        if arch is None:
            raise DeviceNotSupported(f"GPU {gpu.index} ({gpu.name}) has no CC attestation", index=gpu.index)
        items.append(
            GpuEvidence(
                arch=arch,
                nonce=gpu_nonce,
                report=backend.attestation_report(gpu.index, gpu_nonce),
                certificate_chain=backend.certificate_chain(gpu.index),
            )
        )
    return tuple(items)


def collect_composite(
    *,
    nonce: bytes,
    cpu: CpuTee | None,
    gpu: GpuBackend | None,
    tls_spki_sha256: bytes | None = None,
    hpke_public_key: bytes | None = None,
    switches: SwitchSource | None = None,
) -> EvidenceBundle:
    """Collect GPU (and NVSwitch) and CPU evidence bound to ``nonce`` under ``ccai/composite/v1``.

    Args:
        nonce: The verifier's 32-byte nonce.
        cpu: The CPU TEE (``None`` for GPU-only evidence, which then binds nothing on the CPU side).
        gpu: The GPU backend (``None`` for CPU-only evidence).
        tls_spki_sha256: SHA-256 of the TLS key's SPKI to bind, if any.
        hpke_public_key: Raw HPKE public key to bind, if any.
        switches: The NVSwitches of a protected-PCIe system (the virtual HGX backend, or
            :func:`~ccai.attest.nscq_switches`): each answers the derived GPU nonce, and the CPU
            report commits to their evidence too (the ``S`` section of the binding).

    Returns:
        The bundle (no collateral; see :func:`gather_composite_collateral`).

    Raises:
        UsageError: bad nonce or key sizes, or neither CPU nor GPU.
        DeviceError: collection failed.
    """
    if cpu is None and gpu is None:
        raise UsageError("nothing to attest: neither a CPU TEE nor GPUs")
    gpu_nonce = derive_gpu_nonce(nonce)
    items = _collect_gpus(gpu, gpu_nonce) if gpu is not None else ()
    switch_items: tuple[GpuEvidence, ...] = ()
    if switches is not None:
        switch_items = tuple(collect_switch_evidence(switches, gpu_nonce))
    cpu_item: CpuEvidence | None = None
    if cpu is not None:
        report_data = composite_report_data(
            nonce,
            items,
            tls_spki_sha256=tls_spki_sha256,
            hpke_public_key=hpke_public_key,
            switches=switch_items,
        )
        quote = cpu.quote(report_data)
        cpu_item = CpuEvidence(type=quote.type, evidence=quote.evidence, certificates=quote.certificates)
    return EvidenceBundle(
        nonce=bytes(nonce),
        binding=BINDING_V1,
        gpus=items,
        cpu=cpu_item,
        tls_spki_sha256=tls_spki_sha256,
        hpke_public_key=hpke_public_key,
        switches=switch_items,
    )


def gather_composite_collateral(
    bundle: EvidenceBundle,
    *,
    now: datetime,
    gpu_source: CollateralSource | None,
    pcs: IntelPcsClient | None = None,
    kds: AmdKdsClient | None = None,
    check_revocation: bool = True,
) -> CollateralBundle:
    """Fetch everything needed to verify ``bundle`` offline.

    Args:
        bundle: The evidence.
        now: The time OCSP responses and caches are judged at.
        gpu_source: Where RIMs and OCSP responses come from (``None``: no GPU collateral).
        pcs: Intel PCS / PCCS client for TDX collateral.
        kds: AMD KDS client for SNP collateral (skipped when the evidence carries the VCEK).
        check_revocation: Fetch OCSP responses for the GPU (and NVSwitch) chains.

    Raises:
        CollateralUnavailable: an item cannot be fetched.
    """
    gpu = GpuCollateral(rims={}, ocsp={}, ocsp_checked=False)
    devices = [*bundle.gpus, *bundle.switches]
    if devices and gpu_source is not None:
        # One collateral section for GPUs and switches: RIMs by id, OCSP responses by certificate.
        gpu = gather_gpu_collateral(devices, gpu_source, now=now, check_revocation=check_revocation)
    cpu: dict[str, object] = {}
    if bundle.cpu is not None and bundle.cpu.type == "tdx" and pcs is not None:
        cpu = cpu_collateral_section(pcs.tdx_collateral(parse_tdx_quote(bundle.cpu.evidence)))
    elif bundle.cpu is not None and bundle.cpu.type == "snp" and kds is not None:
        report = parse_snp_report(bundle.cpu.evidence)
        product = report.product or SnpProduct.MILAN
        cpu = cpu_collateral_section(kds.snp_collateral(report, product))
    return CollateralBundle(gpu=gpu, cpu=cpu, created_at=now)
