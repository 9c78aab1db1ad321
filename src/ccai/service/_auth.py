"""API keys, the admin key and per-key rate limits.

An API key is ``ccai_<id>_<secret>``: ``id`` (12 hex) is public and names the key in audit rows and
logs; the database keeps only the SHA-256 of the whole key, compared in constant time. Requests send
it NRAS-style as ``Authorization: Bearer <key>``. Admin keys (``--admin``) may also call the admin API.

Rate limits are a token bucket per key id **per replica** (in memory): N replicas behind a load
balancer together allow up to N × the configured rate.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from ccai._time import utcnow
from ccai.service._repository import Repository, StoredApiKey

__all__ = ["ANONYMOUS", "ApiKeyAuth", "Caller", "RateLimiter", "create_api_key", "hash_key"]

_PREFIX = "ccai_"
ANONYMOUS = "anonymous"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made a request: the key id (or ``anonymous``) and whether it is an admin key."""

    key_id: str
    admin: bool


def hash_key(token: str) -> str:
    """SHA-256 hex of an API key (what is stored)."""
    return hashlib.sha256(token.encode()).hexdigest()


async def create_api_key(repo: Repository, *, name: str, admin: bool = False) -> tuple[str, str]:
    """Create an API key. Returns ``(id, key)``; the key is shown once and stored only hashed."""
    key_id = secrets.token_hex(6)
    token = f"{_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    await repo.add_api_key(
        StoredApiKey(
            id=key_id,
            secret_sha256=hash_key(token),
            name=name,
            admin=admin,
            created_at=utcnow(),
            revoked_at=None,
        )
    )
    return key_id, token


class ApiKeyAuth:
    """Checks bearer keys against the database, remembering good ones for ``cache_seconds``.

    Args:
        repo: The repository.
        cache_seconds: How long a checked key is trusted without a database read (a revoked key
            stops working within this time).
    """

    def __init__(self, repo: Repository, *, cache_seconds: float) -> None:
        self._repo = repo
        self._ttl = cache_seconds
        self._cache: dict[str, tuple[float, Caller]] = {}
        self._lock = threading.Lock()

    async def check(self, authorization: str | None) -> Caller | None:
        """The caller a ``Authorization`` header names, or None when missing, unknown or revoked."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token.startswith(_PREFIX):
            return None
        digest = hash_key(token)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        key_id = token[len(_PREFIX) :].split("_", 1)[0]
        stored = await self._repo.get_api_key(key_id)
        if stored is None or stored.revoked_at is not None:
            return None
        if not hmac.compare_digest(stored.secret_sha256.encode(), digest.encode()):
            return None
        caller = Caller(key_id=stored.id, admin=stored.admin)
        with self._lock:
            self._cache[digest] = (now, caller)
        return caller


class RateLimiter:
    """A token bucket per key id (per replica).

    Args:
        rate: Tokens added per second.
        burst: Bucket size.
    """

    def __init__(self, *, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key_id: str) -> bool:
        """Take one token for ``key_id``; False when its bucket is empty."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key_id, (self._burst, now))
            tokens = min(self._burst, tokens + (now - last) * self._rate)
            if tokens < 1.0:
                self._buckets[key_id] = (tokens, now)
                return False
            self._buckets[key_id] = (tokens - 1.0, now)
            return True
