"""The caches one :class:`~ccai.verify.Verifier` owns (no module-level state).

Only results of checks that passed are kept, keyed by the exact bytes checked and the identity of
the anchor set they were checked against; every time-dependent check (validity at ``now``, nonce,
OCSP status) runs on every call. A cache belongs to one verifier object and is passed down
explicitly, so two verifiers with different anchors or lifetimes never share state.
"""

from __future__ import annotations

from ccai.verify._gpu_certs import DeviceChainCache
from ccai.verify._lru import LruCache
from ccai.verify._rim_check import RimCache

__all__ = ["DEFAULT_CACHE_SIZE", "VerifierCaches"]

#: Entries per cache: one per distinct device chain / RIM, enough for a large fleet of GPUs.
DEFAULT_CACHE_SIZE = 256


class VerifierCaches:
    """Verified device-certificate paths and authenticated RIMs.

    Args:
        size: Entries kept per cache (least recently used dropped beyond that).

    Attributes:
        device_chains: Device chain → the path built to the pinned root.
        rims: RIM bytes → the parsed RIM and its verified signing chain.
    """

    __slots__ = ("device_chains", "rims")

    def __init__(self, size: int = DEFAULT_CACHE_SIZE) -> None:
        self.device_chains: DeviceChainCache = LruCache(size)
        self.rims: RimCache = LruCache(size)

    def clear(self) -> None:
        """Forget everything (the next verification is "cold": chains and RIM signatures re-checked)."""
        self.device_chains.clear()
        self.rims.clear()
