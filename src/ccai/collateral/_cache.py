"""An expiry-aware collateral cache, in memory or on disk under ``$CCAI_HOME/cache``.

* RIMs are cached by id for ``rim_ttl`` (a RIM id names one driver/VBIOS release, but NVIDIA has
  re-issued RIMs under the same id, so entries still age out).
* OCSP responses are cached by :func:`~ccai.collateral.ocsp_key` until their ``nextUpdate``
  (or ``ocsp_ttl`` when the responder gives none, as NVAT does), never longer.

An entry past its expiry is never served: it is dropped on read. A corrupt disk entry counts as a
miss. The cache stores bytes only; everything it returns is still checked by the verifier.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.x509 import ocsp

from ccai._files import atomic_write, private_dir
from ccai._home import ccai_home
from ccai._json import load_json
from ccai._time import utcnow
from ccai.collateral._types import CollateralSource, ocsp_key
from ccai.errors import CollateralError, CollateralUnavailable
from ccai.evidence import load_ocsp_response

__all__ = ["DEFAULT_OCSP_TTL", "DEFAULT_RIM_TTL", "CachedSource", "CollateralCache", "ocsp_response_expiry"]

#: How long a cached RIM is served.
DEFAULT_RIM_TTL = timedelta(days=1)
#: How long an OCSP response without ``nextUpdate`` is taken as current.
DEFAULT_OCSP_TTL = timedelta(hours=1)


def ocsp_response_expiry(response_der: bytes, *, now: datetime, default_ttl: timedelta) -> datetime | None:
    """When a DER OCSP response stops being current: the earliest ``nextUpdate`` among its
    SingleResponses, or ``now + default_ttl`` when it has none. None for an unusable response."""
    try:
        response = load_ocsp_response(response_der, what="OCSP response", step="collateral")
    except CollateralError:
        return None
    if response.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
        return None
    updates = [single.next_update_utc for single in response.responses]
    known = [u for u in updates if u is not None]
    if not updates:
        return None
    return min(known) if known else now + default_ttl


@dataclass(frozen=True, slots=True, kw_only=True)
class _Entry:
    data: bytes
    expires_at: datetime


class CollateralCache:
    """Cache of RIMs and OCSP responses with expiry; thread-safe.

    Args:
        directory: Where entries are kept on disk, or None for memory only.
        rim_ttl: How long a RIM is kept.
        ocsp_ttl: How long an OCSP response without ``nextUpdate`` is kept.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        rim_ttl: timedelta = DEFAULT_RIM_TTL,
        ocsp_ttl: timedelta = DEFAULT_OCSP_TTL,
    ) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.rim_ttl = rim_ttl
        self.ocsp_ttl = ocsp_ttl
        self._memory: dict[tuple[str, str], _Entry] = {}
        self._lock = threading.Lock()

    @classmethod
    def default(cls) -> CollateralCache:
        """The on-disk cache under ``$CCAI_HOME/cache/collateral``."""
        return cls(ccai_home() / "cache" / "collateral")

    def __repr__(self) -> str:
        where = str(self.directory) if self.directory is not None else "memory"
        return f"CollateralCache({where!r})"

    # -- public API ------------------------------------------------------------------------

    def get_rim(self, rim_id: str, *, now: datetime) -> bytes | None:
        """The cached RIM for ``rim_id``, or None when absent or expired."""
        return self._get("rim", rim_id, now=now)

    def put_rim(self, rim_id: str, xml: bytes, *, now: datetime) -> None:
        """Cache a RIM for ``rim_ttl`` from ``now``."""
        self._put("rim", rim_id, xml, expires_at=now + self.rim_ttl)

    def get_ocsp(self, key: str, *, now: datetime) -> bytes | None:
        """The cached OCSP response under ``key`` (:func:`ocsp_key`), or None when absent or expired."""
        return self._get("ocsp", key, now=now)

    def put_ocsp(self, key: str, response_der: bytes, *, now: datetime) -> bool:
        """Cache an OCSP response until its ``nextUpdate``.

        Returns:
            False when the response was not stored (unusable, or already past ``nextUpdate``).
        """
        expires = ocsp_response_expiry(response_der, now=now, default_ttl=self.ocsp_ttl)
        if expires is None or expires <= now:
            return False
        self._put("ocsp", key, response_der, expires_at=expires)
        return True

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._memory.clear()
            if self.directory is not None and self.directory.is_dir():
                for file in self.directory.glob("*.json"):
                    file.unlink(missing_ok=True)

    # -- storage ---------------------------------------------------------------------------

    @staticmethod
    def _file(directory: Path, kind: str, key: str) -> Path:
        name = hashlib.sha256(f"{kind}\0{key}".encode()).hexdigest()[:40]
        return directory / f"{kind}-{name}.json"

    def _get(self, kind: str, key: str, *, now: datetime) -> bytes | None:
        with self._lock:
            entry = self._memory.get((kind, key))
            if entry is None and self.directory is not None:
                entry = self._load(self.directory, kind, key)
                if entry is not None:
                    self._memory[(kind, key)] = entry
            if entry is None:
                return None
            if now >= entry.expires_at:
                self._drop(kind, key)
                return None
            return entry.data

    def _put(self, kind: str, key: str, data: bytes, *, expires_at: datetime) -> None:
        entry = _Entry(data=data, expires_at=expires_at)
        with self._lock:
            self._memory[(kind, key)] = entry
            if self.directory is not None:
                self._save(self.directory, kind, key, entry)

    def _drop(self, kind: str, key: str) -> None:
        self._memory.pop((kind, key), None)
        if self.directory is not None:
            self._file(self.directory, kind, key).unlink(missing_ok=True)

    def _load(self, directory: Path, kind: str, key: str) -> _Entry | None:
        file = self._file(directory, kind, key)
        try:
            record = load_json(file.read_bytes(), what="cache entry", error=CollateralUnavailable)
            if record["kind"] != kind or record["key"] != key:
                return None
            expires_at = datetime.fromisoformat(record["expires_at"])
            data = base64.b64decode(record["data"], validate=True)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, CollateralUnavailable):
            # A corrupt entry is a miss; remove it so it does not linger.
            file.unlink(missing_ok=True)
            return None
        if expires_at.tzinfo is None:
            return None
        return _Entry(data=data, expires_at=expires_at)

    def _save(self, directory: Path, kind: str, key: str, entry: _Entry) -> None:
        file = self._file(directory, kind, key)
        record = {
            "kind": kind,
            "key": key,
            "expires_at": entry.expires_at.isoformat(),
            "data": base64.b64encode(entry.data).decode(),
        }
        try:
            private_dir(directory)
            atomic_write(file, json.dumps(record).encode())
        except OSError:
            # The cache is an optimisation: failing to persist must not fail verification.
            pass


