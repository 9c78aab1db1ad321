"""Tokens from elsewhere: a JWKS fetched by URL, and a client of a ccai (or NRAS) attestation service.

Both talk HTTP only through ``ccai.collateral``'s bounded base (:class:`~ccai.collateral.HttpSource`:
a response-size cap and an overall deadline on every request), and both turn every transport
failure, timeout or unusable answer into :class:`~ccai.errors.CollateralUnavailable` — "could not
ask" is never reported as "the token is invalid".

:class:`JwksClient` keeps the keys for ``ttl`` and refetches **once** when a token names a ``kid``
it does not hold (the issuer rotated its key), but never more often than ``min_refresh``: a stream
of tokens naming random kids cannot turn the client into a request amplifier.

:class:`AttestationServiceClient` posts evidence (``/v4|v3/attest/gpu``, ``/v1/attest``), fetches
nonces (``/v1/nonce``) and hands back the detached EAT *unverified*; the caller verifies it with
:func:`~ccai.token.verify_token` against :attr:`AttestationServiceClient.jwks`.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ccai._json import load_json
from ccai.collateral import HttpLimits, HttpSource, get_ok, send
from ccai.errors import CollateralUnavailable, TokenError, UsageError
from ccai.token._keys import JwksKeys, read_jwks

if TYPE_CHECKING:
    import httpx

    from ccai.evidence import GpuEvidence
    from ccai.token._eat import DetachedEat

__all__ = [
    "DEFAULT_JWKS_TTL",
    "JWKS_PATH",
    "AttestationServiceClient",
    "JwksClient",
    "ServiceAnswer",
    "is_url",
]

#: How long fetched keys are used before they are fetched again.
DEFAULT_JWKS_TTL = timedelta(minutes=5)
#: The least time between two fetches forced by an unknown ``kid``.
DEFAULT_MIN_REFRESH = timedelta(seconds=10)
#: Where an attestation service (ccai's, NRAS) publishes its token keys.
JWKS_PATH = "/.well-known/jwks.json"
_JWKS_DEPTH = 8
_ANSWER_DEPTH = 16
_TIMEOUT = 10.0


def is_url(value: object) -> bool:
    """Whether ``value`` is an ``http://`` or ``https://`` URL (a JWKS document never is)."""
    return isinstance(value, str) and value.startswith(("https://", "http://"))


