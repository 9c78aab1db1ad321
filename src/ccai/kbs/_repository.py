"""All of the broker's SQL (polar's repository layer): sessions, resources, policies, audit, keys."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ccai.kbs._audit import AUDIT_FIELDS, GENESIS, record_hash
from ccai.kbs._keys import Envelope
from ccai.kbs._models import AuditRow, Binding, PolicyRow, ResourceRow, Session, SigningKeyRow

__all__ = ["Repository"]

_RETRIES = 50
# The mapped tables, for Core statements on the hot path (no ORM unit of work per call).
_SESSIONS = cast(Table, Session.__table__)
_AUDIT = cast(Table, AuditRow.__table__)
_RELEASE_LOOKUP = text(
    """
    SELECT r.version, r.format, r.master_key_id, r.wrapped_key, r.ciphertext,
           b.policy AS policy_name, p.version AS policy_version, p.document AS policy_document
    FROM (SELECT * FROM kbs_resources WHERE name = :name ORDER BY version DESC LIMIT 1) r
    LEFT JOIN (
        SELECT policy FROM kbs_bindings WHERE target IN (:resource, :repo)
        ORDER BY target = :resource DESC LIMIT 1
    ) b ON 1 = 1
    LEFT JOIN kbs_policies p
        ON p.name = b.policy
       AND p.version = (SELECT max(version) FROM kbs_policies WHERE name = b.policy)
    """
)


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
        self._tail: tuple[int, str] | None = None  # (seq, hash) this process appended last

    # -- RCAR sessions ---------------------------------------------------------------------------

    async def create_session(
        self, sid: str, nonce: str, tee: str, *, now: datetime, expires: datetime
    ) -> None:
        """Store a fresh challenge."""
        async with self._sessions.begin() as s:
            s.add(Session(id=sid, nonce=nonce, tee=tee, created_at=now, expires_at=expires))

    async def consume_challenge(self, sid: str, *, now: datetime) -> tuple[str, str | None, str | None]:
        """Mark the session's challenge used: ``("ok", nonce, tee)``, or
        ``("unknown"|"used"|"expired", None, None)``.

        One ``UPDATE … RETURNING`` on the hot path (SQLite ≥ 3.35 and PostgreSQL): the row is
        consumed only while unconsumed and unexpired, so of two racing requests exactly one gets
        it back. Only a refused session is read again, to name why.
        """
        async with self._sessions.begin() as s:
            got = (
                await s.execute(
                    update(_SESSIONS)
                    .where(
                        _SESSIONS.c.id == sid,
                        _SESSIONS.c.consumed_at.is_(None),
                        _SESSIONS.c.expires_at > now,
                    )
                    .values(consumed_at=now)
                    .returning(_SESSIONS.c.nonce, _SESSIONS.c.tee)
                )
            ).first()
            if got is not None:
                return "ok", got.nonce, got.tee
            row = (await s.execute(select(_SESSIONS.c.consumed_at).where(_SESSIONS.c.id == sid))).first()
            if row is None:
                return "unknown", None, None
            return ("used" if row.consumed_at is not None else "expired"), None, None

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
        self, name: str, resource_target: str, repo_target: str
    ) -> tuple[tuple[int, Envelope] | None, str | None, tuple[int, str] | None]:
        """One statement for a release: the newest version of ``name``, the policy guarding it
        (its ``resource_target`` binding, else its ``repo_target`` one) and that policy's newest
        version.

        Written as SQL text (the same on SQLite and PostgreSQL): the equivalent Core construct
        costs twice the time per call to build and compile, on the hottest path of the broker.
        """
        async with self._sessions() as s:
            row = (
                await s.execute(
                    _RELEASE_LOOKUP, {"name": name, "resource": resource_target, "repo": repo_target}
                )
            ).first()
        if row is None:
            return None, None, None
        m = row._mapping
        env = Envelope(
            master_key_id=m["master_key_id"],
            wrapped_key=bytes(m["wrapped_key"]),
            ciphertext=bytes(m["ciphertext"]),
            format=m["format"],
        )
        version = m["policy_version"]
        stored = (int(version), str(m["policy_document"])) if version is not None else None
        return (int(m["version"]), env), m["policy_name"], stored

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

    async def append_audit(
        self, record: Mapping[str, Any], *, session_token: tuple[str, str] | None = None
    ) -> dict[str, Any]:
        """Append one record to the hash chain (and, in the same transaction, attach a session's
        token: ``(sid, token)``).

        ``seq`` is the primary key, so two writers that believe in the same tail cannot both
        append after it. The tail this process wrote last is remembered: the common case is one
        INSERT; a writer whose remembered tail is stale (another replica appended) loses the
        primary-key race, re-reads the tail and retries.
        """
        async with self._audit_lock:
            fields = {k: record.get(k) for k in AUDIT_FIELDS if k != "seq"}
            for _ in range(_RETRIES * 4):
                try:
                    async with self._sessions.begin() as s:
                        tail = self._tail
                        if tail is None:
                            row = await s.scalar(select(AuditRow).order_by(AuditRow.seq.desc()).limit(1))
                            tail = (row.seq, row.hash) if row is not None else (0, GENESIS)
                        seq, prev = tail[0] + 1, tail[1]
                        full = {"seq": seq, **fields}
                        digest = record_hash(prev, full)
                        await s.execute(insert(_AUDIT).values(**full, prev_hash=prev, hash=digest))
                        if session_token is not None:
                            await s.execute(
                                update(_SESSIONS)
                                .where(_SESSIONS.c.id == session_token[0])
                                .values(token=session_token[1])
                            )
                    self._tail = (seq, digest)
                    return {**full, "prev_hash": prev, "hash": digest}
                except (IntegrityError, OperationalError):
                    self._tail = None
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
