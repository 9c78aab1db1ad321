"""An incremental Server-Sent Events parser (WHATWG HTML § 9.2 "Server-sent events").

Streaming completions arrive as SSE. The load generator feeds the parser with each block of bytes
as it comes off the socket and stamps every event with the time of that read, so parsing must be
incremental: an event, a line, a ``CRLF`` pair or a multi-byte UTF-8 character may be split across
reads. SSE is a line protocol, not a binary structure, so this works on lines rather than through
``ccai._binary.Reader``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SseEvent", "SseParser"]

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True, kw_only=True)
class SseEvent:
    """One dispatched event.

    Attributes:
        data: The event's data: its ``data:`` lines joined with ``"\\n"``.
        event: The ``event:`` field (``"message"`` when absent, as the specification says).
        id: The last ``id:`` seen, or ``None``.
    """

    data: str
    event: str = "message"
    id: str | None = None


class SseParser:
    """Turns a byte stream into :class:`SseEvent` objects, one :meth:`feed` call per network read.

    Follows the specification's line rules: lines end in ``CRLF``, ``LF`` or ``CR``; a line that
    starts with ``:`` is a comment; a blank line dispatches the pending event; an event with no
    ``data`` is not dispatched; one leading space after the colon is removed; a UTF-8 byte-order mark
    at the very start is skipped. Undecodable bytes become U+FFFD rather than an exception, so a
    misbehaving server shows up as wrong text, not as a crashed benchmark.
    """

    __slots__ = ("_buf", "_data", "_event", "_id", "_pending_cr", "_started")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._pending_cr = False
        self._started = False

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Consume one block of bytes.

        Args:
            chunk: Bytes exactly as read from the socket (any split is fine).

        Returns:
            The events completed by this block, in order (often none, sometimes several).
        """
        if not chunk:
            return []
        if self._pending_cr:
            # A CR ended the previous block; a LF at the start of this one belongs to it.
            self._pending_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        self._buf += chunk
        if not self._started:
            if len(self._buf) < len(_BOM) and _BOM.startswith(bytes(self._buf)):
                return []
            if self._buf.startswith(_BOM):
                del self._buf[: len(_BOM)]
            self._started = True
        events: list[SseEvent] = []
        start = 0
        buf = self._buf
        n = len(buf)
        i = 0
        while i < n:
            byte = buf[i]
            if byte in (0x0A, 0x0D):
                line = bytes(buf[start:i])
                if byte == 0x0D:
                    if i + 1 < n:
                        if buf[i + 1] == 0x0A:
                            i += 1
                    else:
                        self._pending_cr = True
                event = self._line(line)
                if event is not None:
                    events.append(event)
                start = i + 1
            i += 1
        del buf[:start]
        return events

    def close(self) -> list[SseEvent]:
        """End of stream. A final event without its blank line is discarded, as the specification says.

        Returns:
            Always an empty list (kept for symmetry with :meth:`feed`).
        """
        self._buf.clear()
        self._data.clear()
        self._event = ""
        return []

    def _line(self, raw: bytes) -> SseEvent | None:
        if not raw:
            return self._dispatch()
        line = raw.decode("utf-8", errors="replace")
        if line.startswith(":"):
            return None
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id" and "\x00" not in value:
            self._id = value
        # "retry" and unknown fields are ignored: a benchmark client never reconnects.
        return None

    def _dispatch(self) -> SseEvent | None:
        if not self._data:
            self._event = ""
            return None
        event = SseEvent(data="\n".join(self._data), event=self._event or "message", id=self._id)
        self._data = []
        self._event = ""
        return event
