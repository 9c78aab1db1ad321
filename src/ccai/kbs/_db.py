"""The broker's database: its Alembic migrations (``ccai/kbs/migrations``) on the shared engine code
of :mod:`ccai._database`."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from ccai import _database
from ccai._database import create_engine
from ccai._database import session_factory as sessions

__all__ = ["create_engine", "migrate", "sessions"]

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_ADVISORY_LOCK = 0x6B627301  # "kbs" 1


async def migrate(engine: AsyncEngine) -> None:
    """Apply pending migrations (startup fails closed with :class:`~ccai.errors.UsageError`)."""
    await _database.migrate(
        engine, migrations=_MIGRATIONS, lock_id=_ADVISORY_LOCK, what="key broker database"
    )
