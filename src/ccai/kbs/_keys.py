"""Envelope encryption of stored resources under the broker's master key.

Every resource version has its own random 256-bit data key; the value is sealed under it with
AES-256-GCM and the data key is wrapped under a master key (AES-256-GCM too), both with the
resource's coordinates as associated data so a row cannot be moved to another name. The format is
versioned (``kbs-envelope/1``). Master keys come from a :class:`KeyProvider`: the default
:class:`FileKeyProvider` keeps a small key ring (``{"current": id, "keys": {id: base64}}``) in one
file under ``$CCAI_HOME`` (mode 0600, replaced atomically), or ``CCAI_KBS_MASTER_KEY`` (base64 of 32
bytes) for a single externally supplied key. An external KMS implements the same protocol.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ccai._files import atomic_write
from ccai.errors import UnsealError, UsageError

__all__ = [
    "ENVELOPE_FORMAT",
    "MASTER_KEY_ENV",
    "Envelope",
    "FileKeyProvider",
    "KeyProvider",
    "open_value",
    "seal_value",
]

ENVELOPE_FORMAT = "kbs-envelope/1"
MASTER_KEY_ENV = "CCAI_KBS_MASTER_KEY"


class KeyProvider(Protocol):
    """Where master keys live (a file, an environment variable, an external KMS)."""

    def current_id(self) -> str:
        """The id of the key new data keys are wrapped under."""
        ...

    def wrap(self, key_id: str, data_key: bytes, aad: bytes) -> bytes:
        """Wrap ``data_key`` under master key ``key_id``."""
        ...

    def unwrap(self, key_id: str, wrapped: bytes, aad: bytes) -> bytes:
        """Unwrap; raises :class:`~ccai.errors.UnsealError` on any failure."""
        ...


def _aead(key: bytes, nonce_and_ct: bytes, aad: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(nonce_and_ct[:12], nonce_and_ct[12:], aad)
    except (InvalidTag, ValueError):
        raise UnsealError("a stored resource does not decrypt under the broker's master key") from None


def _seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


class FileKeyProvider:
    """The master key ring in a file (created on first use), or one key from ``CCAI_KBS_MASTER_KEY``."""

    def __init__(self, path: Path, *, environ: dict[str, str] | None = None) -> None:
        self.path = path
        env = os.environ if environ is None else environ
        self._fixed: bytes | None = None
        if env.get(MASTER_KEY_ENV):
            try:
                raw = base64.b64decode(env[MASTER_KEY_ENV], validate=True)
            except (binascii.Error, ValueError):
                raise UsageError(f"{MASTER_KEY_ENV} is not base64") from None
            if len(raw) != 32:
                raise UsageError(f"{MASTER_KEY_ENV} must hold 32 bytes", actual=len(raw))
            self._fixed = raw
        self._ring: dict[str, bytes] = {}
        self._current = ""
        self._load()

    def _load(self) -> None:
        if self._fixed is not None:
            kid = "env-" + hashlib.sha256(b"ccai kbs kid" + self._fixed).hexdigest()[:12]
            self._ring, self._current = {kid: self._fixed}, kid
            return
        if not self.path.exists():
            kid = secrets.token_hex(6)
            self._write({kid: os.urandom(32)}, kid)
        try:
            doc = json.loads(self.path.read_text())
            self._ring = {k: base64.b64decode(v) for k, v in doc["keys"].items()}
            self._current = str(doc["current"])
        except (OSError, ValueError, KeyError, TypeError, binascii.Error):
            raise UsageError(f"cannot read the broker master key ring {self.path}") from None
        if self._current not in self._ring or any(len(k) != 32 for k in self._ring.values()):
            raise UsageError(f"the broker master key ring {self.path} is inconsistent")

    def _write(self, ring: dict[str, bytes], current: str) -> None:
        doc = {
            "format": "kbs-master-keys/1",
            "current": current,
            "keys": {k: base64.b64encode(v).decode() for k, v in ring.items()},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, json.dumps(doc).encode(), mode=0o600)

    def current_id(self) -> str:
        """The current master key id."""
        return self._current

    def _key(self, key_id: str) -> bytes:
        if key_id not in self._ring:
            self._load()  # another process (a rotation) may have added it
        try:
            return self._ring[key_id]
        except KeyError:
            raise UnsealError("a stored resource names a master key this broker does not hold") from None

    def wrap(self, key_id: str, data_key: bytes, aad: bytes) -> bytes:
        """Wrap under ``key_id``."""
        return _seal(self._key(key_id), data_key, aad)

    def unwrap(self, key_id: str, wrapped: bytes, aad: bytes) -> bytes:
        """Unwrap from ``key_id``."""
        return _aead(self._key(key_id), wrapped, aad)

    def add_key(self) -> str:
        """Add a new master key and make it current (old keys stay until :meth:`retire`).

        Raises:
            UsageError: the key comes from the environment (rotate it outside ccai).
        """
        if self._fixed is not None:
            raise UsageError(f"the master key comes from {MASTER_KEY_ENV}: rotate it there")
        self._load()
        kid = secrets.token_hex(6)
        ring = {**self._ring, kid: os.urandom(32)}
        self._write(ring, kid)
        self._ring, self._current = ring, kid
        return kid

    def retire(self, keep: set[str]) -> None:
        """Drop every key not in ``keep`` (after all data keys are re-wrapped)."""
        if self._fixed is not None:
            return
        self._load()
        ring = {k: v for k, v in self._ring.items() if k in keep or k == self._current}
        self._write(ring, self._current)
        self._ring = ring


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """One sealed value: the master key id, the wrapped data key and the sealed value."""

    master_key_id: str
    wrapped_key: bytes
    ciphertext: bytes
    format: str = ENVELOPE_FORMAT


def _aad(name: str, version: int) -> bytes:
    return f"{ENVELOPE_FORMAT}\0{name}\0{version}".encode()


def seal_value(provider: KeyProvider, name: str, version: int, value: bytes) -> Envelope:
    """Seal ``value`` for resource ``name`` version ``version`` under a fresh data key."""
    data_key = AESGCM.generate_key(bit_length=256)
    kid = provider.current_id()
    aad = _aad(name, version)
    return Envelope(
        master_key_id=kid,
        wrapped_key=provider.wrap(kid, data_key, aad),
        ciphertext=_seal(data_key, value, aad),
    )


def open_value(provider: KeyProvider, name: str, version: int, envelope: Envelope) -> bytes:
    """Open what :func:`seal_value` sealed.

    Raises:
        UnsealError: wrong key, tampering, moved row or unknown format.
    """
    if envelope.format != ENVELOPE_FORMAT:
        raise UnsealError("unknown stored resource format")
    aad = _aad(name, version)
    data_key = provider.unwrap(envelope.master_key_id, envelope.wrapped_key, aad)
    return _aead(data_key, envelope.ciphertext, aad)


def rewrap(provider: KeyProvider, name: str, version: int, envelope: Envelope) -> Envelope:
    """The same data key and ciphertext, the data key wrapped under the current master key."""
    aad = _aad(name, version)
    data_key = provider.unwrap(envelope.master_key_id, envelope.wrapped_key, aad)
    kid = provider.current_id()
    return Envelope(
        master_key_id=kid, wrapped_key=provider.wrap(kid, data_key, aad), ciphertext=envelope.ciphertext
    )
