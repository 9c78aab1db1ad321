"""The sealed-model format, version 1 (specified in ``docs/sealed-models.md``).

Layout of a sealed model directory::

    SEALED/
      ccai-sealed.json     public header: format, version, model id, chunk size, wrapped data key
      manifest.bin         the manifest (JSON), AES-256-GCM under the manifest key
      data/000000.bin      file 0 of the model, encrypted in fixed-size chunks
      data/000001.bin      file 1 …

Keys (HKDF-SHA256, RFC 5869, salt = the 16-byte random model id):

* ``content_key  = HKDF(data_key, salt=model_id, info="ccai-sealed/1 chunks")``
* ``manifest_key = HKDF(data_key, salt=model_id, info="ccai-sealed/1 manifest")``

Chunk ``i`` of file ``f`` holds plaintext bytes ``[i*C, min((i+1)*C, size))`` and is stored at
offset ``i*(C+16)`` of ``data/f.bin`` as ciphertext followed by its 16-byte tag. Its nonce is
``u32be(f) || u64be(i)`` — unique under the content key, which is itself unique to one sealing.
Its associated data is the 82-byte string::

    MAGIC (12) || u16be(version) || model_id (16) || u32be(f) || SHA-256(file name) (32)
               || u64be(i) || u64be(chunk_count)

so a chunk cannot move to another position, file, model or format version, and a file cannot be
cut short at a chunk boundary (every chunk commits to the count).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ccai._binary import Reader
from ccai._json import load_json
from ccai.errors import MalformedEvidence, UnsealError

__all__ = [
    "DATA_DIR",
    "FORMAT",
    "HEADER_NAME",
    "MAGIC",
    "MANIFEST_NAME",
    "TAG_BYTES",
    "VERSION",
    "FileEntry",
    "Header",
    "Manifest",
    "SafetensorsInfo",
    "TensorEntry",
    "chunk_aad_prefix",
    "chunk_count",
    "chunk_nonce",
    "data_file_name",
    "derive_keys",
    "header_binding",
    "parse_safetensors_header",
]

FORMAT = "ccai-sealed"
VERSION = 1
MAGIC = b"ccai-sealed\x00"  # 12 bytes
HEADER_NAME = "ccai-sealed.json"
MANIFEST_NAME = "manifest.bin"
DATA_DIR = "data"
TAG_BYTES = 16
MIN_CHUNK = 4096
MAX_CHUNK = 1 << 30
_U16BE = struct.Struct(">H")
_U32BE = struct.Struct(">I")
_U64BE = struct.Struct(">Q")
_HEX32 = re.compile(r"^[0-9a-f]{32}$")

#: safetensors dtype names and their element sizes in bytes (safetensors ``Dtype``).
DTYPE_SIZES: Mapping[str, int] = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "F8_E8M0": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}


def data_file_name(index: int) -> str:
    """Relative path of the encrypted data of file ``index`` (names never reveal the plaintext name)."""
    return f"{DATA_DIR}/{index:06d}.bin"


def chunk_count(size: int, chunk_size: int) -> int:
    """Number of chunks of a file of ``size`` bytes; an empty file still has one (empty) chunk."""
    return max(1, math.ceil(size / chunk_size))


def header_binding(model_id: bytes) -> bytes:
    """``MAGIC || u16be(version) || model_id``: the prefix every associated data starts with."""
    return MAGIC + _U16BE.pack(VERSION) + model_id


def chunk_aad_prefix(model_id: bytes, file_index: int, name: str) -> bytes:
    """The per-file part of a chunk's associated data (append ``u64be(i) || u64be(count)``)."""
    return header_binding(model_id) + _U32BE.pack(file_index) + hashlib.sha256(name.encode("utf-8")).digest()


def chunk_nonce(file_index: int, chunk_index: int) -> bytes:
    """The 96-bit nonce of a chunk: ``u32be(file_index) || u64be(chunk_index)``."""
    return _U32BE.pack(file_index) + _U64BE.pack(chunk_index)


def chunk_aad(prefix: bytes, chunk_index: int, count: int) -> bytes:
    """Full associated data of one chunk."""
    return prefix + _U64BE.pack(chunk_index) + _U64BE.pack(count)


def manifest_aad(model_id: bytes, chunk_size: int) -> bytes:
    """Associated data of the manifest: the immutable header fields."""
    return header_binding(model_id) + _U64BE.pack(chunk_size) + b"manifest"


def derive_keys(data_key: bytes, model_id: bytes) -> tuple[bytes, bytes]:
    """``(content_key, manifest_key)`` derived from the data key with HKDF-SHA256, salt = model id."""
    out = []
    for label in (b"ccai-sealed/1 chunks", b"ccai-sealed/1 manifest"):
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=model_id, info=label)
        out.append(hkdf.derive(data_key))
    return out[0], out[1]


