"""The usual source chain for GPU collateral: cache → bundle → RIM directory → network."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime

from cryptography import x509

from ccai._time import utcnow
from ccai.collateral._bundle import BundleSource, CollateralBundle
from ccai.collateral._cache import CachedSource, CollateralCache
from ccai.collateral._chain import SourceChain
from ccai.collateral._http import HttpLimits
from ccai.collateral._ocsp import DEFAULT_OCSP_URL, OcspClient
from ccai.collateral._rim_dir import RimDirectory
from ccai.collateral._rim_service import DEFAULT_RIM_SERVICE_URL, RimServiceClient
from ccai.collateral._types import CollateralSource, ocsp_key
from ccai.errors import CollateralUnavailable

__all__ = ["default_gpu_source"]


class _CacheReader:
    """Answers from a cache only (entries are stored by the :class:`CachedSource` of the network)."""

    def __init__(self, cache: CollateralCache, clock: Callable[[], datetime]) -> None:
        self.cache = cache
        self._clock = clock

    def __repr__(self) -> str:
        return f"cache {self.cache!r}"

    def rim(self, rim_id: str) -> bytes:
        xml = self.cache.get_rim(rim_id, now=self._clock())
        if xml is None:
            raise CollateralUnavailable(f"RIM {rim_id} not cached")
        return xml

    def ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, *, nonce: bytes | None) -> bytes:
        response = self.cache.get_ocsp(ocsp_key(cert), now=self._clock())
        if response is None:
            raise CollateralUnavailable("OCSP response not cached")
        return response


def default_gpu_source(
    *,
    bundle: CollateralBundle | None = None,
    rim_dir: str | os.PathLike[str] | None = None,
    offline: bool = False,
    rim_service_url: str = DEFAULT_RIM_SERVICE_URL,
    ocsp_url: str = DEFAULT_OCSP_URL,
    service_key: str | None = None,
    cache: CollateralCache | None = None,
    clock: Callable[[], datetime] = utcnow,
    limits: HttpLimits | None = None,
) -> SourceChain:
    """Build the source chain ``cache → bundle → rim_dir → RIM service / OCSP responder``.

    Args:
        bundle: An offline collateral bundle to consult.
        rim_dir: A directory of ``<id>.xml`` RIMs to consult.
        offline: Never touch the network (the chain ends after the local sources).
        rim_service_url: RIM service base URL.
        ocsp_url: OCSP responder URL.
        service_key: NVIDIA service key for both network services.
        cache: A cache to read first and to fill from the network (None: no cache).
        clock: Current time for the cache and the bundle's staleness check.
        limits: Response size and deadline of each network request (default :class:`HttpLimits`).

    Returns:
        The chain (a :class:`CollateralSource`).
    """
    sources: list[CollateralSource] = []
    if cache is not None:
        sources.append(_CacheReader(cache, clock))
    if bundle is not None:
        sources.append(BundleSource(bundle, clock=clock))
    if rim_dir is not None:
        sources.append(RimDirectory(rim_dir))
    if not offline:
        network = SourceChain(
            [
                RimServiceClient(rim_service_url, service_key=service_key, limits=limits),
                OcspClient(ocsp_url, service_key=service_key, limits=limits),
            ]
        )
        sources.append(CachedSource(network, cache, clock=clock) if cache is not None else network)
    return SourceChain(sources)
