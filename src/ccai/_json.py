"""Strict JSON reading for every JSON entry point (tokens, JWKS, evidence bundles, documents).

``json.loads`` alone is not safe on input from outside: it recurses once per nesting level (a
100 000-deep ``[[[…]]]`` raises ``RecursionError``), it accepts ``NaN``/``Infinity`` and turns
``1e400`` into ``inf``, it keeps the last of duplicate keys (two readers of one document can then
disagree), bytes that are not UTF-8 raise ``UnicodeDecodeError``, and ``"\\ud800"`` escapes yield
lone surrogates that raise ``UnicodeEncodeError`` much later. :func:`load_json` turns each of these
into the caller's error type with a one-line message naming what was being read.

The depth is bounded before parsing by counting bracket characters (a document with no more of
them than the limit cannot be deeper); a document with more is measured after decoding by an
iterative walk over its containers. The C decoder guards each nesting level with the interpreter's
recursion check, so a document deeper than the recursion limit raises ``RecursionError`` at that
depth (never a crash), which is refused as too deep as well. Measuring the decoded value rather than
scanning the text keeps large documents (evidence bundles of ~100 kB of base64 in strings) cheap.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ccai.errors import Error, MalformedEvidence, UsageError

__all__ = ["DEFAULT_MAX_DEPTH", "load_json"]

#: Default nesting limit: far deeper than any document ccai reads, far below the recursion limit.
DEFAULT_MAX_DEPTH = 64
# Python's recursion limit is ~1000 frames and the C decoder uses one or more per level.
_MAX_MAX_DEPTH = 512

_SURROGATE = re.compile("[\ud800-\udfff]")


class _Reject(ValueError):
    """Raised inside the decoder's hooks; turned into the caller's error."""


def _may_exceed(text: str, limit: int) -> bool:
    """Whether ``text`` holds more opening brackets than ``limit`` (else it cannot be deeper)."""
    return text.count("[") + text.count("{") > limit


def _depth(value: Any) -> int:
    """The nesting depth of a decoded value (``[]`` is 1, a scalar 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((c, level + 1) for c in children if isinstance(c, dict | list))
    return deepest


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
    too_deep = f"{what} is nested too deeply (more than {max_depth} levels)"
    try:
        value = json.loads(
            text, parse_float=_parse_float, parse_constant=_parse_constant, object_pairs_hook=_object
        )
    except _Reject as exc:
        raise error(f"{what} is not acceptable JSON: {exc}") from None
    except json.JSONDecodeError as exc:
        raise error(f"{what} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        # The decoder reached the interpreter's recursion limit: far deeper than any max_depth.
        raise error(too_deep) from None
    except ValueError as exc:
        # An integer beyond sys.get_int_max_str_digits().
        raise error(f"{what} is not acceptable JSON: {str(exc).splitlines()[0][:80]}") from None
    if _may_exceed(text, max_depth) and _depth(value) > max_depth:
        raise error(too_deep)
    if "\\u" in text and _has_lone_surrogate(value):
        raise error(f"{what} is not valid Unicode text (lone surrogate escape)")
    return value
