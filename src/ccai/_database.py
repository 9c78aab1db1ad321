"""Database engines and Alembic migrations shared by the services (attestation service, key broker).

The same code runs on SQLite (aiosqlite; the default, under ``$CCAI_HOME``) and PostgreSQL
(psycopg 3). Each service ships its own migrations; they are applied at start on one connection, and
on PostgreSQL an advisory lock serialises replicas that start together, so exactly one of them
creates the schema. SQLAlchemy and Alembic are imported here, so only the ``[service]`` extra's
users import this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from ccai.errors import UsageError

__all__ = ["create_engine", "migrate", "session_factory"]


def create_engine(url: str) -> AsyncEngine:
    """An async engine for ``url`` (``sqlite+aiosqlite://…`` or ``postgresql+psycopg://…``).

    Raises:
        UsageError: the URL names no async driver ccai supports, or the driver is not installed.
    """
    if not url.startswith(("sqlite+aiosqlite://", "postgresql+psycopg://", "postgresql+asyncpg://")):
        raise UsageError(
            "database URL must be sqlite+aiosqlite://… or postgresql+psycopg://…",
            actual=url.split("://", 1)[0],
        )
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
        # WAL lets readers run next to the one writer; NORMAL keeps each commit durable across a
        # process kill (the audit guarantee) without an fsync per read.
        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


def _upgrade(connection: Connection, migrations: Path, lock_id: int) -> None:
    from alembic import command
    from alembic.config import Config

    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_id})
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def migrate(engine: AsyncEngine, *, migrations: Path, lock_id: int, what: str) -> None:
    """Apply every pending migration of one service's schema.

    Args:
        engine: The database.
        migrations: The service's Alembic script directory.
        lock_id: The PostgreSQL advisory lock that serialises this service's replicas.
        what: The database's name for the error message (``"attestation database"``).

    Raises:
        UsageError: the database cannot be reached or migrated (startup fails closed).
    """
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade, migrations, lock_id)
    except (SQLAlchemyError, OSError) as exc:
        raise UsageError(
            f"cannot open or migrate the {what}: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        ) from None