class JwksClient(HttpSource):
    """A JWKS fetched from ``url`` and kept for ``ttl``; refetched once on an unknown ``kid``.

    Safe to share between threads. Pass it as ``jwks=`` to :func:`~ccai.token.verify_token`.

    Args:
        url: The JWKS URL (``https://…/.well-known/jwks.json``).
        ttl: How long fetched keys are used.
        min_refresh: The least time between two fetches forced by an unknown ``kid``.
        limits: Response size and deadline (default :class:`~ccai.collateral.HttpLimits`).
        client: An httpx client to reuse (its lifetime stays with the caller).
        clock: Monotonic seconds (injected by tests).

    Raises:
        UsageError: ``url`` is not an http(s) URL, or a lifetime is not positive.
    """

    def __init__(
        self,
        url: str,
        *,
        ttl: timedelta = DEFAULT_JWKS_TTL,
        min_refresh: timedelta = DEFAULT_MIN_REFRESH,
        limits: HttpLimits | None = None,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not is_url(url):
            raise UsageError("a JWKS URL must start with https:// or http://", actual=url[:80])
        if ttl <= timedelta(0) or min_refresh < timedelta(0):
            raise UsageError("JWKS ttl must be positive and min_refresh not negative")
        super().__init__(client=client, timeout=_TIMEOUT, limits=limits)
        self.url = url
        self.ttl = ttl.total_seconds()
        self.min_refresh = min_refresh.total_seconds()
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: JwksKeys | None = None
        self._fetched_at = 0.0
        #: Number of fetches made (for tests and metrics).
        self.fetches = 0

    def _fetch(self) -> JwksKeys:
        response = get_ok(self._client, self.url, what="token keys (JWKS)", limits=self.limits)
        try:
            document = load_json(response.content, what="JWKS", max_depth=_JWKS_DEPTH, error=TokenError)
            keys = read_jwks(document)
        except TokenError as exc:
            raise CollateralUnavailable(
                f"token keys (JWKS) from {self.url} are unusable: {exc.message}", step="collateral"
            ) from None
        self.fetches += 1
        return keys

    def keys(self, *, unknown_kid: str | None = None) -> JwksKeys:
        """The current keys: cached while fresh; fetched again when stale, or once when a token
        names ``unknown_kid`` that the cached keys lack (and the last fetch is older than
        ``min_refresh``).

        Raises:
            CollateralUnavailable: the JWKS cannot be fetched or is not a JWKS.
        """
        with self._lock:
            now = self._clock()
            cached = self._keys
            age = now - self._fetched_at
            stale = cached is None or age >= self.ttl
            rotated = (
                cached is not None
                and unknown_kid is not None
                and unknown_kid not in cached.keys
                and unknown_kid not in cached.refused
                and age >= self.min_refresh
            )
            if stale or rotated:
                self._keys = self._fetch()
                self._fetched_at = now
            assert self._keys is not None
            return self._keys


class ServiceAnswer:
    """An attestation service's answer, not yet verified.

    Attributes:
        eat: The detached EAT (verify it with :func:`~ccai.token.verify_token`).
        document: The whole JSON answer (``/v1/attest``: ``token``, ``result``, ``steps``,
            ``error``, ``policy``; ``/v4/attest/gpu``: the EAT itself). Unverified: only the token's
            claims are to be believed.
    """

    __slots__ = ("document", "eat")

    def __init__(self, eat: DetachedEat, document: Any) -> None:
        self.eat = eat
        self.document = document


class AttestationServiceClient(HttpSource):
    """A client of an attestation service: ``ccai serve attestation`` or NRAS.

    Args:
        url: The service's base URL (``https://host:port``).
        api_key: Sent as ``Authorization: Bearer`` (never shown).
        limits: Response size and deadline.
        client: An httpx client to reuse.
        jwks_ttl: How long the service's keys are kept.

    Attributes:
        jwks: The service's :class:`JwksClient` (``<url>/.well-known/jwks.json``).

    Raises:
        UsageError: ``url`` is not an http(s) URL.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        limits: HttpLimits | None = None,
        client: httpx.Client | None = None,
        jwks_ttl: timedelta = DEFAULT_JWKS_TTL,
    ) -> None:
        if not is_url(url):
            raise UsageError("the service URL must start with https:// or http://", actual=url[:80])
        super().__init__(client=client, timeout=_TIMEOUT, service_key=api_key or None, limits=limits)
        self.url = url.rstrip("/")
        self.jwks = JwksClient(self.url + JWKS_PATH, ttl=jwks_ttl, limits=limits, client=self._client)

    def _post(self, path: str, body: bytes, *, what: str) -> Any:
        """POST ``body`` (JSON) and return the decoded answer.

        Raises:
            CollateralUnavailable: transport failure, a 5xx answer (503: the service could not get
                collateral), or an answer that is not JSON.
            UsageError: a 4xx answer (bad request, missing or refused API key, unknown policy).
        """
        request = self._client.build_request(
            "POST",
            self.url + path,
            content=body,
            headers=self._headers(**{"Content-Type": "application/json", "Accept": "application/json"}),
        )
        response = send(self._client, request, what=what, limits=self.limits)
        if response.status_code != 200:
            raise _status_error(response, what=what)
        try:
            return load_json(response.content, what=what, max_depth=_ANSWER_DEPTH, error=TokenError)
        except TokenError as exc:
            raise CollateralUnavailable(f"{what}: the answer is not JSON: {exc.message}") from None

    def nonce(self) -> bytes:
        """A fresh single-use 32-byte challenge from ``POST /v1/nonce``.

        Raises:
            CollateralUnavailable: the service cannot be reached or answers 5xx.
            UsageError: the service refuses the request (4xx: API key).
        """
        doc = self._post("/v1/nonce", b"", what="attestation service nonce")
        value = doc.get("nonce") if isinstance(doc, Mapping) else None
        try:
            nonce = bytes.fromhex(value) if isinstance(value, str) else b""
        except ValueError:
            nonce = b""
        if len(nonce) != 32:
            raise CollateralUnavailable("the service's nonce is not 32 bytes of hex", actual=repr(value)[:80])
        return nonce

    def attest_gpu(
        self,
        evidence: Sequence[GpuEvidence],
        *,
        nonce: bytes,
        claims_version: str = "3.0",
        policy: str | None = None,
    ) -> ServiceAnswer:
        """``POST /v4/attest/gpu`` (claims 3.0) or ``/v3/attest/gpu`` (2.0): NRAS's request shape.

        Raises:
            CollateralUnavailable: as :meth:`nonce`; also an answer that is not a detached EAT.
            UsageError: a 4xx answer, or a claims version other than 3.0/2.0.
        """
        from ccai.token._eat import parse_detached_eat

        if claims_version not in ("3.0", "2.0"):
            raise UsageError("claims version must be 3.0 or 2.0", actual=claims_version)
        arch = next((item.arch.upper() for item in evidence if item.arch), None)
        body: dict[str, Any] = {
            "nonce": nonce.hex(),
            "claims_version": claims_version,
            "evidence_list": [
                {
                    "evidence": base64.b64encode(item.report).decode("ascii"),
                    "certificate": base64.b64encode(item.certificate_chain).decode("ascii"),
                }
                for item in evidence
            ],
        }
        if arch:
            body["arch"] = arch
        if policy is not None:
            body["policy"] = policy
        path = "/v4/attest/gpu" if claims_version == "3.0" else "/v3/attest/gpu"
        doc = self._post(path, json.dumps(body).encode(), what="attestation service")
        try:
            return ServiceAnswer(parse_detached_eat(doc), doc)
        except TokenError as exc:
            raise CollateralUnavailable(
                f"the service's answer is not a detached EAT: {exc.message}"
            ) from None

    def attest_bundle(self, bundle: bytes, *, policy: str | None = None) -> ServiceAnswer:
        """``POST /v1/attest`` with a composite evidence bundle (its nonce must be a live one of
        this service: :meth:`nonce`).

        Raises:
            CollateralUnavailable: as :meth:`attest_gpu`.
            UsageError: a 4xx answer.
        """
        from ccai.token._eat import parse_detached_eat

        body = bundle
        if policy is not None:
            try:
                inner = json.loads(bundle)
            except ValueError:
                raise UsageError("the evidence bundle is not JSON") from None
            body = json.dumps({"bundle": inner, "policy": policy}).encode()
        doc = self._post("/v1/attest", body, what="attestation service")
        token = doc.get("token") if isinstance(doc, Mapping) else None
        try:
            return ServiceAnswer(parse_detached_eat(token if token is not None else ""), doc)
        except TokenError as exc:
            raise CollateralUnavailable(
                f"the service's answer holds no detached EAT: {exc.message}"
            ) from None


def _status_error(response: httpx.Response, *, what: str) -> CollateralUnavailable | UsageError:
    """A non-200 answer: 5xx (503 collateral) → CollateralUnavailable, 4xx → UsageError, with the
    service's own message (NRAS-style ``{"description", "message"}``) when it sent one."""
    status = response.status_code
    detail = ""
    try:
        body = json.loads(response.content[:4096])
        if isinstance(body, Mapping):
            detail = f"{body.get('description', '')}: {body.get('message', '')}".strip(": ")
    except ValueError:
        detail = response.text[:200]
    message = f"{what}: HTTP {status}" + (f" ({detail})" if detail else "")
    if 400 <= status < 500:
        hint = "pass --api-key or set CCAI_API_KEY" if status in (401, 403) else None
        return UsageError(message, actual=status, hint=hint)
    return CollateralUnavailable(
        message, actual=status, hint="retry later; nothing is known about the evidence"
    )
