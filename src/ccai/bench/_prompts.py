"""Prompts of an exact input length, built from token ids with the served model's tokenizer.

sglang's ``random`` dataset draws lengths uniformly in ``[1, L]`` unless told otherwise (a frequent
mistake, serving-performance.md §5.1); here every prompt has exactly ``L`` input tokens *as the
server counts them*: special tokens the server's tokenizer adds, or the chat template's tokens, are
measured and subtracted from the body. Bodies are drawn from a pool of "stable" tokens — tokens that
decode to a plain word and re-encode to themselves — so decode → encode round-trips and the length
can be checked and repaired before anything is sent.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from ccai.errors import UsageError
from ccai.openai_protocol import Api

__all__ = ["Prompt", "Tokenizer", "build_prompts", "load_tokenizer"]

_POOL_CANDIDATES = 6000
_MIN_POOL = 64
_REPAIR_ROUNDS = 24


class Tokenizer(Protocol):
    """The part of a transformers tokenizer that prompt building needs."""

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text``."""
        ...

    def decode(self, token_ids: Sequence[int]) -> str:
        """Text of ``token_ids``."""
        ...

    def __len__(self) -> int:
        """Vocabulary size including added tokens."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Prompt:
    """One request's input.

    Attributes:
        text: The prompt text (completions) or the user message (chat); ``None`` for id prompts.
        token_ids: Token ids sent as the ``prompt`` of ``/v1/completions``; ``None`` for text.
        input_len: Input tokens as the server counts them (special and template tokens included).
    """

    text: str | None
    token_ids: tuple[int, ...] | None
    input_len: int


def load_tokenizer(path: str) -> Tokenizer:
    """Load a tokenizer from a local directory with ``transformers.AutoTokenizer`` (offline).

    Args:
        path: A local model or tokenizer directory.

    Returns:
        The tokenizer.

    Raises:
        UsageError: transformers is missing or the directory holds no loadable tokenizer.
    """
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise UsageError("--tokenizer needs transformers", hint="pip install 'ccai[torch]'") from None
    try:
        tok = cast(Tokenizer, AutoTokenizer.from_pretrained(path))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot load a tokenizer from {path}: {exc}") from None
    return tok


def _special_ids(tokenizer: Tokenizer) -> set[int]:
    ids = getattr(tokenizer, "all_special_ids", None) or []
    return {int(i) for i in ids}


def _chat_ids(tokenizer: Tokenizer, content: str) -> list[int]:
    apply = getattr(tokenizer, "apply_chat_template", None)
    if apply is None or not getattr(tokenizer, "chat_template", None):
        raise UsageError("the tokenizer has no chat template; use --api completions")
    out: Any = apply([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=True)
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = out["input_ids"]
    return [int(i) for i in out]


def _server_len(tokenizer: Tokenizer, text: str, api: Api) -> int:
    if api == "chat":
        return len(_chat_ids(tokenizer, text))
    return len(tokenizer.encode(text, add_special_tokens=True))


def _stable_pool(tokenizer: Tokenizer, rng: random.Random) -> list[int]:
    vocab = len(tokenizer)
    special = _special_ids(tokenizer)
    candidates = rng.sample(range(vocab), min(vocab, _POOL_CANDIDATES))
    spaced: list[int] = []
    plain: list[int] = []
    for tid in candidates:
        if tid in special:
            continue
        piece = tokenizer.decode([tid])
        if not piece.strip().isalpha():
            continue
        if tokenizer.encode(piece, add_special_tokens=False) != [tid]:
            continue
        (spaced if piece.startswith(" ") and piece[1:].isalpha() else plain).append(tid)
    # Byte-level BPE: words with a leading space never merge across the boundary.
    pool = spaced if len(spaced) >= _MIN_POOL else spaced + plain
    if len(pool) < _MIN_POOL:
        raise UsageError(
            f"cannot build exact-length prompts with this tokenizer (only {len(pool)} stable tokens)",
            hint="use --prompt-ids with a server that accepts token-id prompts",
        )
    return sorted(pool)


def _one_text(tokenizer: Tokenizer, pool: Sequence[int], body_len: int, rng: random.Random) -> str:
    ids = [rng.choice(pool) for _ in range(body_len)]
    text = tokenizer.decode(ids)
    for _ in range(_REPAIR_ROUNDS):
        actual = len(tokenizer.encode(text, add_special_tokens=False))
        if actual == body_len:
            break
        if actual > body_len:
            ids = ids[: max(1, len(ids) - (actual - body_len))]
        else:
            ids = ids + [rng.choice(pool) for _ in range(body_len - actual)]
        text = tokenizer.decode(ids)
    return text


def build_prompts(
    *,
    count: int,
    input_len: int,
    seed: int,
    api: Api = "completions",
    tokenizer: Tokenizer | None = None,
    token_ids: bool = False,
    vocab_size: int | None = None,
) -> list[Prompt]:
    """Build ``count`` prompts of exactly ``input_len`` input tokens, reproducibly from ``seed``.

    Args:
        count: Number of prompts.
        input_len: Input tokens per request as the server counts them.
        seed: Seed of the random token choice (same seed, same prompts).
        api: ``"completions"`` (raw prompt) or ``"chat"`` (one user message through the chat template).
        tokenizer: The served model's tokenizer; needed for text prompts.
        token_ids: Send token-id prompts (``/v1/completions`` only; vLLM and SGLang accept them).
        vocab_size: Vocabulary size for id prompts without a tokenizer.

    Returns:
        The prompts; ``input_len`` on each is the measured server-side length.

    Raises:
        UsageError: impossible combination, no tokenizer, or a length the template alone exceeds.
    """
    if count < 1 or input_len < 1:
        raise UsageError("prompt count and input length must be positive")
    rng = random.Random(seed)  # noqa: S311 - reproducible prompts, not a secret
    if token_ids:
        if api != "completions":
            raise UsageError("token-id prompts work with --api completions only")
        if tokenizer is not None:
            pool = _stable_pool(tokenizer, rng)
            extra = len(tokenizer.encode("a", add_special_tokens=True)) - len(
                tokenizer.encode("a", add_special_tokens=False)
            )
        elif vocab_size:
            pool, extra = list(range(min(1000, vocab_size // 2), vocab_size)), 0
        else:
            raise UsageError("token-id prompts need --tokenizer or --vocab-size")
        body = input_len - extra
        if body < 1:
            raise UsageError(f"input length {input_len} is shorter than the special tokens")
        return [
            Prompt(text=None, token_ids=tuple(rng.choice(pool) for _ in range(body)), input_len=input_len)
            for _ in range(count)
        ]
    if tokenizer is None:
        raise UsageError(
            "exact-length text prompts need the model's tokenizer",
            hint="pass --tokenizer PATH (a local model directory), or --prompt-ids",
        )
    pool = _stable_pool(tokenizer, rng)
    probe = tokenizer.decode(pool[:8])
    overhead = _server_len(tokenizer, probe, api) - len(tokenizer.encode(probe, add_special_tokens=False))
    body_len = input_len - overhead
    if body_len < 1:
        raise UsageError(f"input length {input_len} does not exceed the {overhead} template/special tokens")
    prompts = []
    for _ in range(count):
        text = _one_text(tokenizer, pool, body_len, rng)
        prompts.append(Prompt(text=text, token_ids=None, input_len=_server_len(tokenizer, text, api)))
    return prompts
