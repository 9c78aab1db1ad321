"""Pin the GPU part of ccai.collateral's public surface (Intel/AMD names are pinned by their tests)."""

from __future__ import annotations

import ccai.collateral

GPU_NAMES = {
    "BUNDLE_VERSION",
    "DEFAULT_OCSP_URL",
    "DEFAULT_RIM_SERVICE_URL",
    "BundleSource",
    "CachedSource",
    "CollateralBundle",
    "CollateralCache",
    "CollateralSource",
    "GpuCollateral",
    "OcspClient",
    "RimDirectory",
    "RimServiceClient",
    "SourceChain",
    "build_ocsp_request",
    "default_gpu_source",
    "dump_bundle",
    "gather_gpu_collateral",
    "inspect_bundle",
    "load_bundle",
    "new_ocsp_nonce",
    "ocsp_key",
    "ocsp_targets",
    "read_bundle",
    "rim_ids_for",
    "write_bundle",
}


def test_gpu_collateral_names_are_exported() -> None:
    assert set(ccai.collateral.__all__) >= GPU_NAMES


def test_every_source_implements_the_protocol() -> None:
    from ccai.collateral import (
        BundleSource,
        CachedSource,
        CollateralBundle,
        CollateralCache,
        CollateralSource,
        GpuCollateral,
        OcspClient,
        RimDirectory,
        RimServiceClient,
        SourceChain,
    )

    bundle = BundleSource(CollateralBundle(gpu=GpuCollateral()))
    sources = [
        bundle,
        CachedSource(bundle, CollateralCache()),
        OcspClient(),
        RimDirectory("."),
        RimServiceClient(),
        SourceChain([]),
    ]
    assert all(isinstance(source, CollateralSource) for source in sources)
