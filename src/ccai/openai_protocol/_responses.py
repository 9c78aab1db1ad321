"""Reading OpenAI responses and stream chunks: text, finish reason, usage.

A streamed completion is a sequence of SSE events whose data is one JSON chunk object each, ended by
the literal ``[DONE]``. A chunk of ``/v1/completions`` carries ``choices[0].text``; one of
``/v1/chat/completions`` carries ``choices[0].delta.content``; a complete (non-streamed) chat
response carries ``choices[0].message.content``. With ``stream_options.include_usage`` the last
chunk carries ``usage``. These readers take the decoded JSON object and never raise on a missing or
mistyped field: what a misbehaving server sends shows up as empty text or missing usage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ccai.openai_protocol._requests import Api

__all__ = ["STREAM_DONE", "Usage", "choice_text", "read_usage"]

STREAM_DONE = "[DONE]"
"""The data of the SSE event that ends a stream (compare after stripping whitespace)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Token counts from a response's ``usage`` object.

    Attributes:
        prompt_tokens: Input tokens as the server counted them, or ``None`` when absent or not an integer.
        completion_tokens: Output tokens, or ``None`` when absent or not an integer.
    """

    prompt_tokens: int | None
    completion_tokens: int | None


def choice_text(obj: Mapping[str, Any], api: Api) -> tuple[str, str | None]:
    """The text and finish reason of the first choice of a response or stream chunk.

    Args:
        obj: The decoded JSON object.
        api: ``"completions"`` (reads ``text``) or ``"chat"`` (reads ``delta.content``, else
            ``message.content``).

    Returns:
        ``(text, finish_reason)``; text is ``""`` when the object has none.
    """
    choices = obj.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return "", None
    choice = choices[0]
    if api == "chat":
        delta = choice.get("delta") or choice.get("message") or {}
        text = delta.get("content") or ""
    else:
        text = choice.get("text") or ""
    return (text if isinstance(text, str) else ""), choice.get("finish_reason")


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def read_usage(obj: Mapping[str, Any]) -> Usage | None:
    """The ``usage`` of a response or stream chunk.

    Args:
        obj: The decoded JSON object.

    Returns:
        The counts, or ``None`` when the object carries no ``usage`` object.
    """
    usage = obj.get("usage")
    if not isinstance(usage, dict):
        return None
    return Usage(
        prompt_tokens=_count(usage.get("prompt_tokens")),
        completion_tokens=_count(usage.get("completion_tokens")),
    )
