"""The caches one :class:`~ccai.verify.Verifier` owns (no module-level state).

Only results of checks that passed are kept, keyed by the exact bytes checked and the identity of
the anchor set they were checked against; every time-dependent check (validity at ``now``, nonce,
OCSP status) runs on every call. A cache belongs to one verifier object and is passed down
explicitly, so two verifiers with different anchors or lifetimes never share state.
"""

from __future__ import annotations

from cryptography import x509

from ccai.evidence import parse_cert_chain
from ccai.verify._gpu_certs import DeviceChainCache
from ccai.verify._lru import LruCache
from ccai.verify._ocsp_check import OcspCache
from ccai.verify._rim_check import RimCache

__all__ = ["DEFAULT_CACHE_SIZE", "VerifierCaches"]

#: Entries per cache: one per distinct device chain / RIM, enough for a large fleet of GPUs.
DEFAULT_CACHE_SIZE = 256


class VerifierCaches:
    """Verified device-certificate paths, authenticated RIMs and authenticated OCSP responses.

    Args:
        size: Entries kept per cache (least recently used dropped beyond that).

    Attributes:
        device_chains: Device chain → the path built to the pinned root.
        rims: RIM bytes → the parsed RIM and its verified signing chain.
        ocsp: OCSP response bytes + certificate + issuer + responder roots → the parsed response
            whose responder and signature checked out; its time window, nonce and status are
            checked on every use.
        rim_certificates: RIM bytes → the certificates the RIM embeds (what the collateral
            gatherer asks OCSP about; parsing is pure, so the bytes alone are the key).
        parsed_chains: Supplied device-chain bytes → the certificates they hold (parsing is
            pure; the chain is still validated on every call, from the cached path).
    """

    __slots__ = ("device_chains", "ocsp", "parsed_chains", "rim_certificates", "rims")

    def __init__(self, size: int = DEFAULT_CACHE_SIZE) -> None:
        self.device_chains: DeviceChainCache = LruCache(size)
        self.rims: RimCache = LruCache(size)
        # Several responses per chain (device + two RIM chains per GPU): room for a fleet.
        self.ocsp: OcspCache = LruCache(8 * size)
        self.rim_certificates: LruCache[bytes, tuple[x509.Certificate, ...]] = LruCache(size)
        self.parsed_chains: LruCache[bytes, tuple[x509.Certificate, ...]] = LruCache(size)

    def parse_chain(self, data: bytes) -> tuple[x509.Certificate, ...]:
        """The certificates of a supplied PEM/DER chain, parsed once per distinct bytes.

        Raises:
            MalformedEvidence: as :func:`ccai.evidence.parse_cert_chain` (failures are not cached).
        """
        found = self.parsed_chains.get(data)
        if found is None:
            found = tuple(parse_cert_chain(data))
            self.parsed_chains.put(data, found)
        return found

    def clear(self) -> None:
        """Forget everything (the next verification is "cold": chains and RIM signatures re-checked)."""
        self.device_chains.clear()
        self.rims.clear()
        self.ocsp.clear()
        self.rim_certificates.clear()
        self.parsed_chains.clear()
