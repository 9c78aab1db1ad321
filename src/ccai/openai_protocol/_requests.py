"""Request bodies and URLs of the OpenAI API: ``/v1/completions`` and ``/v1/chat/completions``.

The bodies are plain dictionaries ready for ``json=`` of an HTTP client, built the same way by the
serving benchmark, the gateway that forwards to an engine and the verifying client, so all three
send what an engine expects. Field names follow the OpenAI API reference; the fixed-length fields
are the engines' extensions: vLLM and SGLang accept ``ignore_eos``; transformers serve rejects
unknown fields (HTTP 422) but takes a ``generation_config`` JSON string, where
``min_new_tokens = max_new_tokens`` forces the length.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

__all__ = [
    "Api",
    "OutputControl",
    "api_path",
    "chat_completion_request",
    "completion_request",
    "fixed_length_fields",
    "v1_url",
]

Api = Literal["completions", "chat"]
"""Which endpoint: ``/v1/completions`` (``"completions"``) or ``/v1/chat/completions`` (``"chat"``)."""

OutputControl = Literal["ignore_eos", "generation_config", "none"]
"""How a fixed output length is enforced: vLLM/SGLang's ``ignore_eos``, a transformers
``generation_config`` with ``min_new_tokens``, or nothing (shortfalls are then reported)."""


def v1_url(base_url: str, path: str) -> str:
    """Absolute URL of an API path below ``/v1``.

    Args:
        base_url: Base URL of the server, with or without the ``/v1`` suffix (``http://host:port``
            or ``http://host:port/v1/``).
        path: The path below ``/v1``, such as ``"completions"`` or ``"models"``.

    Returns:
        The URL.
    """
    base = base_url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return f"{base}/{path}"


def api_path(api: Api) -> str:
    """The path below ``/v1`` that serves ``api``.

    Args:
        api: ``"completions"`` or ``"chat"``.

    Returns:
        ``"completions"`` or ``"chat/completions"``.
    """
    return "chat/completions" if api == "chat" else "completions"


def fixed_length_fields(control: OutputControl, max_tokens: int) -> dict[str, Any]:
    """The engine-specific fields that make a request generate exactly ``max_tokens`` tokens.

    Args:
        control: The control the server accepts (see :data:`OutputControl`).
        max_tokens: The output length to force.

    Returns:
        ``{"ignore_eos": True}``, ``{"generation_config": "<json>"}`` (greedy, ``min_new_tokens =
        max_new_tokens``), or ``{}`` for ``"none"``.
    """
    if control == "ignore_eos":
        return {"ignore_eos": True}
    if control == "generation_config":
        config = {"max_new_tokens": max_tokens, "min_new_tokens": max_tokens, "do_sample": False}
        return {"generation_config": json.dumps(config)}
    return {}


def _body(
    *,
    model: str,
    max_tokens: int,
    temperature: float | None,
    payload: tuple[str, Any],
    stream: bool,
    include_usage: bool,
    seed: int | None,
    output_control: OutputControl,
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens}
    if temperature is not None:
        body["temperature"] = temperature
    body[payload[0]] = payload[1]
    if stream:
        body["stream"] = True
        if include_usage:
            # The final chunk then carries usage (prompt and completion tokens), as vLLM, SGLang and
            # transformers serve implement it; without it a client can only count chunks.
            body["stream_options"] = {"include_usage": True}
    if seed is not None:
        body["seed"] = seed
    body.update(fixed_length_fields(output_control, max_tokens))
    return body


def completion_request(
    *,
    model: str,
    prompt: str | Sequence[int],
    max_tokens: int,
    temperature: float | None = None,
    stream: bool = False,
    include_usage: bool = True,
    seed: int | None = None,
    output_control: OutputControl = "none",
) -> dict[str, Any]:
    """The body of a ``/v1/completions`` request.

    Args:
        model: The ``model`` field (transformers serve: exactly the served path).
        prompt: Prompt text, or token ids (vLLM and SGLang accept a list of ids).
        max_tokens: Output tokens to ask for.
        temperature: Sampling temperature; ``0.0`` is greedy; ``None`` leaves the server's default.
        stream: Ask for an SSE stream.
        include_usage: With ``stream``, ask for ``stream_options.include_usage`` (usage in the last chunk).
        seed: Request seed, sent when given.
        output_control: Force exactly ``max_tokens`` output tokens this way (``"none"``: do not).

    Returns:
        The body.
    """
    return _body(
        model=model,
        max_tokens=max_tokens,
        temperature=temperature,
        payload=("prompt", prompt if isinstance(prompt, str) else list(prompt)),
        stream=stream,
        include_usage=include_usage,
        seed=seed,
        output_control=output_control,
    )


def chat_completion_request(
    *,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    max_tokens: int,
    temperature: float | None = None,
    stream: bool = False,
    include_usage: bool = True,
    seed: int | None = None,
    output_control: OutputControl = "none",
) -> dict[str, Any]:
    """The body of a ``/v1/chat/completions`` request.

    Args:
        model: The ``model`` field (transformers serve: exactly the served path).
        messages: The conversation, e.g. ``[{"role": "user", "content": "Hello"}]``.
        max_tokens: Output tokens to ask for.
        temperature: Sampling temperature; ``0.0`` is greedy; ``None`` leaves the server's default.
        stream: Ask for an SSE stream.
        include_usage: With ``stream``, ask for ``stream_options.include_usage`` (usage in the last chunk).
        seed: Request seed, sent when given.
        output_control: Force exactly ``max_tokens`` output tokens this way (``"none"``: do not).

    Returns:
        The body.
    """
    return _body(
        model=model,
        max_tokens=max_tokens,
        temperature=temperature,
        payload=("messages", [dict(m) for m in messages]),
        stream=stream,
        include_usage=include_usage,
        seed=seed,
        output_control=output_control,
    )
