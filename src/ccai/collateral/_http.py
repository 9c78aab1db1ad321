"""The one place collateral clients talk HTTP: a shared httpx client and error translation.

Every transport failure, timeout or unexpected status becomes :class:`CollateralUnavailable`, so a
network problem is never reported as "evidence invalid".

httpx is imported by the functions that talk HTTP, not with :mod:`ccai.collateral`: the verifier
and the offline paths use collateral types without loading an HTTP stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ccai.errors import CollateralUnavailable

if TYPE_CHECKING:
    import httpx

__all__ = ["DEFAULT_TIMEOUT", "HttpSource", "expect_ok", "get_ok", "http_client", "send"]

#: Seconds for connect/read; NVIDIA's tools use 10 s for RIM and OCSP requests.
DEFAULT_TIMEOUT = 10.0
_USER_AGENT = "ccai-collateral/1"


def http_client(*, timeout: float = DEFAULT_TIMEOUT, follow_redirects: bool = False) -> httpx.Client:
    """A new httpx client with ccai's timeout and user agent (HTTP/1.1, certificate checks on).

    Args:
        timeout: Seconds for connect and read.
        follow_redirects: Follow HTTP redirects (Intel PCS and AMD KDS redirect; NVIDIA's
            services are not allowed to).
    """
    import httpx

    return httpx.Client(
        timeout=timeout, headers={"User-Agent": _USER_AGENT}, follow_redirects=follow_redirects
    )


class HttpSource:
    """Base of the collateral clients: one httpx client, created here or lent by the caller.

    Args:
        client: An httpx client to reuse (its lifetime stays with the caller); ``None`` creates
            one that :meth:`close` closes.
        timeout: Seconds per request, for a client created here.
        service_key: Optional API key, sent as ``Authorization: Bearer`` (never logged or shown).
        follow_redirects: Whether a client created here follows redirects.
    """

    def __init__(
        self,
        *,
        client: httpx.Client | None,
        timeout: float,
        service_key: str | None = None,
        follow_redirects: bool = False,
    ) -> None:
        self._client = client or http_client(timeout=timeout, follow_redirects=follow_redirects)
        self._owns_client = client is None
        self._service_key = service_key

    def close(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_client:
            self._client.close()

    def _headers(self, **headers: str) -> dict[str, str]:
        """``headers`` plus the bearer key, when there is one."""
        if self._service_key:
            headers["Authorization"] = f"Bearer {self._service_key}"
        return headers


def send(client: httpx.Client, request: httpx.Request, *, what: str) -> httpx.Response:
    """Send ``request``; transport errors become :class:`CollateralUnavailable` naming ``what``.

    Raises:
        CollateralUnavailable: connection refused, DNS failure, timeout, TLS error.
    """
    import httpx

    try:
        return client.send(request)
    except httpx.HTTPError as exc:
        raise CollateralUnavailable(
            f"{what}: {type(exc).__name__}: {exc}",
            actual=str(request.url),
            hint="check the URL and network access, or verify offline with a collateral bundle",
        ) from None


def expect_ok(response: httpx.Response, *, what: str) -> httpx.Response:
    """Return ``response`` if its status is 200.

    Raises:
        CollateralUnavailable: HTTP 401/403 (with a hint about the service key) or any other
            status but 200.
    """
    if response.status_code in (401, 403):
        raise CollateralUnavailable(
            f"{what}: forbidden (HTTP {response.status_code})", hint="check the service key"
        )
    if response.status_code != 200:
        raise CollateralUnavailable(f"{what}: HTTP {response.status_code}", actual=response.text[:200])
    return response


def get_ok(client: httpx.Client, url: str, *, what: str) -> httpx.Response:
    """``GET url`` for the CPU-collateral services (Intel PCS, AMD KDS); only HTTP 200 is an answer.

    Raises:
        CollateralUnavailable: a transport error or a status other than 200 (step ``collateral``).
    """
    import httpx

    try:
        response = client.get(url)
    except httpx.HTTPError as exc:
        raise CollateralUnavailable(f"cannot fetch {what} from {url}: {exc}", step="collateral") from None
    if response.status_code != 200:
        raise CollateralUnavailable(
            f"{what}: HTTP {response.status_code} from {url}", step="collateral", actual=response.status_code
        )
    return response
