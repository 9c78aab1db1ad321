"""Token-signing keys at rest (envelope encryption) and the key ring a replica signs with.

Envelope format ``ccai-envelope/1`` (JSON): a fresh 256-bit data key encrypts the PKCS#8 private key
with AES-256-GCM; the master key (key-encryption key) wraps the data key with AES-256-GCM. Both
encryptions bind the format name and the key's ``kid`` as associated data, so a blob cannot be
moved to another row. The master key comes from ``CCAI_MASTER_KEY`` (base64 of 32 bytes) or a
0600 file (default ``$CCAI_HOME/attestation-master.key``, created when absent). Every failure to
open a blob is one opaque error.

Rotation: the newest unretired key of each kind (production, development) signs; the JWKS
publishes the newest two (current and previous); older keys are retired by ``rotate``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

from ccai._files import atomic_write, private_dir
from ccai._time import utcnow
from ccai.errors import UsageError
from ccai.service._repository import Repository, StoredKey
from ccai.token import TokenSigner, public_jwk

__all__ = ["ENVELOPE_FORMAT", "KeyRing", "MasterKey", "load_master_key", "new_stored_key", "rotate"]

ENVELOPE_FORMAT = "ccai-envelope/1"
MASTER_KEY_ENV = "CCAI_MASTER_KEY"
_KEY_BYTES = 32


class MasterKey:
    """The key-encryption key. Args: key: 32 random bytes."""

    def __init__(self, key: bytes) -> None:
        if len(key) != _KEY_BYTES:
            raise UsageError("the attestation master key must be 32 bytes")
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(b"ccai master key id\x00" + key).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"MasterKey(id={self.key_id})"

    def seal(self, plaintext: bytes, *, kid: str) -> str:
        """Encrypt ``plaintext`` under a fresh data key; returns the envelope JSON."""
        aad = f"{ENVELOPE_FORMAT}\x00{kid}".encode()
        dek = AESGCM.generate_key(bit_length=256)
        n1, n2 = os.urandom(12), os.urandom(12)
        wrapped = n1 + self._aead.encrypt(n1, dek, aad)
        body = n2 + AESGCM(dek).encrypt(n2, plaintext, aad)
        return json.dumps(
            {
                "format": ENVELOPE_FORMAT,
                "kek_id": self.key_id,
                "wrapped_key": base64.b64encode(wrapped).decode(),
                "ciphertext": base64.b64encode(body).decode(),
            }
        )

    def open(self, envelope: str, *, kid: str) -> bytes:
        """Decrypt an envelope.

        Raises:
            UsageError: one opaque message for every failure (wrong master key, tampering, format).
        """
        try:
            doc = json.loads(envelope)
            if doc.get("format") != ENVELOPE_FORMAT:
                raise ValueError
            aad = f"{ENVELOPE_FORMAT}\x00{kid}".encode()
            wrapped = base64.b64decode(doc["wrapped_key"], validate=True)
            body = base64.b64decode(doc["ciphertext"], validate=True)
            dek = self._aead.decrypt(wrapped[:12], wrapped[12:], aad)
            return AESGCM(dek).decrypt(body[:12], body[12:], aad)
        except (ValueError, KeyError, TypeError, InvalidTag, binascii.Error, AttributeError):
            raise UsageError(
                f"signing key {kid} cannot be decrypted with this master key",
                hint=f"set {MASTER_KEY_ENV} or the master key file to the key the database was created with",
            ) from None


def load_master_key(path: Path) -> MasterKey:
    """The master key from ``CCAI_MASTER_KEY`` or ``path`` (created, mode 0600, when absent).

    Raises:
        UsageError: the variable or file does not hold 32 bytes.
    """
    env = os.environ.get(MASTER_KEY_ENV)
    if env:
        try:
            return MasterKey(base64.b64decode(env, validate=True))
        except (binascii.Error, ValueError):
            raise UsageError(f"{MASTER_KEY_ENV} must be base64 of 32 bytes") from None
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        private_dir(path.parent)
        with contextlib.suppress(FileExistsError):  # another process created it first: use theirs
            atomic_write(
                path, base64.b64encode(secrets.token_bytes(_KEY_BYTES)) + b"\n", mode=0o600, replace=False
            )
        raw = path.read_bytes()
    try:
        return MasterKey(base64.b64decode(raw.strip(), validate=True))
    except (binascii.Error, ValueError):
        raise UsageError(f"the master key file {path} must hold base64 of 32 bytes") from None


def _self_signed(signer: TokenSigner, now: datetime) -> str:
    """A self-signed certificate over the signing key (NVIDIA's SDK reads the key from ``x5c[0]``)."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "ccai attestation token key"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, signer.kid[:64]),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(signer.public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(signer.private_key, hashes.SHA384())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def new_stored_key(master: MasterKey, *, development: bool, now: datetime) -> StoredKey:
    """Generate a P-384 signing key and its certificate, sealed for storage."""
    signer = TokenSigner.generate(development=development)
    return StoredKey(
        kid=signer.kid,
        development=development,
        created_at=now,
        retired_at=None,
        certificate_pem=_self_signed(signer, now),
        encrypted_private_key=master.seal(signer.private_pem(), kid=signer.kid),
    )


async def rotate(repo: Repository, master: MasterKey, *, development: bool = False) -> str:
    """Make a new current key; the old current becomes previous, older keys are retired.

    Returns:
        The new key's ``kid``.
    """
    now = utcnow()
    key = new_stored_key(master, development=development, now=now)
    await repo.add_key(key)
    keep = [k.kid for k in await repo.active_keys(development=development, limit=2)]
    await repo.retire_keys_except(keep, development=development, now=now)
    return key.kid


@dataclass(frozen=True, slots=True)
class _Loaded:
    signers: tuple[TokenSigner, ...]  # newest first
    certificates: dict[str, str]


class KeyRing:
    """The signing keys one replica uses: re-read from the database every ``refresh`` seconds.

    Args:
        repo: The repository.
        master: The master key that opens the stored keys.
        refresh: Seconds between re-reads (rotation elsewhere becomes visible within it).
    """

    def __init__(self, repo: Repository, master: MasterKey, *, refresh: float) -> None:
        self._repo = repo
        self._master = master
        self._refresh = refresh
        self._lock = threading.Lock()
        self._production = _Loaded((), {})
        self._development = _Loaded((), {})
        self._loaded_at = 0.0

    async def start(self) -> None:
        """Load the keys, creating the first production and development keys when there are none.

        Raises:
            UsageError: a stored key cannot be decrypted (wrong master key).
        """
        for development in (False, True):
            if not await self._repo.active_keys(development=development, limit=1):
                await self._repo.add_key(new_stored_key(self._master, development=development, now=utcnow()))
        await self.reload()

    async def reload(self) -> None:
        """Re-read the current and previous keys of both kinds."""
        loaded = []
        for development in (False, True):
            stored = await self._repo.active_keys(development=development, limit=2)
            signers = tuple(
                TokenSigner.from_pem(
                    self._master.open(k.encrypted_private_key, kid=k.kid), kid=k.kid, development=development
                )
                for k in stored
            )
            loaded.append(_Loaded(signers, {k.kid: k.certificate_pem for k in stored}))
        with self._lock:
            self._production, self._development = loaded
            self._loaded_at = time.monotonic()

    async def maybe_reload(self) -> None:
        """Reload when the last read is older than the refresh interval."""
        if time.monotonic() - self._loaded_at >= self._refresh:
            await self.reload()

    @property
    def signer(self) -> TokenSigner:
        """The current production key."""
        return self._production.signers[0]

    @property
    def development_signer(self) -> TokenSigner:
        """The current development key (tokens of simulated evidence only)."""
        return self._development.signers[0]

    def jwks(self) -> dict[str, Any]:
        """The JWKS: current and previous keys of both kinds, each with ``x5c``."""
        keys: list[dict[str, Any]] = []
        for loaded in (self._production, self._development):
            for signer in loaded.signers:
                jwk = public_jwk(signer.public_key, kid=signer.kid)
                cert = x509.load_pem_x509_certificate(loaded.certificates[signer.kid].encode())
                jwk["x5c"] = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
                keys.append(jwk)
        return {"keys": keys}
