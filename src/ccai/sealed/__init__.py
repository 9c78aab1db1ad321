"""Sealed models: weights encrypted at rest, decrypted in a pipeline straight into device memory.

A sealed model is a directory holding every file of a model directory (weights, config,
tokenizer) in fixed-size AES-256-GCM chunks, an encrypted and authenticated manifest, and a data
key wrapped by a key-encryption key (envelope). The format is specified in
``docs/sealed-models.md``.

* :func:`seal` / :func:`unseal_to_directory` / :func:`rewrap` work without torch.
* :func:`load_into` decrypts the weights on N threads into pinned buffers and copies them to the
  GPU asynchronously; :func:`load_model` builds a transformers model from the sealed form.
* Wherever a KEK is accepted, a :class:`KeySource` is too: the KEK is then fetched when the model
  is opened (``ccai.kbs.BrokerKey`` fetches it from a key broker through attestation, so the
  plaintext key exists only inside the attested VM). ``sealed`` does not import ``kbs``.
* Every failure to decrypt — wrong key, tampering, truncation — raises one opaque
  :class:`~ccai.errors.UnsealError`, and nothing partial is returned.
"""

from ccai.sealed._container import read_header
from ccai.sealed._format import FileEntry, Header, Manifest, SafetensorsInfo, TensorEntry
from ccai.sealed._keys import (
    DataKey,
    Kek,
    KeySource,
    SealedKey,
    kek_from_jwk,
    kek_to_jwk,
    new_kek,
    read_kek,
    resolve_key,
    write_kek,
)
from ccai.sealed._pipeline import load_into, load_plaintext
from ccai.sealed._seal import (
    DEFAULT_CHUNK_SIZE,
    is_ram_backed,
    read_file,
    read_manifest,
    rewrap,
    seal,
    unseal_to_directory,
    unwrap_key,
)
from ccai.sealed._transformers import load_model, load_tokenizer

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DataKey",
    "FileEntry",
    "Header",
    "Kek",
    "KeySource",
    "Manifest",
    "SafetensorsInfo",
    "SealedKey",
    "TensorEntry",
    "is_ram_backed",
    "kek_from_jwk",
    "kek_to_jwk",
    "load_into",
    "load_model",
    "load_plaintext",
    "load_tokenizer",
    "new_kek",
    "read_file",
    "read_header",
    "read_kek",
    "read_manifest",
    "resolve_key",
    "rewrap",
    "seal",
    "unseal_to_directory",
    "unwrap_key",
    "write_kek",
]
