"""An in-process generation engine around an already-loaded transformers causal language model.

The confidential gateway loads a sealed model straight into GPU memory (``ccai.sealed.load_model``)
and must serve it without writing the plaintext weights anywhere an external engine could read
them, so it cannot hand a directory to ``transformers serve``. :class:`TransformersEngine` takes the
model object and its tokenizer and runs ``model.generate`` itself.

How a request runs:

* The request is tokenised on the event loop and queued; one worker thread runs one generation at a
  time, first come first served (the model and torch's global RNG are never shared between two
  generations, so ``seed`` is reproducible and greedy output equals ``model.generate`` exactly).
* Each generated token goes through a stopping criterion that ``generate`` calls once per step. It
  decodes the token incrementally (text appears only once its UTF-8 bytes are complete), looks for
  the request's ``stop`` strings, and hands the new text to the request's asyncio queue through
  ``loop.call_soon_threadsafe``; the request yields it at once, so streaming is real.
* A stop string, a cancelled request (client gone) or ``max_tokens`` ends generation at the next
  step; the stop string itself is cut from the text, as the OpenAI API does.

torch and transformers are imported only when a generation runs, so this module imports without the
``torch`` extra.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from ccai.errors import UsageError

__all__ = ["EngineOverloaded", "Generation", "GenerationDelta", "SamplingParams", "TransformersEngine"]

FinishReason = Literal["stop", "length", "abort"]


class EngineOverloaded(UsageError):
    """More requests are pending than the engine admits (``max_pending``); the HTTP edge answers 503."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SamplingParams:
    """How one request generates.

    Attributes:
        max_tokens: Most tokens to generate (≥ 1).
        temperature: ``None`` or ``0`` decode greedily (deterministic); above 0 samples at this temperature.
        top_p: Nucleus sampling mass (only when sampling).
        seed: Seeds torch's RNG before a sampled generation (reproducible; generations never overlap).
        stop: Strings that end the output; the text stops before the first one.
        ignore_eos: Keep generating past the end-of-sequence token (exactly ``max_tokens`` tokens).
        min_tokens: The end-of-sequence token is suppressed until this many tokens exist.
    """

    max_tokens: int
    temperature: float | None = None
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    min_tokens: int = 0

    @property
    def greedy(self) -> bool:
        """Whether this request decodes greedily."""
        return not self.temperature


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerationDelta:
    """One step of a generation's output as the request sees it.

    Attributes:
        text: New text (may be empty on the final delta).
        completion_tokens: Tokens generated so far.
        finish_reason: ``None`` while generating; on the last delta ``"stop"`` (end-of-sequence token
            or a stop string), ``"length"`` (``max_tokens`` reached) or ``"abort"`` (cancelled).
    """

    text: str
    completion_tokens: int
    finish_reason: FinishReason | None = None


