"""Arms behind a confidential gateway: attest it first, then encrypt every request body (EHBP).

An EHBP arm is measured the way a user of ``ccai.client`` pays for it. Before the sweep sends
anything but a nonce, the arm's URL is attested with :func:`ccai.client.attest_gateway` (the
caller's anchors and policy; simulated hardware only by name); a refusal raises and the sweep does
not start. Every HTTP client of the arm then carries a :class:`ccai.ehbp.AsyncEhbpTransport` pinned
to the attested HPKE key, so the request is sealed and the response opened inside the timed span of
each request (the load generator starts its clock before ``client.stream`` and parses SSE from the
decrypted frames). EHBP's 422 key-configuration problem makes the transport attest the gateway
again — a fresh nonce, the full verification — and send the request once more to the new key, as
``ccai.client.connect_async`` does; transports of the same arm share one re-attestation.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from ccai.bench._client import new_client

if TYPE_CHECKING:
    # Imported when used: ccai.client needs the [gateway] extra (openai, pyhpke), a plain sweep does not.
    from ccai.client import GatewayAttestation
    from ccai.ehbp import AsyncEhbpTransport
    from ccai.verify import Policy, TrustAnchors

__all__ = ["EhbpArm", "GatewayTrust"]


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayTrust:
    """How an EHBP arm's gateway is verified (the arguments of :func:`ccai.client.attest_gateway`).

    Attributes:
        anchors: Trust anchors (default: the pinned vendor roots).
        policy: The appraisal policy (measurements, versions, TCB).
        allow_simulated: Accept evidence from virtual hardware (needs test-PKI ``anchors``).
        timeout: Seconds for each attestation request.
    """

    anchors: TrustAnchors | None = None
    policy: Policy | None = None
    allow_simulated: bool = False
    timeout: float = 30.0


class EhbpArm:
    """An attested gateway and the encrypting HTTP clients of the arm that drives it.

    Use :meth:`attest` to make one. ``attestation`` is the latest verified attestation (replaced
    when the gateway is attested again) and ``reattestations`` counts those re-attestations.
    """

    def __init__(self, url: str, trust: GatewayTrust, attestation: GatewayAttestation) -> None:
        self.url = url
        self.trust = trust
        self.attestation = attestation
        self.reattestations = 0
        self._lock = asyncio.Lock()

    @classmethod
    async def attest(cls, url: str, trust: GatewayTrust) -> EhbpArm:
        """Attest the gateway at ``url`` (in a worker thread; only the nonce is sent).

        Args:
            url: The gateway's base URL (a trailing ``/v1`` is ignored).
            trust: Anchors, policy and whether simulated hardware is acceptable.

        Returns:
            The arm, pinned to the attested key.

        Raises:
            Error: the attestation failed (the step that failed; see :func:`ccai.client.attest_gateway`).
        """
        base = url.rstrip("/").removesuffix("/v1").rstrip("/")
        return cls(base, trust, await asyncio.to_thread(_attest, base, trust))

    async def _rekey(self, transport: AsyncEhbpTransport) -> bytes:
        stale = transport.public_key
        async with self._lock:
            if self.attestation.hpke_public_key != stale:
                return self.attestation.hpke_public_key  # another client of this arm re-attested already
            self.attestation = await asyncio.to_thread(_attest, self.url, self.trust)
            self.reattestations += 1
            return self.attestation.hpke_public_key

    def client(self, *, connections: int, timeout: float) -> httpx.AsyncClient:
        """A benchmarking client (see :func:`new_client`) whose requests are encrypted to the attested key.

        Args:
            connections: Maximum simultaneous connections.
            timeout: Per-operation timeout in seconds.

        Returns:
            The client (close it with ``aclose``).
        """

        from ccai.ehbp import AsyncEhbpTransport

        def wrap(inner: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
            transport: AsyncEhbpTransport | None = None

            async def rekey() -> bytes:
                assert transport is not None
                return await self._rekey(transport)

            transport = AsyncEhbpTransport(self.attestation.hpke_public_key, inner=inner, rekey=rekey)
            return transport

        return new_client(connections=connections, timeout=timeout, wrap=wrap)


def _attest(url: str, trust: GatewayTrust) -> GatewayAttestation:
    from ccai.client import attest_gateway

    return attest_gateway(
        url,
        anchors=trust.anchors,
        policy=trust.policy,
        allow_simulated=trust.allow_simulated,
        timeout=trust.timeout,
    )
