"""SSE parser: the specification's line rules, fed in every possible split."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ccai.openai_protocol import SseEvent, SseParser


def _all(chunks: list[bytes]) -> list[SseEvent]:
    parser = SseParser()
    out: list[SseEvent] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    out.extend(parser.close())
    return out


def test_openai_stream() -> None:
    raw = b'data: {"a": 1}\n\ndata: {"a": 2}\n\ndata: [DONE]\n\n'
    assert [e.data for e in _all([raw])] == ['{"a": 1}', '{"a": 2}', "[DONE]"]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_line_endings(eol: bytes) -> None:
    raw = b"data: x" + eol + b"data: y" + eol + eol + b"data: z" + eol + eol
    assert [e.data for e in _all([raw])] == ["x\ny", "z"]


def test_every_split_point_gives_the_same_events() -> None:
    raw = "\ufeffdata: héllo\r\n: comment\r\nevent: tok\r\nid: 7\r\ndata:  two\r\n\r\ndata: 3\r\r".encode()
    whole = _all([raw])
    assert whole == [SseEvent(data="héllo\n two", event="tok", id="7"), SseEvent(data="3", id="7")]
    for i in range(len(raw) + 1):
        assert _all([raw[:i], raw[i:]]) == whole, i
    assert _all([raw[i : i + 1] for i in range(len(raw))]) == whole


def test_crlf_split_across_reads_is_one_line_end() -> None:
    parser = SseParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n") == []  # the LF completes the CR; no blank line yet
    assert parser.feed(b"\r\n") == [SseEvent(data="a")]


def test_comments_empty_events_and_unknown_fields_are_not_dispatched() -> None:
    assert _all([b": keep-alive\n\nevent: x\n\nretry: 10\nfoo: bar\n\n"]) == []


def test_empty_data_line_dispatches_empty_event() -> None:
    assert _all([b"data\n\ndata:\n\n"]) == [SseEvent(data=""), SseEvent(data="")]


def test_unterminated_last_event_is_dropped() -> None:
    assert _all([b"data: a\n\ndata: b"]) == [SseEvent(data="a")]


def test_field_without_space_and_with_colon_in_value() -> None:
    assert _all([b'data:{"t":"a: b"}\n\n']) == [SseEvent(data='{"t":"a: b"}')]


def test_invalid_utf8_becomes_replacement_character() -> None:
    assert _all([b"data: \xff\n\n"]) == [SseEvent(data="\ufffd")]


def test_bom_only_at_start_and_split() -> None:
    assert _all([b"\xef", b"\xbb", b"\xbfdata: a\n\n"]) == [SseEvent(data="a")]
    assert _all([b"data: \xef\xbb\xbfa\n\n"]) == [SseEvent(data="\ufeffa")]


@given(
    st.lists(
        st.text(
            alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=20
        ),
        max_size=8,
    ),
    st.data(),
)
def test_roundtrip_random_payloads(payloads: list[str], data: st.DataObject) -> None:
    raw = b"".join(f"data: {p}\n\n".encode() for p in payloads)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=6)))
    pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
    assert [e.data for e in _all(pieces)] == payloads
