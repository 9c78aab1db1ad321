"""The broker's database: engine and Alembic migrations (shipped in ``ccai/kbs/migrations``).

SQLite (aiosqlite; default ``$CCAI_HOME/kbs.db``) or PostgreSQL (psycopg 3). Replicas starting
together on PostgreSQL serialise their migration on an advisory lock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from ccai.errors import UsageError

__all__ = ["create_engine", "migrate", "sessions"]

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_ADVISORY_LOCK = 0x6B627301  # "kbs" 1


def create_engine(url: str) -> AsyncEngine:
    """An async engine for ``url`` (``sqlite+aiosqlite://…`` or ``postgresql+psycopg://…``).

    Raises:
        UsageError: an unsupported URL or a missing driver.
    """
    if not url.startswith(("sqlite+aiosqlite://", "postgresql+psycopg://", "postgresql+asyncpg://")):
        raise UsageError("database URL must be sqlite+aiosqlite://… or postgresql+psycopg://…")
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 30}
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and not path.startswith(":memory:"):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    else:
        kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
    try:
        engine = create_async_engine(url, **kwargs)
    except (ImportError, SQLAlchemyError) as exc:
        raise UsageError(f"cannot use the database URL: {exc}", hint="pip install 'ccai[postgres]'") from None
    if url.startswith("sqlite"):

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL + NORMAL: each commit survives a process kill (SIGKILL during put/rotate).
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

    return engine


def _upgrade(connection: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK})
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def migrate(engine: AsyncEngine) -> None:
    """Apply pending migrations.

    Raises:
        UsageError: the database cannot be reached or migrated.
    """
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade)
    except (SQLAlchemyError, OSError) as exc:
        raise UsageError(
            "cannot open or migrate the key broker database: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        ) from None


def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)
