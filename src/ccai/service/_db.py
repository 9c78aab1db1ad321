"""The attestation service's database: its Alembic migrations (``ccai/service/migrations``) on the
shared engine code of :mod:`ccai._database`."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from ccai import _database
from ccai._database import create_engine, session_factory

__all__ = ["SCHEMA_HEAD", "create_engine", "migrate", "session_factory"]

#: The newest migration (the schema version this code needs).
SCHEMA_HEAD = "0001"
_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_ADVISORY_LOCK = 0x63636169  # "ccai"


async def migrate(engine: AsyncEngine) -> None:
    """Apply every pending migration (startup fails closed with :class:`~ccai.errors.UsageError`)."""
    await _database.migrate(
        engine, migrations=_MIGRATIONS, lock_id=_ADVISORY_LOCK, what="attestation database"
    )
