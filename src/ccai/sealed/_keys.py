"""Keys of a sealed model: the key-encryption key (KEK), the per-model data key, and the envelope.

A sealed model is encrypted under a random 256-bit **data key** made for that model alone. The
data key is stored in the sealed header only **wrapped** by a **KEK** that has a key id: AES-256-GCM
with a random 96-bit nonce and associated data that binds the format version, the model id and the
KEK id. A key broker therefore releases either the KEK or just the small data key, and the KEK
can be rotated (:func:`ccai.sealed.rewrap`) without touching the encrypted weights.

A KEK file is a JSON Web Key of type ``oct`` (RFC 7517 §4, RFC 7518 §6.4) with ``kid``, written
with mode 0600.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ccai._files import atomic_write
from ccai._json import load_json
from ccai._types import KeyId
from ccai.errors import UnsealError, UsageError

__all__ = [
    "DataKey",
    "Kek",
    "KeySource",
    "SealedKey",
    "kek_from_jwk",
    "kek_to_jwk",
    "new_kek",
    "read_kek",
    "resolve_key",
    "unwrap_data_key",
    "wrap_data_key",
    "write_kek",
]

_KEY_BYTES = 32
_NONCE_BYTES = 12


@dataclass(frozen=True, slots=True, kw_only=True)
class Kek:
    """A key-encryption key: 32 secret bytes and the id they are known by.

    Args:
        kid: Key id, stored next to the wrapped data key so the right KEK can be found.
        key: The 256-bit AES key.
    """

    kid: KeyId
    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.key) != _KEY_BYTES:
            raise UsageError(f"a KEK is {_KEY_BYTES} bytes, got {len(self.key)}")
        if not self.kid or len(self.kid) > 256:
            raise UsageError("a KEK needs a key id of 1 to 256 characters")


@dataclass(frozen=True, slots=True, kw_only=True)
class DataKey:
    """The per-model data key, as a key broker releases it after unwrapping.

    Args:
        key: The 256-bit data key.
    """

    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.key) != _KEY_BYTES:
            raise UsageError(f"a data key is {_KEY_BYTES} bytes, got {len(self.key)}")


@runtime_checkable
class KeySource(Protocol):
    """Where a KEK comes from when the caller does not hold it: a key broker that releases it only
    after attestation (:class:`ccai.kbs.BrokerKey`), a KMS … Accepted wherever a :class:`Kek` is.

    The sealed stage calls :meth:`kek` once per opened model and keeps the key only in memory for
    that call; the source decides how the key is obtained (and may refuse with any
    :class:`~ccai.errors.Error`).
    """

    def kek(self) -> Kek:
        """The KEK (fetched now)."""
        ...


#: What the sealed-model functions accept as the key: a KEK, the data key itself, or a KEK source.
SealedKey = Kek | DataKey | KeySource


def resolve_key(key: SealedKey) -> Kek | DataKey:
    """``key`` itself, or the KEK its :class:`KeySource` returns.

    Raises:
        UsageError: ``key`` is none of the accepted kinds, or the source returned no KEK.
        Error: whatever the source raises (e.g. a key broker's refusal).
    """
    if isinstance(key, Kek | DataKey):
        return key
    if isinstance(key, KeySource):
        kek = key.kek()
        if not isinstance(kek, Kek):
            raise UsageError("the key source did not return a KEK")
        return kek
    raise UsageError("a sealed model's key is a Kek, a DataKey or a KeySource")


def new_kek(*, kid: str | None = None) -> Kek:
    """Generate a fresh random KEK.

    Args:
        kid: Key id; default ``kek-`` followed by 16 random hex digits.

    Returns:
        The new KEK.
    """
    return Kek(kid=KeyId(kid or f"kek-{secrets.token_hex(8)}"), key=secrets.token_bytes(_KEY_BYTES))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def write_kek(kek: Kek, path: Path, *, overwrite: bool = False) -> None:
    """Write ``kek`` as an ``oct`` JWK file readable only by its owner (mode 0600, whatever the umask).

    The file appears complete or not at all (:func:`ccai._files.atomic_write`); a symlink at
    ``path`` is never written through.

    Args:
        kek: The key to write.
        path: Destination file.
        overwrite: Replace an existing file (refused by default: losing a KEK loses the models).

    Raises:
        UsageError: the file exists (without ``overwrite``) or cannot be written.
    """
    data = kek_to_jwk(kek)
    try:
        atomic_write(path, data, mode=0o600, replace=overwrite)
    except FileExistsError:
        raise UsageError(f"key file exists: {path}", hint="choose another path") from None
    except OSError as exc:
        raise UsageError(f"cannot write key file {path}: {exc.strerror}") from None


def read_kek(path: Path) -> Kek:
    """Read a KEK file written by :func:`write_kek` (an ``oct`` JWK with ``kid``).

    Args:
        path: The key file.

    Returns:
        The KEK.

    Raises:
        UsageError: the file is missing, unreadable or not a 256-bit ``oct`` JWK with a ``kid``.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"key file not found: {path}") from None
    except OSError as exc:
        raise UsageError(f"cannot read key file {path}: {exc}") from None
    return kek_from_jwk(data, what=str(path))