class _Failed:
    """Queue item: the generation raised (the message is logged by the caller, not sent to clients)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


@dataclass(slots=True, eq=False)
class _Job:
    """One request's state, shared by the worker thread (writer) and the event loop (reader)."""

    prompt_ids: list[int]
    params: SamplingParams
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[GenerationDelta | _Failed]
    tokenizer: Any
    eos_ids: frozenset[int]
    cancelled: threading.Event = field(default_factory=threading.Event)
    ids: list[int] = field(default_factory=list)
    prefix_offset: int = 0
    read_offset: int = 0
    text: str = ""
    sent: int = 0
    stopped: bool = False

    # --- worker side -------------------------------------------------------------------------

    def _emit(self, item: GenerationDelta | _Failed) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)

    def _decode_step(self) -> str:
        # Incremental detokenisation: decode a short window ending at the new token and keep only
        # what it adds to the window's previous text, so a multi-byte character split across
        # tokens appears whole, once its last byte arrives (never as U+FFFD).
        decode = self.tokenizer.decode
        prefix = decode(self.ids[self.prefix_offset : self.read_offset], skip_special_tokens=True)
        full = decode(self.ids[self.prefix_offset :], skip_special_tokens=True)
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.ids)
            return str(full[len(prefix) :])
        return ""

    def _held_back(self) -> int:
        # Characters at the end of the text that may be the start of a stop string: not sent yet.
        longest = 0
        for stop in self.params.stop:
            for k in range(min(len(stop) - 1, len(self.text)), longest, -1):
                if self.text.endswith(stop[:k]):
                    longest = k
                    break
        return longest

    def on_token(self, token: int) -> bool:
        """Take one generated token; return whether generation must stop now."""
        if self.stopped:
            return True
        self.ids.append(token)
        new = self._decode_step()
        if new:
            search_from = max(0, len(self.text) - max((len(s) for s in self.params.stop), default=0))
            self.text += new
            if self.params.stop:
                hits = [i for i in (self.text.find(s, search_from) for s in self.params.stop) if i >= 0]
                if hits:
                    self.text = self.text[: min(hits)]
                    self.stopped = True
                    return True
            end = len(self.text) - self._held_back()
            if end > self.sent:
                self._emit(GenerationDelta(text=self.text[self.sent : end], completion_tokens=len(self.ids)))
                self.sent = end
        return self.cancelled.is_set()

    def finish(self) -> None:
        """Send what is left of the text and the finish reason (worker side, after ``generate``)."""
        if not self.stopped and self.read_offset < len(self.ids):
            # Undecodable bytes at the very end: send them as they decode (U+FFFD), not silently drop them.
            tail = self.tokenizer.decode(self.ids[self.prefix_offset :], skip_special_tokens=True)
            prefix = self.tokenizer.decode(
                self.ids[self.prefix_offset : self.read_offset], skip_special_tokens=True
            )
            self.text += tail[len(prefix) :]
        reason: FinishReason
        if self.stopped or (self.ids and self.ids[-1] in self.eos_ids and not self.params.ignore_eos):
            reason = "stop"
        elif len(self.ids) >= self.params.max_tokens:
            reason = "length"
        else:
            reason = "abort"
        self._emit(
            GenerationDelta(
                text=self.text[self.sent :], completion_tokens=len(self.ids), finish_reason=reason
            )
        )
        self.sent = len(self.text)


class _StopCriterion:
    """A transformers stopping criterion that feeds each new token to the job (batch of one)."""

    def __init__(self, job: _Job, torch: Any) -> None:
        self.job = job
        self.torch = torch

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        stop = self.job.on_token(int(input_ids[0, -1].item()))
        return self.torch.full((input_ids.shape[0],), stop, dtype=self.torch.bool, device=input_ids.device)


class Generation:
    """A queued or running generation: iterate it for :class:`GenerationDelta` items; cancel when done."""

    def __init__(self, job: _Job, pending: _Pending) -> None:
        self._job = job
        self._pending = pending
        self._released = False

    @property
    def prompt_tokens(self) -> int:
        """Tokens of the prompt."""
        return len(self._job.prompt_ids)

    def cancel(self) -> None:
        """Stop the generation at its next step (or skip it while queued); safe to call twice."""
        self._job.cancelled.set()
        if not self._released:
            self._released = True
            self._pending.release()

    async def __aiter__(self) -> AsyncIterator[GenerationDelta]:
        try:
            while True:
                item = await self._job.queue.get()
                if isinstance(item, _Failed):
                    raise RuntimeError("generation failed") from item.error
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            self.cancel()


