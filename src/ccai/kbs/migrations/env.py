"""Alembic environment: runs on the connection ``ccai.kbs`` hands in (never opens its own)."""

from __future__ import annotations

from alembic import context

from ccai.kbs._models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("the key broker's migrations run through ccai.kbs (they need a connection)")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    version_table="kbs_alembic_version",
)
with context.begin_transaction():
    context.run_migrations()
