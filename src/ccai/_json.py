"""Strict JSON reading for every JSON entry point (tokens, JWKS, evidence bundles, documents).

``json.loads`` alone is not safe on input from outside: it recurses once per nesting level (a
100 000-deep ``[[[…]]]`` raises ``RecursionError``), it accepts ``NaN``/``Infinity`` and turns
``1e400`` into ``inf``, it keeps the last of duplicate keys (two readers of one document can then
disagree), bytes that are not UTF-8 raise ``UnicodeDecodeError``, and ``"\\ud800"`` escapes yield
lone surrogates that raise ``UnicodeEncodeError`` much later. :func:`load_json` turns each of these
into the caller's error type with a one-line message naming what was being read.

The depth is measured *before* parsing by a linear scan over the bracket characters outside
strings (no recursion), so Python's recursion limit is never approached.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

from ccai.errors import Error, MalformedEvidence, UsageError

__all__ = ["DEFAULT_MAX_DEPTH", "load_json"]

#: Default nesting limit: far deeper than any document ccai reads, far below the recursion limit.
DEFAULT_MAX_DEPTH = 64
# Python's recursion limit is ~1000 frames and the C decoder uses one or more per level.
_MAX_MAX_DEPTH = 512

# A JSON string as the decoder sees it: from a quote to the next quote not escaped by a backslash.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = str.maketrans({"[": "1", "{": "1", "]": "0", "}": "0"})
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Reject(ValueError):
    """Raised inside the decoder's hooks; turned into the caller's error."""


def _nesting_depth(text: str, limit: int) -> int:
    """The maximum bracket nesting of ``text`` outside strings, computed without recursion.

    Unterminated strings are scanned as if they were not strings, which can only over-count: the
    result is never below the depth the decoder would reach.
    """
    if text.count("[") + text.count("{") <= limit:
        return 0  # cannot exceed the limit, whatever the strings hold
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text)).translate(_STEP)
    return max(accumulate(1 if c == "1" else -1 for c in brackets), default=0)


def _parse_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _Reject(f"number {literal[:20]} is out of range")
    return value


def _parse_constant(literal: str) -> Any:
    raise _Reject(f"{literal} is not JSON")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Reject(f"duplicate key {key[:40]!r}")
            seen.add(key)
    return out


def _has_lone_surrogate(value: Any) -> bool:
    """Whether any string (or key) in the decoded value holds a lone surrogate (iterative walk)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def load_json(
    data: bytes | str,
    *,
    what: str,
    max_depth: int = DEFAULT_MAX_DEPTH,
    error: type[Error] = MalformedEvidence,
) -> Any:
    """Parse JSON from outside strictly.

    Refused, each with ``error`` and a one-line message naming ``what``: bytes that are not UTF-8
    (or text that cannot be UTF-8: lone surrogates, also when written as ``\\u`` escapes); a byte
    order mark; nesting deeper than ``max_depth`` (``[]`` is depth 1); ``NaN``, ``Infinity`` and
    numbers that overflow to infinity; integers beyond Python's digit limit; duplicate object keys;
    anything ``json`` itself refuses.

    Args:
        data: The document, as UTF-8 bytes or text.
        what: What is being read, for the message (``"token header"``, ``"JWKS"`` …).
        max_depth: The deepest nesting accepted (1 … 512).
        error: The :class:`~ccai.errors.Error` subclass to raise.

    Returns:
        The decoded value (``dict``, ``list``, ``str``, ``int``, ``float``, ``bool`` or ``None``).

    Raises:
        error: the document is refused for any reason above.
        UsageError: ``data`` is neither bytes nor str, or ``max_depth`` is out of range.
    """
    if not 1 <= max_depth <= _MAX_MAX_DEPTH:
        raise UsageError(f"max_depth must be between 1 and {_MAX_MAX_DEPTH}", actual=max_depth)
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error(f"{what} is not UTF-8 (invalid byte at offset {exc.start})") from None
    elif isinstance(data, str):
        text = data
        if _SURROGATE.search(text):
            raise error(f"{what} is not valid Unicode text (lone surrogate)")
    else:
        raise UsageError(f"{what}: JSON input must be bytes or str", actual=type(data).__name__)
    depth = _nesting_depth(text, max_depth)
    if depth > max_depth:
        raise error(f"{what} is nested too deeply (more than {max_depth} levels)")
    try:
        value = json.loads(
            text, parse_float=_parse_float, parse_constant=_parse_constant, object_pairs_hook=_object
        )
    except _Reject as exc:
        raise error(f"{what} is not acceptable JSON: {exc}") from None
    except json.JSONDecodeError as exc:
        raise error(f"{what} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:
        # ValueError: an integer beyond sys.get_int_max_str_digits(). RecursionError cannot happen
        # after the depth scan; it is caught only so that no input can escape as a non-ccai error.
        raise error(f"{what} is not acceptable JSON: {str(exc).splitlines()[0][:80]}") from None
    if "\\u" in text and _has_lone_surrogate(value):
        raise error(f"{what} is not valid Unicode text (lone surrogate escape)")
    return value