# -- header ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Header:
    """The public header ``ccai-sealed.json``: what can be known about a sealed model without a key.

    Args:
        model_id: 16 random bytes chosen at sealing; bound into every chunk and the manifest.
        chunk_size: Plaintext bytes per chunk.
        kid: Id of the KEK that wraps the data key.
        wrap_nonce: Nonce of the data-key wrap.
        wrapped_key: The wrapped data key (ciphertext and tag).
        manifest_nonce: Nonce of the manifest encryption.
    """

    model_id: bytes
    chunk_size: int
    kid: str
    wrap_nonce: bytes
    wrapped_key: bytes
    manifest_nonce: bytes

    def to_json(self) -> bytes:
        """Serialise as the header file's bytes."""
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "model_id": self.model_id.hex(),
            "cipher": "AES-256-GCM",
            "chunk_size": self.chunk_size,
            "manifest_nonce": self.manifest_nonce.hex(),
            "key": {
                "kid": self.kid,
                "alg": "A256GCMKW",
                "nonce": self.wrap_nonce.hex(),
                "wrapped": self.wrapped_key.hex(),
            },
        }
        return (json.dumps(doc, indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> Header:
        """Parse a header file.

        Raises:
            UnsealError: not a version-1 ccai sealed header (deliberately opaque, like every unseal failure).
        """
        try:
            doc = load_json(data, what="sealed header")
            key = doc["key"]
            if doc["format"] != FORMAT or doc["version"] != VERSION or doc["cipher"] != "AES-256-GCM":
                raise UnsealError()
            if key["alg"] != "A256GCMKW" or not _HEX32.match(doc["model_id"]):
                raise UnsealError()
            chunk_size = doc["chunk_size"]
            if not isinstance(chunk_size, int) or not MIN_CHUNK <= chunk_size <= MAX_CHUNK:
                raise UnsealError()
            header = cls(
                model_id=bytes.fromhex(doc["model_id"]),
                chunk_size=chunk_size,
                kid=str(key["kid"]),
                wrap_nonce=bytes.fromhex(key["nonce"]),
                wrapped_key=bytes.fromhex(key["wrapped"]),
                manifest_nonce=bytes.fromhex(doc["manifest_nonce"]),
            )
        except (ValueError, KeyError, TypeError, MalformedEvidence):
            raise UnsealError() from None
        if len(header.wrap_nonce) != 12 or len(header.manifest_nonce) != 12:
            raise UnsealError()
        return header


# -- manifest --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TensorEntry:
    """One tensor of a safetensors file.

    Args:
        name: Tensor name.
        dtype: safetensors dtype name (``BF16``, ``F8_E4M3``, …).
        shape: Tensor shape.
        offset: Absolute byte offset of the tensor's data within the plaintext file.
        size: Size of the tensor's data in bytes.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SafetensorsInfo:
    """What the manifest records of a safetensors file.

    Args:
        header_size: Bytes before the tensor data (8-byte length plus the JSON header).
        metadata: The ``__metadata__`` string map, if any.
        tensors: The tensors, in file order.
    """

    header_size: int
    metadata: Mapping[str, str] | None
    tensors: tuple[TensorEntry, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FileEntry:
    """One file of the sealed model.

    Args:
        index: Position in the manifest; names the data file and is bound into its chunks.
        name: Relative path in the model directory (``/``-separated).
        size: Plaintext size in bytes.
        sha256: SHA-256 of the plaintext file.
        chunks: Number of chunks.
        safetensors: Tensor table when the file is a safetensors file.
    """

    index: int
    name: str
    size: int
    sha256: bytes
    chunks: int
    safetensors: SafetensorsInfo | None

    @property
    def ciphertext_size(self) -> int:
        """Size of ``data/<index>.bin``."""
        return self.size + TAG_BYTES * self.chunks


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """The decrypted manifest: the model's files, sizes, digests and tensor tables.

    Args:
        model_id: The model id (equal to the header's).
        chunk_size: Plaintext bytes per chunk (equal to the header's).
        files: The files, by index.
    """

    model_id: bytes
    chunk_size: int
    files: tuple[FileEntry, ...]

    @property
    def total_size(self) -> int:
        """Sum of plaintext file sizes."""
        return sum(f.size for f in self.files)

    def file(self, name: str) -> FileEntry:
        """The entry named ``name``.

        Raises:
            KeyError: no such file.
        """
        for entry in self.files:
            if entry.name == name:
                return entry
        raise KeyError(name)

    def to_json(self) -> bytes:
        """Serialise (the plaintext that gets encrypted into ``manifest.bin``)."""
        files: list[dict[str, Any]] = []
        for f in self.files:
            item: dict[str, Any] = {
                "index": f.index,
                "name": f.name,
                "size": f.size,
                "sha256": f.sha256.hex(),
                "chunks": f.chunks,
            }
            if f.safetensors is not None:
                item["safetensors"] = {
                    "header_size": f.safetensors.header_size,
                    "metadata": dict(f.safetensors.metadata) if f.safetensors.metadata is not None else None,
                    "tensors": [
                        {
                            "name": t.name,
                            "dtype": t.dtype,
                            "shape": list(t.shape),
                            "offset": t.offset,
                            "size": t.size,
                        }
                        for t in f.safetensors.tensors
                    ],
                }
            files.append(item)
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "model_id": self.model_id.hex(),
            "chunk_size": self.chunk_size,
            "files": files,
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes, *, header: Header) -> Manifest:
        """Parse a decrypted manifest and check it against ``header``.

        Raises:
            UnsealError: malformed, or inconsistent with the header.
        """
        try:
            doc = load_json(data, what="manifest")
            if doc["format"] != FORMAT or doc["version"] != VERSION:
                raise UnsealError()
            if bytes.fromhex(doc["model_id"]) != header.model_id or doc["chunk_size"] != header.chunk_size:
                raise UnsealError()
            files = []
            for i, item in enumerate(doc["files"]):
                st = item.get("safetensors")
                info = None
                if st is not None:
                    tensors = tuple(
                        TensorEntry(
                            name=str(t["name"]),
                            dtype=str(t["dtype"]),
                            shape=tuple(int(d) for d in t["shape"]),
                            offset=int(t["offset"]),
                            size=int(t["size"]),
                        )
                        for t in st["tensors"]
                    )
                    meta = st.get("metadata")
                    info = SafetensorsInfo(
                        header_size=int(st["header_size"]),
                        metadata={str(k): str(v) for k, v in meta.items()} if meta is not None else None,
                        tensors=tensors,
                    )
                entry = FileEntry(
                    index=int(item["index"]),
                    name=str(item["name"]),
                    size=int(item["size"]),
                    sha256=bytes.fromhex(item["sha256"]),
                    chunks=int(item["chunks"]),
                    safetensors=info,
                )
                if entry.index != i or entry.chunks != chunk_count(entry.size, header.chunk_size):
                    raise UnsealError()
                if info is not None and any(
                    t.offset < 0 or t.offset + t.size > entry.size for t in info.tensors
                ):
                    raise UnsealError()
                files.append(entry)
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError, MalformedEvidence):
            # OverflowError: int() of a JSON number that decodes to infinity (1e999).
            raise UnsealError() from None
        return cls(model_id=header.model_id, chunk_size=header.chunk_size, files=tuple(files))


# -- safetensors -----------------------------------------------------------------------------


def parse_safetensors_header(prefix: bytes, *, file_size: int, what: str) -> SafetensorsInfo:
    """Parse the header of a safetensors file (8-byte little-endian length, then JSON).

    Args:
        prefix: The first ``8 + header length`` bytes of the file (more is fine).
        file_size: Size of the whole file, to check the data offsets.
        what: The file's name, for error messages.

    Returns:
        The tensor table with absolute offsets.

    Raises:
        MalformedEvidence: not a well-formed safetensors header.
    """
    reader = Reader(prefix, what=f"safetensors header of {what}")
    n = reader.u64le("header length")
    raw = reader.take(n, "header JSON")
    doc = load_json(raw, what=f"{what}: safetensors header")
    if not isinstance(doc, dict):
        raise MalformedEvidence(f"{what}: safetensors header is not a JSON object")
    base = 8 + n
    meta = doc.pop("__metadata__", None)
    tensors = []
    for name, spec in doc.items():
        try:
            dtype = str(spec["dtype"])
            shape = tuple(int(d) for d in spec["shape"])
            begin, end = (int(x) for x in spec["data_offsets"])
        except (KeyError, TypeError, ValueError, OverflowError):
            raise MalformedEvidence(f"{what}: bad entry for tensor {name!r}") from None
        if dtype not in DTYPE_SIZES:
            raise MalformedEvidence(f"{what}: tensor {name!r} has unsupported dtype {dtype}")
        expected = math.prod(shape) * DTYPE_SIZES[dtype]
        if begin < 0 or end - begin != expected or base + end > file_size:
            raise MalformedEvidence(f"{what}: tensor {name!r} has inconsistent offsets")
        tensors.append(
            TensorEntry(name=name, dtype=dtype, shape=shape, offset=base + begin, size=end - begin)
        )
    tensors.sort(key=lambda t: t.offset)
    metadata = {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else None
    return SafetensorsInfo(header_size=base, metadata=metadata, tensors=tuple(tensors))