class _Pending:
    """Counts admitted requests (queued or running), thread-safe."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            if self.count >= self.limit:
                raise EngineOverloaded(f"the engine already has {self.limit} requests pending")
            self.count += 1

    def release(self) -> None:
        with self._lock:
            self.count -= 1


class TransformersEngine:
    """Serves an already-loaded transformers causal LM in this process (see the module docstring).

    Args:
        model: A transformers causal language model (``AutoModelForCausalLM`` or
            ``ccai.sealed.load_model``), its weights on the device it runs on.
        tokenizer: Its tokenizer (with a chat template for ``/v1/chat/completions``).
        model_name: The ``model`` field requests must carry and ``/v1/models`` lists.
        device: Where input ids go; default: the device of the model's first parameter.
        max_pending: Requests admitted at once (running or queued); more are refused with
            :class:`EngineOverloaded` (HTTP 503).

    Raises:
        UsageError: ``max_pending`` below 1 or an empty ``model_name``.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        model_name: str,
        device: Any = None,
        max_pending: int = 1024,
    ) -> None:
        if max_pending < 1:
            raise UsageError("max_pending must be at least 1", actual=max_pending)
        if not model_name:
            raise UsageError("model_name must not be empty")
        self.model = model
        self.tokenizer = tokenizer
        self.model_name = model_name
        self.device = device if device is not None else next(model.parameters()).device
        self._pending = _Pending(max_pending)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ccai-engine")
        config = model.config
        self.context_length = int(getattr(config, "max_position_embeddings", 0) or 2048)
        self.vocab_size = int(model.get_input_embeddings().num_embeddings)
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = getattr(config, "eos_token_id", None)
        self.eos_ids = frozenset([eos] if isinstance(eos, int) else list(eos or []))

    @property
    def pending(self) -> int:
        """Requests admitted and not yet finished."""
        return self._pending.count

    def chat_prompt(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        """Token ids of a conversation, rendered by the tokenizer's chat template with the generation prompt.

        Args:
            messages: ``[{"role": …, "content": str}, …]``.

        Returns:
            The prompt's token ids.

        Raises:
            UsageError: the tokenizer has no chat template or the template rejects the messages.
        """
        try:
            text = self.tokenizer.apply_chat_template(
                list(messages), tokenize=False, add_generation_prompt=True
            )
        except Exception as exc:
            raise UsageError(f"the chat template cannot render these messages: {exc}") from None
        # The template already holds the special tokens (BOS, role markers): add none.
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def text_prompt(self, prompt: str) -> list[int]:
        """Token ids of a plain completion prompt (with the tokenizer's usual special tokens).

        Args:
            prompt: The prompt text.

        Returns:
            The token ids.
        """
        return list(self.tokenizer(prompt).input_ids)

    def submit(self, prompt_ids: Sequence[int], params: SamplingParams) -> Generation:
        """Queue a generation; must be called on the running event loop that will iterate it.

        Args:
            prompt_ids: The prompt's token ids (at least one, each below the vocabulary size).
            params: How to generate; ``len(prompt_ids) + params.max_tokens`` must fit the context.

        Returns:
            The generation; iterate it, and it releases its slot when it ends or is cancelled.

        Raises:
            UsageError: empty prompt, a token id out of range, or the context would overflow.
            EngineOverloaded: ``max_pending`` requests are already admitted.
        """
        ids = [int(i) for i in prompt_ids]
        if not ids:
            raise UsageError("the prompt is empty")
        if any(not 0 <= i < self.vocab_size for i in ids):
            raise UsageError(f"prompt token ids must be between 0 and {self.vocab_size - 1}")
        if params.max_tokens < 1:
            raise UsageError("max_tokens must be at least 1", actual=params.max_tokens)
        if len(ids) + params.max_tokens > self.context_length:
            raise UsageError(
                f"this model's context is {self.context_length} tokens; the prompt has {len(ids)} "
                f"and max_tokens asks for {params.max_tokens} more"
            )
        self._pending.acquire()
        loop = asyncio.get_running_loop()
        job = _Job(
            prompt_ids=ids,
            params=params,
            loop=loop,
            queue=asyncio.Queue(),
            tokenizer=self.tokenizer,
            eos_ids=self.eos_ids,
        )
        generation = Generation(job, self._pending)
        try:
            self._executor.submit(self._run, job)
        except RuntimeError:  # executor shut down
            generation.cancel()
            raise UsageError("the engine is closed") from None
        return generation

    def close(self) -> None:
        """Stop accepting work; queued generations are skipped, the running one finishes its step."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --- worker thread ---------------------------------------------------------------------------

    def _generation_kwargs(self, params: SamplingParams) -> dict[str, Any]:
        from transformers import GenerationConfig

        config = GenerationConfig.from_dict(self.model.generation_config.to_dict())
        updates: dict[str, Any] = {"max_new_tokens": params.max_tokens, "num_return_sequences": 1}
        if params.greedy:
            updates.update(do_sample=False, num_beams=1)
        else:
            updates.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=None)
        if params.ignore_eos:
            updates["eos_token_id"] = []  # no end-of-sequence id: generation runs to max_new_tokens
        if params.min_tokens:
            updates["min_new_tokens"] = min(params.min_tokens, params.max_tokens)
        config.update(**updates)  # type: ignore[no-untyped-call]
        return {"generation_config": config}

    def _run(self, job: _Job) -> None:
        if job.cancelled.is_set():
            job.finish()
            return
        try:
            import torch
            from transformers import StoppingCriteriaList

            kwargs = self._generation_kwargs(job.params)
            input_ids = torch.tensor([job.prompt_ids], dtype=torch.long, device=self.device)
            with torch.inference_mode():
                if job.params.seed is not None and not job.params.greedy:
                    torch.manual_seed(job.params.seed)
                self.model.generate(
                    input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    stopping_criteria=StoppingCriteriaList([_StopCriterion(job, torch)]),
                    **kwargs,
                )
            job.finish()
        except Exception as exc:
            job._emit(_Failed(exc))
