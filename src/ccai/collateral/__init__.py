"""collateral stage of ccai: the only network/disk edge (see docs/collateral.md).

Sources of GPU collateral all implement :class:`CollateralSource` (``rim`` / ``ocsp``) and raise
:class:`~ccai.errors.CollateralUnavailable` when they cannot answer:

* :class:`RimServiceClient` — NVIDIA's RIM service (``GET <base>/v1/rim/<id>``);
* :class:`OcspClient` — an OCSP responder (POST, SHA-384 CertID, nonce);
* :class:`RimDirectory` — ``<dir>/<id>.xml``;
* :class:`BundleSource` — an offline :class:`CollateralBundle`;
* :class:`CachedSource` — a :class:`CollateralCache` in front of another source;
* :class:`SourceChain` — several sources tried in order.

Every network request is bounded by :class:`HttpLimits` (response size, overall deadline).
:class:`HttpSource`, :func:`send` and :func:`get_ok` are that bounded HTTP base, shared with the
other stages that fetch over HTTP (``ccai.token``'s JWKS and attestation-service clients).

:func:`gather_gpu_collateral` turns evidence plus a source into the :class:`GpuCollateral` the
verifier takes; :func:`default_gpu_source` builds the usual chain.

CPU TEE collateral: :class:`IntelPcsClient` (Intel PCS v4 or a PCCS) fills a :class:`TdxCollateral`,
:class:`AmdKdsClient` (AMD KDS) an :class:`SnpCollateral`; both are plain frozen dataclasses of raw
signed documents, loadable from the vectors' JSON layout (:func:`tdx_collateral_from_json`).

Collateral embedded in a composite evidence bundle: :func:`embed_collateral` and
:func:`load_embedded_collateral` (the bundle format itself keeps it opaque), with
:func:`cpu_collateral_section` / :func:`cpu_collateral_from_bundle` for its ``cpu`` part.
"""

from __future__ import annotations

from ccai.collateral._amd import (
    AMD_KDS_URL,
    AmdKdsClient,
    SnpCollateral,
    load_certificates,
    snp_collateral_from_certificates,
    snp_collateral_from_json,
)
from ccai.collateral._bundle import (
    BUNDLE_VERSION,
    BundleSource,
    CollateralBundle,
    dump_bundle,
    load_bundle,
    read_bundle,
    write_bundle,
)
from ccai.collateral._cache import CachedSource, CollateralCache
from ccai.collateral._chain import SourceChain
from ccai.collateral._embedded import (
    cpu_collateral_from_bundle,
    cpu_collateral_section,
    embed_collateral,
    load_embedded_collateral,
)
from ccai.collateral._gather import gather_gpu_collateral, ocsp_targets, rim_ids_for
from ccai.collateral._http import DEADLINE_ENV, MAX_BYTES_ENV, HttpLimits, HttpSource, get_ok, send
from ccai.collateral._inspect import inspect_bundle
from ccai.collateral._intel import (
    INTEL_PCS_URL,
    INTEL_ROOT_CA_CRL_URL,
    IntelPcsClient,
    TdxCollateral,
    raw_json_member,
    tdx_collateral_from_json,
)
from ccai.collateral._ocsp import DEFAULT_OCSP_URL, OcspClient, build_ocsp_request, new_ocsp_nonce
from ccai.collateral._rim_dir import RimDirectory
from ccai.collateral._rim_service import DEFAULT_RIM_SERVICE_URL, RimServiceClient
from ccai.collateral._sources import default_gpu_source
from ccai.collateral._types import CollateralSource, GpuCollateral, ocsp_key

__all__ = [
    "AMD_KDS_URL",
    "BUNDLE_VERSION",
    "DEADLINE_ENV",
    "DEFAULT_OCSP_URL",
    "DEFAULT_RIM_SERVICE_URL",
    "INTEL_PCS_URL",
    "INTEL_ROOT_CA_CRL_URL",
    "MAX_BYTES_ENV",
    "AmdKdsClient",
    "BundleSource",
    "CachedSource",
    "CollateralBundle",
    "CollateralCache",
    "CollateralSource",
    "GpuCollateral",
    "HttpLimits",
    "HttpSource",
    "IntelPcsClient",
    "OcspClient",
    "RimDirectory",
    "RimServiceClient",
    "SnpCollateral",
    "SourceChain",
    "TdxCollateral",
    "build_ocsp_request",
    "cpu_collateral_from_bundle",
    "cpu_collateral_section",
    "default_gpu_source",
    "dump_bundle",
    "embed_collateral",
    "gather_gpu_collateral",
    "get_ok",
    "inspect_bundle",
    "load_bundle",
    "load_certificates",
    "load_embedded_collateral",
    "new_ocsp_nonce",
    "ocsp_key",
    "ocsp_targets",
    "raw_json_member",
    "read_bundle",
    "rim_ids_for",
    "send",
    "snp_collateral_from_certificates",
    "snp_collateral_from_json",
    "tdx_collateral_from_json",
    "write_bundle",
]
