"""The key broker's tables (SQLAlchemy 2 declarative; the schema is created by Alembic)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["AuditRow", "Base", "Binding", "PolicyRow", "ResourceRow", "Session", "SigningKeyRow"]

_TS = DateTime(timezone=True)


class Base(DeclarativeBase):
    """The broker's metadata (separate from the attestation service's)."""


class Session(Base):
    """An RCAR session: the challenge (single use, with expiry) and, once attested, its token."""

    __tablename__ = "kbs_sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64))
    tee: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(_TS)
    expires_at: Mapped[datetime] = mapped_column(_TS, index=True)
    consumed_at: Mapped[datetime | None] = mapped_column(_TS, nullable=True)
    token: Mapped[str | None] = mapped_column(Text, nullable=True)


class ResourceRow(Base):
    """One version of a resource, envelope-encrypted (``kbs-envelope/1``)."""

    __tablename__ = "kbs_resources"
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    format: Mapped[str] = mapped_column(String(32))
    master_key_id: Mapped[str] = mapped_column(String(64))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(_TS)


class PolicyRow(Base):
    """One version of a named policy document (the one ccai policy model)."""

    __tablename__ = "kbs_policies"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    document: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(_TS)


class Binding(Base):
    """Which named policy guards a resource (``resource:R/T/G``) or a repository (``repo:R``)."""

    __tablename__ = "kbs_bindings"
    target: Mapped[str] = mapped_column(String(300), primary_key=True)
    policy: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(_TS)


class AuditRow(Base):
    """One hash-chained audit record (append-only; ``hash`` = SHA-256(prev_hash ‖ canonical content))."""

    __tablename__ = "kbs_audit"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(40))
    event: Mapped[str] = mapped_column(String(16))
    resource: Mapped[str | None] = mapped_column(String(255), nullable=True)
    claims_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    policy: Mapped[str | None] = mapped_column(String(160), nullable=True)
    verdict: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class SigningKeyRow(Base):
    """The broker's ES384 token-signing key (the private key envelope-encrypted)."""

    __tablename__ = "kbs_signing_key"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kid: Mapped[str] = mapped_column(String(64))
    master_key_id: Mapped[str] = mapped_column(String(64))
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    public_pem: Mapped[str] = mapped_column(Text)
