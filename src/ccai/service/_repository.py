"""All SQL of the attestation service (polar's repository layer): nonces, audit, policies, keys.

Each method runs in its own short transaction and commits before it returns, so a caller that
has seen a method return knows its write is durable — the audit record of an appraisal is
committed before the response leaves (a replica killed right after loses nothing it answered).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ccai.service._models import ApiKey, AuditRecord, Nonce, PolicyVersion, SigningKey

__all__ = ["AuditEntry", "Repository", "StoredApiKey", "StoredKey", "StoredPolicy"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One audit row (what the audit log shows; never evidence or secrets)."""

    at: datetime
    request_id: str
    endpoint: str
    api_key_id: str | None
    evidence_sha256: str
    policy_name: str | None
    policy_version: int | None
    verdict: bool
    jti: str
    failed_step: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredPolicy:
    """A named policy at one version."""

    name: str
    version: int
    document: str
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredKey:
    """A signing key as stored: still encrypted."""

    kid: str
    development: bool
    created_at: datetime
    retired_at: datetime | None
    certificate_pem: str
    encrypted_private_key: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredApiKey:
    """An API key row (the secret only as its hash)."""

    id: str
    secret_sha256: str
    name: str
    admin: bool
    created_at: datetime
    revoked_at: datetime | None