def kek_to_jwk(kek: Kek) -> bytes:
    """The KEK as the ``oct`` JWK bytes of a key file (what a key broker stores as the resource)."""
    doc = {"kty": "oct", "kid": kek.kid, "alg": "A256GCMKW", "use": "enc", "k": _b64url(kek.key)}
    return (json.dumps(doc, indent=2) + "\n").encode()


def kek_from_jwk(data: bytes, *, what: str = "KEK") -> Kek:
    """Parse :func:`kek_to_jwk` bytes (a key file's content, or a resource a key broker released).

    Raises:
        UsageError: not a 256-bit ``oct`` JWK with a ``kid`` (the message names ``what``, never the key).
    """
    doc = load_json(data, what=f"key file {what}", error=UsageError)
    if not isinstance(doc, dict) or doc.get("kty") != "oct":
        raise UsageError(f"{what} is not an oct JWK key file")
    kid, k = doc.get("kid"), doc.get("k")
    if not isinstance(kid, str) or not isinstance(k, str):
        raise UsageError(f"{what}: key file needs string 'kid' and 'k'")
    try:
        key = base64.urlsafe_b64decode(k + "=" * (-len(k) % 4))
    except (binascii.Error, ValueError):
        raise UsageError(f"{what}: 'k' is not base64url") from None
    return Kek(kid=KeyId(kid), key=key)


def _wrap_aad(prefix: bytes, kid: str) -> bytes:
    # prefix = MAGIC || version || model_id (see _format.header_binding); the kid is bound so that
    # a header cannot be edited to name another KEK without the unwrap failing.
    return prefix + b"data-key" + kid.encode()


def wrap_data_key(data_key: DataKey, kek: Kek, *, binding: bytes) -> tuple[bytes, bytes]:
    """Wrap ``data_key`` under ``kek`` with AES-256-GCM.

    Args:
        data_key: The key to wrap.
        kek: The wrapping key.
        binding: The header binding (magic, version, model id) the wrapped key is tied to.

    Returns:
        ``(nonce, wrapped)``: a fresh random 12-byte nonce and the 48-byte ciphertext with tag.
    """
    nonce = secrets.token_bytes(_NONCE_BYTES)
    wrapped = AESGCM(kek.key).encrypt(nonce, data_key.key, _wrap_aad(binding, kek.kid))
    return nonce, wrapped


def unwrap_data_key(nonce: bytes, wrapped: bytes, kek: Kek, *, binding: bytes) -> DataKey:
    """Unwrap a data key wrapped by :func:`wrap_data_key`.

    Args:
        nonce: The wrap nonce from the header.
        wrapped: The wrapped key from the header.
        kek: The KEK named in the header.
        binding: The header binding (magic, version, model id).

    Returns:
        The data key.

    Raises:
        UnsealError: wrong KEK, or the header was altered.
    """
    try:
        key = AESGCM(kek.key).decrypt(nonce, wrapped, _wrap_aad(binding, kek.kid))
    except (InvalidTag, ValueError):
        raise UnsealError() from None
    if len(key) != _KEY_BYTES:
        raise UnsealError()
    return DataKey(key=key)
