"""All of the broker's SQL (polar's repository layer): sessions, resources, policies, audit, keys."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ccai.kbs._audit import AUDIT_FIELDS, GENESIS, record_hash
from ccai.kbs._keys import Envelope
from ccai.kbs._models import AuditRow, Binding, PolicyRow, ResourceRow, Session, SigningKeyRow

__all__ = ["Repository"]

_RETRIES = 50


def _envelope(row: ResourceRow) -> Envelope:
    return Envelope(
        master_key_id=row.master_key_id,
        wrapped_key=row.wrapped_key,
        ciphertext=row.ciphertext,
        format=row.format,
    )


class Repository:
    """The broker's database access; every method is one transaction."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._audit_lock = asyncio.Lock()

    # -- RCAR sessions ---------------------------------------------------------------------------

    async def create_session(
        self, sid: str, nonce: str, tee: str, *, now: datetime, expires: datetime
    ) -> None:
        """Store a fresh challenge."""
        async with self._sessions.begin() as s:
            s.add(Session(id=sid, nonce=nonce, tee=tee, created_at=now, expires_at=expires))

    async def consume_challenge(self, sid: str, *, now: datetime) -> tuple[str, str | None, str | None]:
        """Mark the session's challenge used: ``("ok", nonce, tee)``, or
        ``("unknown"|"used"|"expired", None, None)``."""
        async with self._sessions.begin() as s:
            result = await s.execute(
                update(Session)
                .where(Session.id == sid, Session.consumed_at.is_(None), Session.expires_at > now)
                .values(consumed_at=now)
            )
            row = await s.get(Session, sid)
            if row is None:
                return "unknown", None, None
            if getattr(result, "rowcount", 0) != 1:
                return ("used" if row.consumed_at is not None else "expired"), None, None
            return "ok", row.nonce, row.tee

    async def set_token(self, sid: str, token: str) -> None:
        """Attach the issued token to the session (the cookie path)."""
        async with self._sessions.begin() as s:
            await s.execute(update(Session).where(Session.id == sid).values(token=token))

    async def session_token(self, sid: str) -> str | None:
        """The token of an attested session, if any."""
        async with self._sessions() as s:
            row = await s.get(Session, sid)
            return row.token if row is not None else None

    # -- resources -------------------------------------------------------------------------------

    async def put_resource(self, name: str, seal: Callable[[int], Envelope], *, now: datetime) -> int:
        """Store a new version of ``name`` (the next number; retried if another writer won it)."""
        for _ in range(_RETRIES):
            try:
                async with self._sessions.begin() as s:
                    latest = await s.scalar(
                        select(func.max(ResourceRow.version)).where(ResourceRow.name == name)
                    )
                    version = (latest or 0) + 1
                    env = seal(version)
                    s.add(
                        ResourceRow(
                            name=name,
                            version=version,
                            format=env.format,
                            master_key_id=env.master_key_id,
                            wrapped_key=env.wrapped_key,
                            ciphertext=env.ciphertext,
                            created_at=now,
                        )
                    )
                return version
            except (IntegrityError, OperationalError):
                await asyncio.sleep(0.01)
        raise RuntimeError("could not store the resource version (too much contention)")

    async def latest_resource(self, name: str) -> tuple[int, Envelope] | None:
        """The newest version of ``name``."""
        async with self._sessions() as s:
            row = await s.scalar(
                select(ResourceRow)
                .where(ResourceRow.name == name)
                .order_by(ResourceRow.version.desc())
                .limit(1)
            )
            return (row.version, _envelope(row)) if row is not None else None

    async def release_lookup(
        self, name: str, *targets: str
    ) -> tuple[tuple[int, Envelope] | None, str | None, tuple[int, str] | None]:
        """One read for a release: the newest version of ``name``, the policy name guarding the
        first target that has one, and that policy's newest version."""
        async with self._sessions() as s:
            row = await s.scalar(
                select(ResourceRow)
                .where(ResourceRow.name == name)
                .order_by(ResourceRow.version.desc())
                .limit(1)
            )
            if row is None:
                return None, None, None
            policy_name = None
            for target in targets:
                binding = await s.get(Binding, target)
                if binding is not None:
                    policy_name = binding.policy
                    break
            stored = None
            if policy_name is not None:
                prow = await s.scalar(
                    select(PolicyRow)
                    .where(PolicyRow.name == policy_name)
                    .order_by(PolicyRow.version.desc())
                    .limit(1)
                )
                stored = (prow.version, prow.document) if prow is not None else None
            return (row.version, _envelope(row)), policy_name, stored

    async def rewrap_all(self, rewrap: Callable[[str, int, Envelope], Envelope]) -> int:
        """Re-wrap every stored data key in one transaction (all or nothing)."""
        async with self._sessions.begin() as s:
            rows = (await s.scalars(select(ResourceRow))).all()
            for row in rows:
                env = rewrap(row.name, row.version, _envelope(row))
                row.master_key_id, row.wrapped_key = env.master_key_id, env.wrapped_key
            key = await s.get(SigningKeyRow, 1)
            if key is not None:
                env = rewrap(
                    "kbs-signing-key",
                    1,
                    Envelope(
                        master_key_id=key.master_key_id,
                        wrapped_key=key.wrapped_key,
                        ciphertext=key.ciphertext,
                    ),
                )
                key.master_key_id, key.wrapped_key = env.master_key_id, env.wrapped_key
            return len(rows)

    async def master_key_ids(self) -> set[str]:
        """The master keys stored data keys are wrapped under."""
        async with self._sessions() as s:
            ids = set((await s.scalars(select(ResourceRow.master_key_id).distinct())).all())
            key = await s.get(SigningKeyRow, 1)
            if key is not None:
                ids.add(key.master_key_id)
            return ids

    # -- policies --------------------------------------------------------------------------------

    async def put_policy(self, name: str, document: str, *, now: datetime) -> int:
        """Store a new version of policy ``name``."""
        for _ in range(_RETRIES):
            try:
                async with self._sessions.begin() as s:
                    latest = await s.scalar(select(func.max(PolicyRow.version)).where(PolicyRow.name == name))
                    version = (latest or 0) + 1
                    s.add(PolicyRow(name=name, version=version, document=document, created_at=now))
                return version
            except (IntegrityError, OperationalError):
                await asyncio.sleep(0.01)
        raise RuntimeError("could not store the policy version")

    async def get_policy(self, name: str) -> tuple[int, str] | None:
        """The newest version of policy ``name``."""
        async with self._sessions() as s:
            row = await s.scalar(
                select(PolicyRow).where(PolicyRow.name == name).order_by(PolicyRow.version.desc()).limit(1)
            )
            return (row.version, row.document) if row is not None else None

    async def bind(self, target: str, policy: str, *, now: datetime) -> None:
        """Guard ``target`` (``resource:…`` / ``repo:…``) with policy ``policy``."""
        async with self._sessions.begin() as s:
            row = await s.get(Binding, target)
            if row is None:
                s.add(Binding(target=target, policy=policy, updated_at=now))
            else:
                row.policy, row.updated_at = policy, now

    async def bindings(self) -> dict[str, str]:
        """Every target → policy name."""
        async with self._sessions() as s:
            return {b.target: b.policy for b in (await s.scalars(select(Binding))).all()}

    async def binding(self, *targets: str) -> str | None:
        """The policy of the first target that has one."""
        async with self._sessions() as s:
            for target in targets:
                row = await s.get(Binding, target)
                if row is not None:
                    return row.policy
        return None

    # -- audit -----------------------------------------------------------------------------------

    async def append_audit(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Append one record to the hash chain. ``seq`` is the primary key, so two replicas that
        read the same tail cannot both append after it: the loser retries on the new tail."""
        async with self._audit_lock:
            for _ in range(_RETRIES * 4):
                try:
                    async with self._sessions.begin() as s:
                        tail = await s.scalar(select(AuditRow).order_by(AuditRow.seq.desc()).limit(1))
                        seq, prev = (tail.seq + 1, tail.hash) if tail is not None else (1, GENESIS)
                        fields = {k: record.get(k) for k in AUDIT_FIELDS if k != "seq"}
                        full = {"seq": seq, **fields}
                        digest = record_hash(prev, full)
                        s.add(AuditRow(**full, prev_hash=prev, hash=digest))
                    return {**full, "prev_hash": prev, "hash": digest}
                except (IntegrityError, OperationalError):
                    await asyncio.sleep(0.005)
        raise RuntimeError("could not append to the audit log")

    async def audit(self, *, after: int = 0, limit: int = 100000) -> list[dict[str, Any]]:
        """Audit records in order."""
        async with self._sessions() as s:
            rows = (
                await s.scalars(
                    select(AuditRow).where(AuditRow.seq > after).order_by(AuditRow.seq).limit(limit)
                )
            ).all()
        return [
            {**{k: getattr(r, k) for k in AUDIT_FIELDS}, "prev_hash": r.prev_hash, "hash": r.hash}
            for r in rows
        ]

    # -- signing key -----------------------------------------------------------------------------

    async def signing_key(self) -> SigningKeyRow | None:
        """The stored token-signing key."""
        async with self._sessions() as s:
            return await s.get(SigningKeyRow, 1)

    async def insert_signing_key(self, row: SigningKeyRow) -> SigningKeyRow:
        """Store the first signing key; if another replica stored one first, return that one."""
        try:
            async with self._sessions.begin() as s:
                s.add(row)
        except IntegrityError:
            pass
        found = await self.signing_key()
        if found is None:
            raise RuntimeError("the signing key vanished after it was stored")
        return found