class Repository:
    """The service's data access. Args: sessions: an async session factory."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def ping(self) -> bool:
        """Whether the database answers a trivial query."""
        try:
            async with self._sessions() as session:
                await session.execute(select(1))
        except SQLAlchemyError:
            return False
        return True

    # -- nonces -----------------------------------------------------------------------------------

    async def add_nonce(self, value: str, *, now: datetime, expires_at: datetime) -> None:
        """Store a fresh challenge."""
        async with self._sessions.begin() as session:
            await session.execute(
                insert(Nonce).values(value=value, created_at=now, expires_at=expires_at, consumed_at=None)
            )

    async def consume_nonce(self, value: str, *, now: datetime) -> bool:
        """Consume a live nonce atomically: True for exactly one caller, on any replica.

        One conditional UPDATE (unconsumed and unexpired) is the whole check, so two replicas
        racing for one nonce cannot both see it live.
        """
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(Nonce)
                .where(and_(Nonce.value == value, Nonce.consumed_at.is_(None), Nonce.expires_at > now))
                .values(consumed_at=now)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def purge_nonces(self, *, before: datetime) -> int:
        """Delete nonces that expired before ``before``; returns how many."""
        async with self._sessions.begin() as session:
            result = await session.execute(delete(Nonce).where(Nonce.expires_at < before))
            return int(result.rowcount)  # type: ignore[attr-defined]

    # -- audit ------------------------------------------------------------------------------------

    async def add_audit(self, entry: AuditEntry) -> None:
        """Record one appraisal (committed when this returns)."""
        async with self._sessions.begin() as session:
            await session.execute(
                insert(AuditRecord).values(
                    at=entry.at,
                    request_id=entry.request_id,
                    endpoint=entry.endpoint,
                    api_key_id=entry.api_key_id,
                    evidence_sha256=entry.evidence_sha256,
                    policy_name=entry.policy_name,
                    policy_version=entry.policy_version,
                    verdict=entry.verdict,
                    jti=entry.jti,
                    failed_step=entry.failed_step,
                    error=entry.error,
                )
            )

    async def audit(self, *, limit: int = 100) -> list[AuditEntry]:
        """The newest ``limit`` audit rows, newest first."""
        async with self._sessions() as session:
            rows = (
                await session.execute(select(AuditRecord).order_by(AuditRecord.id.desc()).limit(limit))
            ).scalars()
            return [
                AuditEntry(
                    at=r.at,
                    request_id=r.request_id,
                    endpoint=r.endpoint,
                    api_key_id=r.api_key_id,
                    evidence_sha256=r.evidence_sha256,
                    policy_name=r.policy_name,
                    policy_version=r.policy_version,
                    verdict=r.verdict,
                    jti=r.jti,
                    failed_step=r.failed_step,
                    error=r.error,
                )
                for r in rows
            ]

    async def audit_jtis(self) -> set[str]:
        """Every token id in the audit table."""
        async with self._sessions() as session:
            return set((await session.execute(select(AuditRecord.jti))).scalars())

    # -- policies ---------------------------------------------------------------------------------

    async def put_policy(self, name: str, document: str, *, now: datetime) -> StoredPolicy:
        """Store ``document`` as the next version of ``name`` (unchanged text: the current version)."""
        for _ in range(5):
            current = await self.get_policy(name)
            if current is not None and current.document == document:
                return current
            version = 1 if current is None else current.version + 1
            try:
                async with self._sessions.begin() as session:
                    await session.execute(
                        insert(PolicyVersion).values(
                            name=name, version=version, document=document, created_at=now
                        )
                    )
            except IntegrityError:
                continue  # another process stored this version first: read again
            return StoredPolicy(name=name, version=version, document=document, created_at=now)
        raise RuntimeError(f"could not store policy {name!r}: too much contention")

    async def get_policy(self, name: str, version: int | None = None) -> StoredPolicy | None:
        """A policy at ``version`` (default: its newest), or None."""
        async with self._sessions() as session:
            query = select(PolicyVersion).where(PolicyVersion.name == name)
            if version is not None:
                query = query.where(PolicyVersion.version == version)
            row = (await session.execute(query.order_by(PolicyVersion.version.desc()).limit(1))).scalar()
            if row is None:
                return None
            return StoredPolicy(
                name=row.name, version=row.version, document=row.document, created_at=row.created_at
            )

    async def policy_names(self) -> list[tuple[str, int]]:
        """Every policy name with its newest version."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(PolicyVersion.name, func.max(PolicyVersion.version)).group_by(PolicyVersion.name)
            )
            return sorted((str(n), int(v)) for n, v in rows.all())

    # -- signing keys -----------------------------------------------------------------------------

    async def add_key(self, key: StoredKey) -> None:
        """Store a new signing key."""
        async with self._sessions.begin() as session:
            await session.execute(
                insert(SigningKey).values(
                    kid=key.kid,
                    development=key.development,
                    created_at=key.created_at,
                    retired_at=key.retired_at,
                    certificate_pem=key.certificate_pem,
                    encrypted_private_key=key.encrypted_private_key,
                )
            )

    async def active_keys(self, *, development: bool, limit: int = 2) -> list[StoredKey]:
        """The newest ``limit`` unretired keys of one kind, newest first (current, previous)."""
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(SigningKey)
                    .where(and_(SigningKey.development == development, SigningKey.retired_at.is_(None)))
                    .order_by(SigningKey.created_at.desc(), SigningKey.kid.desc())
                    .limit(limit)
                )
            ).scalars()
            return [
                StoredKey(
                    kid=r.kid,
                    development=r.development,
                    created_at=r.created_at,
                    retired_at=r.retired_at,
                    certificate_pem=r.certificate_pem,
                    encrypted_private_key=r.encrypted_private_key,
                )
                for r in rows
            ]

    async def retire_keys_except(self, kids: Sequence[str], *, development: bool, now: datetime) -> None:
        """Retire every key of one kind not in ``kids`` (keeps the JWKS to current + previous)."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(SigningKey)
                .where(
                    and_(
                        SigningKey.development == development,
                        SigningKey.retired_at.is_(None),
                        SigningKey.kid.not_in(list(kids)),
                    )
                )
                .values(retired_at=now)
            )

    # -- API keys ---------------------------------------------------------------------------------

    async def add_api_key(self, key: StoredApiKey) -> None:
        """Store a new API key (hash only)."""
        async with self._sessions.begin() as session:
            await session.execute(
                insert(ApiKey).values(
                    id=key.id,
                    secret_sha256=key.secret_sha256,
                    name=key.name,
                    admin=key.admin,
                    created_at=key.created_at,
                    revoked_at=key.revoked_at,
                )
            )

    async def get_api_key(self, key_id: str) -> StoredApiKey | None:
        """An API key by its public id."""
        async with self._sessions() as session:
            row = (await session.execute(select(ApiKey).where(ApiKey.id == key_id))).scalar()
            if row is None:
                return None
            return StoredApiKey(
                id=row.id,
                secret_sha256=row.secret_sha256,
                name=row.name,
                admin=row.admin,
                created_at=row.created_at,
                revoked_at=row.revoked_at,
            )

    async def revoke_api_key(self, key_id: str, *, now: datetime) -> bool:
        """Revoke a key; False when there is no such unrevoked key."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(ApiKey)
                .where(and_(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)))
                .values(revoked_at=now)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def api_keys(self) -> list[StoredApiKey]:
        """Every API key (hashes only)."""
        async with self._sessions() as session:
            rows = (await session.execute(select(ApiKey).order_by(ApiKey.created_at))).scalars()
            return [
                StoredApiKey(
                    id=r.id,
                    secret_sha256=r.secret_sha256,
                    name=r.name,
                    admin=r.admin,
                    created_at=r.created_at,
                    revoked_at=r.revoked_at,
                )
                for r in rows
            ]
