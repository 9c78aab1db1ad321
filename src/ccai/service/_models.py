"""The attestation service's tables (SQLAlchemy 2 declarative models; schema owned by Alembic).

Nothing here stores evidence or secrets in the clear: audit rows keep a digest of the evidence,
API keys are kept as SHA-256 hashes, signing keys only as envelope-encrypted blobs.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["ApiKey", "AuditRecord", "Base", "Nonce", "PolicyVersion", "SigningKey"]


class Base(DeclarativeBase):
    """Declarative base of the service's tables."""


class Nonce(Base):
    """A challenge issued by ``POST /v1/nonce``: live until it expires or is consumed once."""

    __tablename__ = "nonces"
    value: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    consumed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AuditRecord(Base):
    """One appraisal: when, what (digest), under which policy, the verdict and the token id."""

    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    request_id: Mapped[str] = mapped_column(String(64))
    endpoint: Mapped[str] = mapped_column(String(64))
    api_key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    evidence_sha256: Mapped[str] = mapped_column(String(64))
    policy_name: Mapped[str | None] = mapped_column(String(128), nullable=True)
    policy_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    verdict: Mapped[bool] = mapped_column(Boolean)
    jti: Mapped[str] = mapped_column(String(64), unique=True)
    failed_step: Mapped[str | None] = mapped_column(String(128), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class PolicyVersion(Base):
    """A named policy's document at one version (versions only grow)."""

    __tablename__ = "policies"
    __table_args__ = (UniqueConstraint("name", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SigningKey(Base):
    """A token-signing key: envelope-encrypted private key, self-signed certificate, lifecycle."""

    __tablename__ = "signing_keys"
    kid: Mapped[str] = mapped_column(String(128), primary_key=True)
    development: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    certificate_pem: Mapped[str] = mapped_column(Text)
    encrypted_private_key: Mapped[str] = mapped_column(Text)


class ApiKey(Base):
    """An API key: its public id, the SHA-256 of the whole secret token, and whether it is admin."""

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    admin: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
