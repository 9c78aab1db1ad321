"""Alembic environment: runs on the connection ``ccai.service`` hands in (never opens its own)."""

from __future__ import annotations

from alembic import context

from ccai.service._models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("ccai's migrations run through ccai.service (they need a connection)")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
