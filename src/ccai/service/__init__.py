"""service stage of ccai: the attestation service (HTTP; see docs/attestation-service.md).

An NRAS-compatible verifier (``POST /v3|v4/attest/gpu`` → detached EAT, JWKS with ``x5c``) and a
composite API (``POST /v1/nonce``, ``POST /v1/attest`` for ccai evidence bundles), over the
library :class:`~ccai.verify.Verifier` and :mod:`ccai.token`, with nonces, audit, named policies,
API keys and rotating signing keys in SQLite or PostgreSQL (SQLAlchemy async, Alembic).

Build it with :func:`create_app` and :class:`ServiceSettings`; FastAPI, SQLAlchemy and friends
(the ``[service]`` extra) are imported when this package is.
"""

from __future__ import annotations

from ccai.service._app import Database, create_app, open_database, prepare_database
from ccai.service._auth import create_api_key
from ccai.service._keys import ENVELOPE_FORMAT, MasterKey, load_master_key, rotate
from ccai.service._repository import AuditEntry, Repository, StoredPolicy
from ccai.service._settings import ServiceSettings, default_database_url

__all__ = [
    "ENVELOPE_FORMAT",
    "AuditEntry",
    "Database",
    "MasterKey",
    "Repository",
    "ServiceSettings",
    "StoredPolicy",
    "create_api_key",
    "create_app",
    "default_database_url",
    "load_master_key",
    "open_database",
    "prepare_database",
    "rotate",
]
