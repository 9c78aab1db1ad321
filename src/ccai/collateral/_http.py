"""The one place collateral clients talk HTTP: a shared httpx client, bounded requests, error translation.

Every transport failure, timeout or unexpected status becomes :class:`CollateralUnavailable`, so a
network problem is never reported as "evidence invalid".

Every request is bounded (:class:`HttpLimits`): the body is streamed and refused as soon as it
exceeds ``max_bytes`` (or a ``Content-Length`` announces more), and the whole exchange — connect,
redirects, headers, body — must finish within ``deadline`` seconds. httpx's own timeouts apply to
each network read, so without the deadline a server sending one byte every few seconds could hold a
request open indefinitely; without the cap one answer could exhaust memory.

httpx is imported only where HTTP happens, so ``import ccai.collateral`` (and ``ccai.verify``)
does not load it.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ccai.errors import CollateralUnavailable, UsageError

if TYPE_CHECKING:
    import httpx

__all__ = [
    "DEADLINE_ENV",
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_TIMEOUT",
    "MAX_BYTES_ENV",
    "HttpLimits",
    "HttpSource",
    "expect_ok",
    "get_ok",
    "http_client",
    "send",
]

#: Seconds for connect/read; NVIDIA's tools use 10 s for RIM and OCSP requests.
DEFAULT_TIMEOUT = 10.0
#: Largest response body accepted: 16 MiB (the largest real collateral, an Intel PCK CRL or a RIM,
#: is well under 1 MiB).
DEFAULT_MAX_BYTES = 16 << 20
#: Seconds one request may take from start to its last body byte.
DEFAULT_DEADLINE = 30.0
#: Environment variable the CLI reads for :attr:`HttpLimits.max_bytes` (bytes; ``K``/``M``/``G`` suffixes).
MAX_BYTES_ENV = "CCAI_COLLATERAL_MAX_BYTES"
#: Environment variable the CLI reads for :attr:`HttpLimits.deadline` (seconds).
DEADLINE_ENV = "CCAI_COLLATERAL_DEADLINE"
_USER_AGENT = "ccai-collateral/1"
_SIZE = re.compile(r"(\d+)\s*([KMG]?)i?B?", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
# Headers that describe the wire form of a body; the answer handed on carries the decoded body.
_WIRE_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpLimits:
    """Bounds on each collateral HTTP request.

    Attributes:
        max_bytes: The largest response body accepted, counted after content decoding (so a
            compressed answer cannot expand past it).
        deadline: Seconds one request may take in all: connect, redirects, headers and body.

    Raises:
        UsageError: a limit that is not positive.
    """

    max_bytes: int = DEFAULT_MAX_BYTES
    deadline: float = DEFAULT_DEADLINE

    def __post_init__(self) -> None:
        if self.max_bytes <= 0:
            raise UsageError("the collateral response size limit must be positive", actual=self.max_bytes)
        if not self.deadline > 0:
            raise UsageError("the collateral request deadline must be positive", actual=self.deadline)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> HttpLimits:
        """Limits from :data:`MAX_BYTES_ENV` (e.g. ``65536``, ``64M``) and :data:`DEADLINE_ENV`
        (seconds); a variable that is unset or empty keeps its default.

        Args:
            environ: The environment (``os.environ``), passed in by the caller that owns it.

        Raises:
            UsageError: a value that is not a positive size or number of seconds.
        """
        max_bytes, deadline = DEFAULT_MAX_BYTES, DEFAULT_DEADLINE
        if size := environ.get(MAX_BYTES_ENV, "").strip():
            match = _SIZE.fullmatch(size)
            if match is None:
                raise UsageError(f"{MAX_BYTES_ENV} must be a size in bytes such as 16M", actual=size)
            max_bytes = int(match[1]) * _UNITS[match[2].upper()]
        if seconds := environ.get(DEADLINE_ENV, "").strip():
            try:
                deadline = float(seconds)
            except ValueError:
                raise UsageError(f"{DEADLINE_ENV} must be a number of seconds", actual=seconds) from None
        return cls(max_bytes=max_bytes, deadline=deadline)


def http_client(*, timeout: float = DEFAULT_TIMEOUT, follow_redirects: bool = False) -> httpx.Client:
    """A new httpx client with ccai's timeout and user agent (HTTP/1.1, certificate checks on).

    Args:
        timeout: Seconds for connect and for each read.
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
        timeout: Seconds per network read, for a client created here.
        service_key: Optional API key, sent as ``Authorization: Bearer`` (never logged or shown).
        follow_redirects: Whether a client created here follows redirects.
        limits: Response size and deadline of every request (default :class:`HttpLimits`).
    """

    def __init__(
        self,
        *,
        client: httpx.Client | None,
        timeout: float,
        service_key: str | None = None,
        follow_redirects: bool = False,
        limits: HttpLimits | None = None,
    ) -> None:
        self._client = client or http_client(timeout=timeout, follow_redirects=follow_redirects)
        self._owns_client = client is None
        self._service_key = service_key
        self.limits = limits or HttpLimits()

    def close(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_client:
            self._client.close()

    def _headers(self, **headers: str) -> dict[str, str]:
        """``headers`` plus the bearer key, when there is one."""
        if self._service_key:
            headers["Authorization"] = f"Bearer {self._service_key}"
        return headers


class _LimitExceeded(Exception):
    """Raised inside a bounded exchange; turned into :class:`CollateralUnavailable` by the caller."""

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


def _read_body(
    response: httpx.Response, *, limits: HttpLimits, expires: float, stop: threading.Event
) -> bytes:
    """The decoded body of a streamed ``response``, refused as soon as it passes a limit."""
    announced = response.headers.get("Content-Length", "")
    if announced.isdigit() and int(announced) > limits.max_bytes:
        raise _LimitExceeded(f"announces {announced} bytes", limit="size")
    received = 0
    chunks: list[bytes] = []
    for chunk in response.iter_bytes():
        received += len(chunk)
        if received > limits.max_bytes:
            raise _LimitExceeded(f"sent more than {limits.max_bytes} bytes", limit="size")
        if stop.is_set() or time.monotonic() > expires:
            raise _LimitExceeded("still sending at the deadline", limit="time")
        chunks.append(chunk)
    return b"".join(chunks)


def _exchange(
    client: httpx.Client, request: httpx.Request, *, limits: HttpLimits, expires: float, stop: threading.Event
) -> httpx.Response:
    """Send ``request``, following redirects as ``client`` is configured to, and read the body
    within ``limits``. Redirects are followed here, not by httpx, because httpx reads the body of a
    redirect response without any bound."""
    import httpx

    for _ in range(client.max_redirects + 1):
        response = client.send(request, stream=True, follow_redirects=False)
        try:
            if response.next_request is not None and client.follow_redirects:
                request = response.next_request
                continue
            body = _read_body(response, limits=limits, expires=expires, stop=stop)
        finally:
            response.close()
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _WIRE_HEADERS]
        return httpx.Response(response.status_code, headers=headers, content=body, request=request)
    raise httpx.TooManyRedirects("Exceeded maximum allowed redirects.", request=request)


def _bounded(
    client: httpx.Client, request: httpx.Request, *, what: str, limits: HttpLimits
) -> httpx.Response:
    """Run :func:`_exchange` under the deadline.

    The exchange runs in a helper thread because the caller cannot check a clock while httpx waits
    for a connection or for response headers; the caller stops waiting at the deadline, and the
    helper gives up at its next body chunk or at httpx's read timeout, whichever comes first.

    Raises:
        httpx.HTTPError: a transport error (the callers translate it).
        CollateralUnavailable: the answer is too large or not complete at the deadline.
    """
    expires = time.monotonic() + limits.deadline
    stop = threading.Event()
    done = threading.Event()
    outcome: list[httpx.Response | BaseException] = []

    def run() -> None:
        try:
            outcome.append(_exchange(client, request, limits=limits, expires=expires, stop=stop))
        except BaseException as exc:  # handed to the waiting caller, which re-raises it
            outcome.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name="ccai-collateral-http", daemon=True).start()
    if not done.wait(max(0.0, expires - time.monotonic())):
        stop.set()
        raise _limit_error(what, request, limits, "time")
    result = outcome[0]
    if isinstance(result, _LimitExceeded):
        raise _limit_error(what, request, limits, result.limit) from None
    if isinstance(result, BaseException):
        raise result
    return result


def _limit_error(what: str, request: httpx.Request, limits: HttpLimits, limit: str) -> CollateralUnavailable:
    if limit == "size":
        return CollateralUnavailable(
            f"{what}: the answer from {request.url} exceeds the {limits.max_bytes}-byte limit",
            step="collateral",
            hint=f"set {MAX_BYTES_ENV} to allow larger answers",
        )
    return CollateralUnavailable(
        f"{what}: no complete answer from {request.url} within the {limits.deadline:g} s deadline",
        step="collateral",
        hint=f"set {DEADLINE_ENV} to allow more time",
    )


def send(
    client: httpx.Client, request: httpx.Request, *, what: str, limits: HttpLimits | None = None
) -> httpx.Response:
    """Send ``request`` within ``limits``; transport errors become :class:`CollateralUnavailable`
    naming ``what``.

    Returns:
        The response with its body read (and decoded).

    Raises:
        CollateralUnavailable: connection refused, DNS failure, timeout, TLS error, or an answer
            over the size limit or not complete by the deadline.
    """
    import httpx

    try:
        return _bounded(client, request, what=what, limits=limits or HttpLimits())
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


def get_ok(client: httpx.Client, url: str, *, what: str, limits: HttpLimits | None = None) -> httpx.Response:
    """``GET url`` for the CPU-collateral services (Intel PCS, AMD KDS) within ``limits``; only
    HTTP 200 is an answer.

    Raises:
        CollateralUnavailable: a transport error, an answer over a limit, or a status other than
            200 (step ``collateral``).
    """
    import httpx

    try:
        response = _bounded(
            client, client.build_request("GET", url), what=what, limits=limits or HttpLimits()
        )
    except httpx.HTTPError as exc:
        raise CollateralUnavailable(f"cannot fetch {what} from {url}: {exc}", step="collateral") from None
    if response.status_code != 200:
        raise CollateralUnavailable(
            f"{what}: HTTP {response.status_code} from {url}", step="collateral", actual=response.status_code
        )
    return response
