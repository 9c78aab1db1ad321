"""Initial schema: nonces, audit, policies, signing keys, API keys.

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
        "nonces",
        sa.Column("value", sa.String(64), primary_key=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False, index=True),
        sa.Column("consumed_at", _TS, nullable=True),
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", _TS, nullable=False, index=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("endpoint", sa.String(64), nullable=False),
        sa.Column("api_key_id", sa.String(32), nullable=True),
        sa.Column("evidence_sha256", sa.String(64), nullable=False),
        sa.Column("policy_name", sa.String(128), nullable=True),
        sa.Column("policy_version", sa.Integer, nullable=True),
        sa.Column("verdict", sa.Boolean, nullable=False),
        sa.Column("jti", sa.String(64), nullable=False, unique=True),
        sa.Column("failed_step", sa.String(128), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_table(
        "policies",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False, index=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.UniqueConstraint("name", "version"),
    )
    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(128), primary_key=True),
        sa.Column("development", sa.Boolean, nullable=False),
        sa.Column("created_at", _TS, nullable=False, index=True),
        sa.Column("retired_at", _TS, nullable=True),
        sa.Column("certificate_pem", sa.Text, nullable=False),
        sa.Column("encrypted_private_key", sa.Text, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("admin", sa.Boolean, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
    )


def downgrade() -> None:
    """Drop the tables."""
    for table in ("api_keys", "signing_keys", "policies", "audit", "nonces"):
        op.drop_table(table)
