"""Initial key-broker schema: sessions, resources, policies, bindings, audit, signing key.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the tables."""
    op.create_table(
        "kbs_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("nonce", sa.String(64), nullable=False),
        sa.Column("tee", sa.String(32), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False, index=True),
        sa.Column("consumed_at", _TS, nullable=True),
        sa.Column("token", sa.Text, nullable=True),
    )
    op.create_table(
        "kbs_resources",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("format", sa.String(32), nullable=False),
        sa.Column("master_key_id", sa.String(64), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary, nullable=False),
        sa.Column("ciphertext", sa.LargeBinary, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_table(
        "kbs_policies",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_table(
        "kbs_bindings",
        sa.Column("target", sa.String(300), primary_key=True),
        sa.Column("policy", sa.String(128), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_table(
        "kbs_audit",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("event", sa.String(16), nullable=False),
        sa.Column("resource", sa.String(255), nullable=True),
        sa.Column("claims_digest", sa.String(64), nullable=True),
        sa.Column("policy", sa.String(160), nullable=True),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "kbs_signing_key",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("kid", sa.String(64), nullable=False),
        sa.Column("master_key_id", sa.String(64), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary, nullable=False),
        sa.Column("ciphertext", sa.LargeBinary, nullable=False),
        sa.Column("public_pem", sa.Text, nullable=False),
    )


def downgrade() -> None:
    """Drop the tables."""
    for table in (
        "kbs_signing_key",
        "kbs_audit",
        "kbs_bindings",
        "kbs_policies",
        "kbs_resources",
        "kbs_sessions",
    ):
        op.drop_table(table)
