"""``connect`` / ``connect_async``: the official openai client, talking EHBP to an attested key.

The gateway is attested first (:func:`ccai.client.attest_gateway`); the HPKE key its verified
document binds is pinned in an :class:`ccai.ehbp.EhbpTransport` under the openai client's
``http_client``, so every request body (the prompt) is encrypted to a key that only the attested
gateway holds. When the gateway answers EHBP's 422 key-configuration problem (its key changed), the
transport attests it again — a fresh nonce, the full verification — and sends the request once
more to the newly attested key; if that attestation fails, the request fails with its error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import anyio.to_thread
import httpx
import openai

from ccai.client._attest import GatewayAttestation, attest_gateway
from ccai.ehbp import AsyncEhbpTransport, EhbpTransport
from ccai.verify import Policy, TrustAnchors

__all__ = ["VerifiedAsyncOpenAI", "VerifiedOpenAI", "connect", "connect_async"]


class VerifiedOpenAI(openai.OpenAI):
    """``openai.OpenAI`` whose bodies are encrypted to an attested gateway.

    Attributes:
        attestation: The gateway's latest verified attestation (replaced when it re-attests).
    """

    attestation: GatewayAttestation


class VerifiedAsyncOpenAI(openai.AsyncOpenAI):
    """``openai.AsyncOpenAI`` whose bodies are encrypted to an attested gateway.

    Attributes:
        attestation: The gateway's latest verified attestation (replaced when it re-attests).
    """

    attestation: GatewayAttestation


def _attester(
    url: str, anchors: TrustAnchors | None, policy: Policy | None, allow_simulated: bool, timeout: float
) -> Callable[[], GatewayAttestation]:
    def attest() -> GatewayAttestation:
        return attest_gateway(
            url, anchors=anchors, policy=policy, allow_simulated=allow_simulated, timeout=timeout
        )

    return attest


def connect(
    url: str,
    *,
    anchors: TrustAnchors | None = None,
    policy: Policy | None = None,
    allow_simulated: bool = False,
    attestation_timeout: float = 30.0,
    **openai_kwargs: Any,
) -> VerifiedOpenAI:
    """Attest the gateway at ``url`` and return an openai client encrypting to its attested key.

    Args:
        url: The gateway's base URL; the API is at ``URL/v1``.
        anchors: Trust anchors (default: the pinned vendor roots).
        policy: The appraisal policy.
        allow_simulated: Accept virtual hardware (test-PKI ``anchors``), by name.
        attestation_timeout: Seconds for each attestation request.
        **openai_kwargs: Passed to ``openai.OpenAI`` (``api_key`` defaults to ``"ccai"``; an
            ``http_client`` is not accepted: the client builds its own).

    Returns:
        The client; ``client.attestation`` is the verified attestation.

    Raises:
        Error: the attestation failed (nothing was sent but the nonce).
    """
    base = url.rstrip("/")
    attest = _attester(base, anchors, policy, allow_simulated, attestation_timeout)
    attestation = attest()
    client: VerifiedOpenAI | None = None

    def rekey() -> bytes:
        fresh = attest()
        if client is not None:
            client.attestation = fresh
        return fresh.hpke_public_key

    transport = EhbpTransport(attestation.hpke_public_key, rekey=rekey)
    openai_kwargs.setdefault("api_key", "ccai")
    client = VerifiedOpenAI(
        base_url=base + "/v1",
        # openai accepts httpx clients as well as its own httpx2 ones; only its annotation differs.
        http_client=cast(Any, httpx.Client(transport=transport, timeout=openai_kwargs.pop("timeout", 600.0))),
        **openai_kwargs,
    )
    client.attestation = attestation
    return client


def connect_async(
    url: str,
    *,
    anchors: TrustAnchors | None = None,
    policy: Policy | None = None,
    allow_simulated: bool = False,
    attestation_timeout: float = 30.0,
    **openai_kwargs: Any,
) -> VerifiedAsyncOpenAI:
    """:func:`connect` for ``openai.AsyncOpenAI`` (the first attestation runs before it returns;
    re-attestation runs in a worker thread)."""
    base = url.rstrip("/")
    attest = _attester(base, anchors, policy, allow_simulated, attestation_timeout)
    attestation = attest()
    client: VerifiedAsyncOpenAI | None = None

    async def rekey() -> bytes:
        fresh: GatewayAttestation = await anyio.to_thread.run_sync(attest)
        if client is not None:
            client.attestation = fresh
        return fresh.hpke_public_key

    transport = AsyncEhbpTransport(attestation.hpke_public_key, rekey=rekey)
    openai_kwargs.setdefault("api_key", "ccai")
    client = VerifiedAsyncOpenAI(
        base_url=base + "/v1",
        http_client=cast(
            Any, httpx.AsyncClient(transport=transport, timeout=openai_kwargs.pop("timeout", 600.0))
        ),
        **openai_kwargs,
    )
    client.attestation = attestation
    return client
