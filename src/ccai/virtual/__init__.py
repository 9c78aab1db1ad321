"""virtual stage of ccai: the virtual confidential VM, for tests, CI and the demo (docs/virtual-gpu.md,
docs/virtual-tee.md).

Everything here produces evidence in the exact real formats, signed by test PKIs that ccai
derives from a seed. Every test certificate names the organisation :data:`TEST_ORG`, evidence is
marked simulated, and no verifier trusts these anchors unless a caller asks for simulation by
name (``allow_simulated=True``).

* the virtual CC GPU — :class:`VirtualGpuBackend` (a :class:`ccai.device.GpuBackend`), its
  injectable :class:`VirtualFault` s, its test PKI (:class:`VirtualPki`, :class:`PkiCredential`,
  :class:`VirtualRevocation`) and roots (:class:`VirtualTrustAnchors`);
* the virtual CPU TEE — :class:`VirtualCpuTee` (a TDX or SEV-SNP guest on the platforms
  :class:`TdxPlatform` / :class:`SnpPlatform`), its test PKI (:class:`VirtualTeePki`) and roots
  (:class:`VirtualTeeAnchors`);
* :func:`open_virtual_vm` — both halves under one ``$CCAI_HOME``: existing ones as they are, missing
  ones created from one seed;
* the development collateral server — a RIM service, an OCSP responder (:class:`OcspResponder`)
  and Intel-PCS / AMD-KDS paths for the virtual hardware: :func:`settings_for_virtual_gpu`,
  :func:`create_dev_collateral_app` (imports FastAPI only when called) and
  :func:`run_in_background` (uvicorn in a thread).

Importing this package imports neither FastAPI, uvicorn nor httpx.
"""

from __future__ import annotations

from ccai.virtual._anchors import virtual_trust_anchors
from ccai.virtual._collateral_server import (
    DevCollateralSettings,
    OcspIssuer,
    OcspResponder,
    OcspRevocation,
    create_dev_collateral_app,
    run_in_background,
    settings_for_virtual_gpu,
)
from ccai.virtual._gpu import VirtualFault, VirtualGpuBackend, VirtualTrustAnchors
from ccai.virtual._gpu_pki import PkiCredential, VirtualPki, VirtualRevocation
from ccai.virtual._snp import SnpPlatform
from ccai.virtual._tdx import TdxPlatform
from ccai.virtual._tee import DEFAULT_TEE_SEED, VirtualCpuTee, VirtualTeeAnchors
from ccai.virtual._tee_pki import TEST_ORG, VirtualTeePki
from ccai.virtual._vm import open_virtual_vm

__all__ = [
    "DEFAULT_TEE_SEED",
    "TEST_ORG",
    "DevCollateralSettings",
    "OcspIssuer",
    "OcspResponder",
    "OcspRevocation",
    "PkiCredential",
    "SnpPlatform",
    "TdxPlatform",
    "VirtualCpuTee",
    "VirtualFault",
    "VirtualGpuBackend",
    "VirtualPki",
    "VirtualRevocation",
    "VirtualTeeAnchors",
    "VirtualTeePki",
    "VirtualTrustAnchors",
    "create_dev_collateral_app",
    "open_virtual_vm",
    "run_in_background",
    "settings_for_virtual_gpu",
    "virtual_trust_anchors",
]
