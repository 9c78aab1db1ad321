"""The one place collateral clients talk HTTP: a shared httpx client and error translation.

Every transport failure, timeout or unexpected status becomes :class:`CollateralUnavailable`, so a
network problem is never reported as "evidence invalid".
"""

from __future__ import annotations

import httpx

from ccai.errors import CollateralUnavailable

__all__ = ["DEFAULT_TIMEOUT", "http_client", "send"]

#: Seconds for connect/read; NVIDIA's tools use 10 s for RIM and OCSP requests.
DEFAULT_TIMEOUT = 10.0
_USER_AGENT = "ccai-collateral/1"


def http_client(*, timeout: float = DEFAULT_TIMEOUT) -> httpx.Client:
    """A new httpx client with ccai's timeout and user agent (HTTP/1.1, certificate checks on)."""
    return httpx.Client(timeout=timeout, headers={"User-Agent": _USER_AGENT}, follow_redirects=False)


def send(client: httpx.Client, request: httpx.Request, *, what: str) -> httpx.Response:
    """Send ``request``; transport errors become :class:`CollateralUnavailable` naming ``what``.

    Raises:
        CollateralUnavailable: connection refused, DNS failure, timeout, TLS error.
    """
    try:
        return client.send(request)
    except httpx.HTTPError as exc:
        raise CollateralUnavailable(
            f"{what}: {type(exc).__name__}: {exc}",
            actual=str(request.url),
            hint="check the URL and network access, or verify offline with a collateral bundle",
        ) from None
