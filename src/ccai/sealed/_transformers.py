"""transformers integration: a model and its tokenizer built from the sealed form.

The configuration comes from the sealed ``config.json`` (decrypted in memory), the weights from
:func:`~ccai.sealed.load_into`; no plaintext file is written for either. Tokenizers load only
from a directory, so :func:`load_tokenizer` decrypts the tokenizer files into a private
directory on a RAM-backed file system and removes it as soon as the tokenizer is built.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ccai._files import open_private_exclusive
from ccai._json import load_json
from ccai.errors import MalformedEvidence, UnsealError, UsageError
from ccai.sealed._container import OpenedModel, open_model
from ccai.sealed._keys import SealedKey, resolve_key
from ccai.sealed._pipeline import load_into
from ccai.sealed._seal import is_ram_backed

if TYPE_CHECKING:
    import torch

__all__ = ["load_model", "load_tokenizer"]

_RAM_DIRS = ("/dev/shm", "/run/user/{uid}")  # noqa: S108 - checked to be tmpfs before use
_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".gguf", ".safetensors", ".h5", ".msgpack")


def _json_file(model: OpenedModel, name: str) -> dict[str, Any] | None:
    try:
        entry = model.manifest.file(name)
    except KeyError:
        return None
    try:
        doc = load_json(model.decrypt_file(entry), what=name)
    except MalformedEvidence:
        raise UnsealError() from None
    if not isinstance(doc, dict):
        raise UnsealError()
    return doc


def load_model(
    sealed: Path,
    key: SealedKey,
    *,
    device: str | torch.device = "cuda",
    dtype: torch.dtype | None = None,
    threads: int | None = None,
    auto_class: str = "AutoModelForCausalLM",
) -> Any:
    """Build a transformers model from a sealed model directory.

    Args:
        sealed: The sealed model directory (sealed from a transformers model directory).
        key: The KEK that wraps the model's data key, the data key itself, or a
            :class:`~ccai.sealed.KeySource` such as ``ccai.kbs.BrokerKey`` (asked once: the KEK is
            fetched through attestation and exists only in this process).
        device: Where the weights go (``"cuda"``, ``"cuda:N"``, ``"cpu"``).
        dtype: Model dtype; default: the dtype of the sealed weights.
        threads: Decrypting workers for :func:`~ccai.sealed.load_into`.
        auto_class: The transformers auto class to instantiate (``AutoModelForCausalLM`` by default).

    Returns:
        The model in eval mode, its weights on ``device``.

    Raises:
        UsageError: the sealed model has no ``config.json``, or an unknown ``auto_class``.
        UnsealError: wrong key or tampering.
    """
    import transformers
    from transformers import AutoConfig, GenerationConfig

    key = resolve_key(key)  # once: the manifest and the weights are opened with the same key
    model = open_model(Path(sealed), key)
    config_doc = _json_file(model, "config.json")
    if config_doc is None:
        raise UsageError("the sealed model has no config.json: not a transformers model directory")
    model_type = config_doc.pop("model_type", None)
    if not isinstance(model_type, str):
        raise UsageError("the sealed config.json has no model_type")
    config = AutoConfig.for_model(model_type, **config_doc)
    auto = getattr(transformers, auto_class, None)
    mapping = getattr(auto, "_model_mapping", None)
    if mapping is None:
        raise UsageError(f"transformers has no auto class {auto_class!r}")
    try:
        # Auto classes refuse from_pretrained(None, state_dict=…); the concrete class accepts it.
        cls = mapping[type(config)]
    except KeyError:
        raise UsageError(f"{auto_class} does not support model type {model_type!r}") from None
    state = load_into(Path(sealed), key, device=device, threads=threads)
    if dtype is None:
        floating = {t.dtype for t in state.values() if t.is_floating_point()}
        dtype = floating.pop() if len(floating) == 1 else None
    net = cls.from_pretrained(None, config=config, state_dict=state, dtype=dtype)
    generation = _json_file(model, "generation_config.json")
    if generation is not None:
        net.generation_config = GenerationConfig.from_dict(generation)
    return net.to(device).eval()


def _ram_dir() -> Path:
    for candidate in _RAM_DIRS:
        path = Path(candidate.format(uid=os.getuid()))
        if path.is_dir() and os.access(path, os.W_OK) and is_ram_backed(path):
            return path
    raise UsageError(
        "no writable RAM-backed directory (/dev/shm) for the tokenizer files",
        hint="pass tmp_dir= a tmpfs directory",
    )


def load_tokenizer(sealed: Path, key: SealedKey, *, tmp_dir: Path | None = None) -> Any:
    """Build the model's tokenizer from the sealed form.

    The non-weight files (tokenizer, config, chat template) are decrypted into a fresh private
    directory under ``tmp_dir`` (default ``/dev/shm``), loaded, and removed.

    Args:
        sealed: The sealed model directory.
        key: The KEK (or the data key).
        tmp_dir: A RAM-backed directory for the short-lived plaintext files.

    Returns:
        The tokenizer (``AutoTokenizer``).

    Raises:
        UsageError: no RAM-backed directory, or ``tmp_dir`` is not RAM-backed.
        UnsealError: wrong key or tampering.
    """
    from transformers import AutoTokenizer

    model = open_model(Path(sealed), key)
    base = Path(tmp_dir) if tmp_dir is not None else _ram_dir()
    if not is_ram_backed(base):
        raise UsageError(f"{base} is not RAM-backed (tmpfs/ramfs)")
    work = Path(tempfile.mkdtemp(prefix="ccai-tok-", dir=base))
    try:
        for entry in model.manifest.files:
            if entry.safetensors is not None or "/" in entry.name or entry.name.endswith(_WEIGHT_SUFFIXES):
                continue
            target = work / entry.name
            with os.fdopen(open_private_exclusive(target), "wb") as fh:
                fh.write(model.decrypt_file(entry))
        return AutoTokenizer.from_pretrained(str(work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
