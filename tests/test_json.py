"""ccai._json.load_json: strict JSON from outside, every refusal a typed one-line error."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccai._json import DEFAULT_MAX_DEPTH, load_json
from ccai.errors import MalformedEvidence, TokenError, UsageError


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"a": [1, 2.5, "x", true, null]}', {"a": [1, 2.5, "x", True, None]}),
        ('"\\ud83d\\ude00"', "\U0001f600"),  # a valid surrogate pair
        ("[1]", [1]),
        # Brackets inside strings do not count towards the depth, escaped quotes included.
        ('["' + "[" * 100 + '"]', ["[" * 100]),
        ('["\\"' + "{" * 100 + '"]', ['"' + "{" * 100]),
    ],
)
def test_accepts_plain_json(data: Any, expected: Any) -> None:
    assert load_json(data, what="doc") == expected


def test_depth_limit_is_exact() -> None:
    assert load_json("[" * DEFAULT_MAX_DEPTH + "]" * DEFAULT_MAX_DEPTH, what="doc")
    with pytest.raises(MalformedEvidence, match="doc is nested too deeply"):
        load_json("[" * (DEFAULT_MAX_DEPTH + 1) + "]" * (DEFAULT_MAX_DEPTH + 1), what="doc")
    assert load_json('{"a":{"b":[1]}}', what="doc", max_depth=3) == {"a": {"b": [1]}}
    with pytest.raises(MalformedEvidence):
        load_json('{"a":{"b":[1]}}', what="doc", max_depth=2)


@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_hundred_thousand_deep_is_a_typed_error_not_recursion(opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    for doc in (opener * 100_000 + closer * 100_000, opener * 100_000, (opener * 100_000).encode()):
        with pytest.raises(TokenError, match="token payload is nested too deeply"):
            load_json(doc, what="token payload", error=TokenError)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\xfe[]", "not UTF-8"),
        (b'"\xc3"', "not UTF-8"),
        (b'"\xed\xa0\x80"', "not UTF-8"),  # CESU-style encoded surrogate
        ('"\ud800"', "lone surrogate"),
        ('"\\ud800"', "lone surrogate"),
        ('{"\\udfff": 1}', "lone surrogate"),
        ("\ufeff[]", "not JSON"),
        ("NaN", "NaN"),
        ("[Infinity]", "Infinity"),
        ("[-Infinity]", "Infinity"),
        ("1e400", "out of range"),
        ("1" * 5000, "not acceptable JSON"),
        ('{"a": 1, "a": 2}', "duplicate key 'a'"),
        ("", "not JSON"),
        ("[1,]", "not JSON"),
        ("[1] x", "not JSON"),
        ('"unterminated [[[[', "not JSON"),
    ],
)
def test_refusals_are_the_given_error_with_one_line(data: bytes | str, message: str) -> None:
    with pytest.raises(TokenError, match=message) as info:
        load_json(data, what="JWKS", error=TokenError)
    assert str(info.value).startswith("JWKS ") and "\n" not in str(info.value)


def test_default_error_and_misuse() -> None:
    with pytest.raises(MalformedEvidence):
        load_json(b"{", what="bundle")
    with pytest.raises(UsageError):
        load_json(b"[]", what="bundle", max_depth=0)
    with pytest.raises(UsageError):
        load_json(12, what="bundle")  # type: ignore[arg-type]
    assert load_json(bytearray(b"[2]"), what="bundle") == [2]  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=256))
def test_random_bytes_raise_only_the_given_error(data: bytes) -> None:
    try:
        load_json(data, what="fuzz", error=TokenError)
    except TokenError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from('[]{}",:\\0123456789.eE-+ntrufalsNIy \ud800é'), max_size=200))
def test_random_json_like_text_raises_only_the_given_error(text: str) -> None:
    with contextlib.suppress(TokenError):
        load_json(text, what="fuzz", max_depth=4, error=TokenError)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_round_trips_what_json_dumps_writes(value: Any) -> None:
    text = json.dumps(value)
    try:
        assert load_json(text.encode(), what="doc") == json.loads(text)
    except MalformedEvidence as exc:
        assert "lone surrogate" in str(exc)  # st.text() may draw lone surrogates