class CachedSource:
    """A :class:`CollateralSource` that answers from a cache and fills it from ``inner``.

    Args:
        inner: Where misses are fetched from.
        cache: The cache.
        clock: Returns the current time; injected so tests can age entries.
    """

    def __init__(
        self,
        inner: CollateralSource,
        cache: CollateralCache,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.inner = inner
        self.cache = cache
        self._clock = clock

    def __repr__(self) -> str:
        return f"CachedSource({self.inner!r}, {self.cache!r})"

    def rim(self, rim_id: str) -> bytes:
        """The RIM from the cache, else from ``inner`` (then cached).

        Raises:
            CollateralUnavailable: not cached and ``inner`` cannot provide it.
        """
        now = self._clock()
        cached = self.cache.get_rim(rim_id, now=now)
        if cached is not None:
            return cached
        xml = self.inner.rim(rim_id)
        self.cache.put_rim(rim_id, xml, now=now)
        return xml

    def ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, *, nonce: bytes | None) -> bytes:
        """A current cached OCSP response for ``cert``, else one from ``inner`` (then cached).

        A cached response does not echo ``nonce``; the verifier then relies on its validity window.

        Raises:
            CollateralUnavailable: not cached and ``inner`` cannot provide it.
        """
        now = self._clock()
        key = ocsp_key(cert)
        cached = self.cache.get_ocsp(key, now=now)
        if cached is not None:
            return cached
        response = self.inner.ocsp(cert, issuer, nonce=nonce)
        self.cache.put_ocsp(key, response, now=now)
        return response
