"""The attestation service's settings: one frozen pydantic model, built from flags and ``CCAI_`` variables.

Settings are built in the app factory's caller (the CLI, a test), never at import (STYLE.md rule 13).
Every field can also come from an environment variable named ``CCAI_<FIELD>`` (upper case), for
example ``CCAI_DATABASE_URL``; explicit arguments win over the environment.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ccai._home import ccai_home
from ccai.errors import UsageError

__all__ = ["ENV_PREFIX", "ServiceSettings", "default_database_url"]

#: Environment variables that configure the service start with this prefix.
ENV_PREFIX = "CCAI_"


def default_database_url() -> str:
    """SQLite under ``$CCAI_HOME/attestation.db`` (aiosqlite driver)."""
    return f"sqlite+aiosqlite:///{ccai_home() / 'attestation.db'}"


class ServiceSettings(BaseModel):
    """Everything the attestation service is configured with (frozen; unknown keys refused).

    Attributes:
        host, port: Where to listen (loopback by default).
        database_url: SQLAlchemy async URL (default SQLite under ``$CCAI_HOME``);
            ``postgresql+psycopg://…`` for PostgreSQL.
        rim_service_url, ocsp_url: Online GPU collateral (default NVIDIA's services).
        pcs_url, kds_url: Online CPU collateral for bundles that carry none: Intel PCS / PCCS and
            AMD KDS base URLs (default Intel's and AMD's; with ``allow_simulated`` only these, for
            example ``ccai dev collateral-server``, are asked — the vendors know no virtual TEE).
        rim_dir: A directory of ``<id>.xml`` RIMs consulted first.
        collateral: An offline collateral bundle consulted first.
        offline: Never touch the network for collateral.
        at: A pinned verification time (for old real vectors; tokens still carry the real time).
        policies: ``NAME`` → policy file, stored (as a new version when changed) at start.
        allow_simulated: Accept evidence of ccai's virtual hardware (development only; its tokens
            are signed with the development key).
        allow_anonymous: Serve the attest endpoints without an API key (loudly named on purpose).
        workers: uvicorn worker processes.
        tls_cert, tls_key: Serve HTTPS with this certificate and key.
        master_key_file: File holding the 32-byte key-encryption key (default
            ``$CCAI_HOME/attestation-master.key``); ``CCAI_MASTER_KEY`` (base64) wins over it.
        max_body_bytes: The largest request body read.
        max_gpus: The most evidence items one request may carry.
        rate_limit, rate_burst: Token bucket per API key and replica (requests per second, burst).
        nonce_ttl_seconds: Default lifetime of ``/v1/nonce`` challenges.
        issuer: ``iss`` of issued tokens.
        key_refresh_seconds: How often a replica re-reads the signing keys (rotation by another
            process becomes visible within this time).
        api_key_cache_seconds: How long a checked API key is trusted without reading the database
            (a revoked key stops working within this time).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8443, ge=0, le=65535)
    database_url: str | None = None
    rim_service_url: str | None = None
    ocsp_url: str | None = None
    pcs_url: str | None = None
    kds_url: str | None = None
    rim_dir: Path | None = None
    collateral: Path | None = None
    offline: bool = False
    at: datetime | None = None
    policies: dict[str, Path] = Field(default_factory=dict)
    allow_simulated: bool = False
    allow_anonymous: bool = False
    workers: int = Field(default=1, ge=1, le=64)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    master_key_file: Path | None = None
    max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024)
    max_gpus: int = Field(default=8, ge=1, le=64)
    rate_limit: float = Field(default=200.0, gt=0)
    rate_burst: int = Field(default=400, ge=1)
    nonce_ttl_seconds: int = Field(default=300, ge=1, le=86400)
    issuer: str = "CCAI-ATTESTATION-SERVICE"
    key_refresh_seconds: float = Field(default=10.0, gt=0)
    api_key_cache_seconds: float = Field(default=10.0, ge=0)

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("at must carry a timezone (ISO 8601 with Z or an offset)")
        return value

    def resolved_database_url(self) -> str:
        """``database_url``, or the SQLite default."""
        return self.database_url or default_database_url()

    @classmethod
    def build(cls, environ: dict[str, str] | None = None, **given: Any) -> ServiceSettings:
        """Settings from ``CCAI_*`` variables overridden by the given values (``None`` = not given).

        Raises:
            UsageError: a value is invalid (the message names the setting).
        """
        env = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is None or raw == "":
                continue
            if name == "policies":
                values[name] = _policies_from_text(raw)
            else:
                values[name] = raw
        values.update({k: v for k, v in given.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise UsageError(f"invalid service setting {where}: {first['msg']}") from None

    def to_env_json(self) -> str:
        """The settings as JSON (handed to uvicorn worker processes)."""
        return self.model_dump_json()

    @classmethod
    def from_env_json(cls, text: str) -> ServiceSettings:
        """Read :meth:`to_env_json` output."""
        return cls.model_validate(json.loads(text))

    def master_key_path(self) -> Path:
        """Where the key-encryption key is kept when ``CCAI_MASTER_KEY`` is not set."""
        return self.master_key_file or ccai_home() / "attestation-master.key"


def _policies_from_text(text: str) -> dict[str, str]:
    """``NAME=FILE[,NAME=FILE…]`` (the form of ``CCAI_POLICIES``)."""
    out: dict[str, str] = {}
    for part in text.split(","):
        name, sep, path = part.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise UsageError("CCAI_POLICIES must be NAME=FILE[,NAME=FILE…]")
        out[name.strip()] = path.strip()
    return out
