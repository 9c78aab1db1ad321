"""Opening a sealed model: header, key resolution, manifest decryption, data-file mapping."""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ccai.errors import UnsealError, UsageError
from ccai.sealed._format import (
    HEADER_NAME,
    MANIFEST_NAME,
    TAG_BYTES,
    FileEntry,
    Header,
    Manifest,
    chunk_aad,
    chunk_aad_prefix,
    chunk_nonce,
    data_file_name,
    derive_keys,
    header_binding,
    manifest_aad,
)
from ccai.sealed._keys import DataKey, Kek, SealedKey, resolve_key, unwrap_data_key

__all__ = ["OpenedModel", "default_threads", "open_model", "read_header", "resolve_data_key"]


def default_threads() -> int:
    """Default worker count: the usable CPU cores, at most 16."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(16, cores))


def read_header(sealed: Path) -> Header:
    """Read the public header of a sealed model (no key needed).

    Args:
        sealed: The sealed model directory.

    Returns:
        The header.

    Raises:
        UsageError: ``sealed`` is not a directory or has no header file.
        UnsealError: the header is not a valid version-1 header.
    """
    sealed = Path(sealed)
    if not sealed.is_dir():
        raise UsageError(f"sealed model not found (expected a directory): {sealed}")
    try:
        data = (sealed / HEADER_NAME).read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{sealed} is not a sealed model: {HEADER_NAME} is missing") from None
    return Header.from_json(data)


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenedModel:
    """A sealed model whose manifest has been decrypted and authenticated.

    Args:
        path: The sealed directory.
        header: Its public header.
        manifest: Its decrypted manifest.
        content_key: The chunk key (secret; never printed).
    """

    path: Path
    header: Header
    manifest: Manifest
    content_key: bytes = field(repr=False)

    def chunk_span(self, entry: FileEntry, index: int) -> tuple[int, int, int]:
        """``(plaintext_offset, plaintext_length, ciphertext_offset)`` of chunk ``index`` of ``entry``."""
        size = self.header.chunk_size
        start = index * size
        return start, min(size, entry.size - start), index * (size + TAG_BYTES)

    def aad_prefix(self, entry: FileEntry) -> bytes:
        """Per-file associated-data prefix."""
        return chunk_aad_prefix(self.header.model_id, entry.index, entry.name)

    def map_data(self, entry: FileEntry) -> mmap.mmap:
        """Memory-map ``entry``'s ciphertext after checking its exact size (never empty: one tag at least).

        Raises:
            UnsealError: the data file is missing or has the wrong size (truncated, extended).
        """
        path = self.path / data_file_name(entry.index)
        try:
            with path.open("rb") as fh:
                if os.fstat(fh.fileno()).st_size != entry.ciphertext_size:
                    raise UnsealError()
                return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError:
            raise UnsealError() from None

    def decrypt_file(self, entry: FileEntry) -> bytes:
        """Decrypt one (small) file fully in memory, checking its SHA-256.

        Raises:
            UnsealError: any chunk fails to authenticate, or the digest differs.
        """
        import hashlib
        import hmac

        aead = AESGCM(self.content_key)
        out = bytearray(entry.size)
        prefix = self.aad_prefix(entry)
        mm = self.map_data(entry)
        try:
            for i in range(entry.chunks):
                start, n, cstart = self.chunk_span(entry, i)
                with (
                    memoryview(mm)[cstart : cstart + n + TAG_BYTES] as src,
                    memoryview(out)[start : start + n] as dst,
                ):
                    aead.decrypt_into(
                        chunk_nonce(entry.index, i), src, chunk_aad(prefix, i, entry.chunks), dst
                    )
        except (InvalidTag, ValueError):
            raise UnsealError() from None
        finally:
            mm.close()
        if not hmac.compare_digest(hashlib.sha256(out).digest(), entry.sha256):
            raise UnsealError()
        return bytes(out)


def resolve_data_key(header: Header, key: Kek | DataKey) -> DataKey:
    """The data key: ``key`` itself, or unwrapped from the header with the KEK ``key``.

    Raises:
        UnsealError: wrong KEK (including a KEK with another key id) or altered header.
    """
    if isinstance(key, DataKey):
        return key
    if key.kid != header.kid:
        raise UnsealError(f"sealed model key is wrapped by KEK {header.kid!r}, not by {key.kid!r}")
    return unwrap_data_key(
        header.wrap_nonce, header.wrapped_key, key, binding=header_binding(header.model_id)
    )


def open_model(sealed: Path, key: SealedKey) -> OpenedModel:
    """Read the header, resolve the data key and decrypt the manifest.

    Args:
        sealed: The sealed model directory.
        key: The KEK that wraps the model's data key, the data key itself, or a
            :class:`~ccai.sealed.KeySource` (asked once, after the header is read).

    Returns:
        The opened model.

    Raises:
        UsageError: not a sealed model directory.
        UnsealError: wrong key, or the header or manifest was altered.
    """
    sealed = Path(sealed)
    header = read_header(sealed)
    data_key = resolve_data_key(header, resolve_key(key))
    content_key, manifest_key = derive_keys(data_key.key, header.model_id)
    try:
        blob = (sealed / MANIFEST_NAME).read_bytes()
        plain = AESGCM(manifest_key).decrypt(
            header.manifest_nonce, blob, manifest_aad(header.model_id, header.chunk_size)
        )
    except (OSError, InvalidTag, ValueError):
        raise UnsealError() from None
    manifest = Manifest.from_json(plain, header=header)
    return OpenedModel(path=sealed, header=header, manifest=manifest, content_key=content_key)
