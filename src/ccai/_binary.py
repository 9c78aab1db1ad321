"""The one bounds-checked reader every binary parser in ccai uses.

A short read raises :class:`~ccai.errors.MalformedEvidence` naming the structure, the field and
the offset; it never returns a silently short slice. Integer helpers state their endianness in
their names (``u16le``), so a reader of a parser can check it against the spec table.
"""

from __future__ import annotations

import struct

from ccai.errors import MalformedEvidence

__all__ = ["Reader"]

_U16LE = struct.Struct("<H")
_U32LE = struct.Struct("<I")
_U64LE = struct.Struct("<Q")
_U16BE = struct.Struct(">H")
_U32BE = struct.Struct(">I")


class Reader:
    """Sequential reader over ``data`` that refuses to read past the end.

    Args:
        data: The bytes to read.
        what: The structure being parsed, used in error messages (e.g. ``"SPDM measurements response"``).
        base: Offset of ``data[0]`` within the enclosing blob, so errors report absolute offsets.
    """

    __slots__ = ("_data", "_pos", "base", "what")

    def __init__(self, data: bytes, *, what: str, base: int = 0) -> None:
        self._data = bytes(data)
        self._pos = 0
        self.what = what
        self.base = base

    @property
    def offset(self) -> int:
        """Current position relative to the start of ``data``."""
        return self._pos

    @property
    def remaining(self) -> int:
        """Bytes not yet read."""
        return len(self._data) - self._pos

    def take(self, n: int, field: str) -> bytes:
        """Read exactly ``n`` bytes for ``field``.

        Raises:
            MalformedEvidence: fewer than ``n`` bytes remain (or ``n`` is negative).
        """
        if n < 0 or self._pos + n > len(self._data):
            raise MalformedEvidence(
                f"{self.what}: {field} needs {n} bytes at offset {self.base + self._pos}, "
                f"only {max(self.remaining, 0)} left",
                step="parse",
                expected=n,
                actual=self.remaining,
            )
        out = self._data[self._pos : self._pos + n]
        self._pos += n
        return out

    def skip(self, n: int, field: str) -> None:
        """Skip ``n`` reserved bytes (still bounds-checked)."""
        self.take(n, field)

    def u8(self, field: str) -> int:
        """One unsigned byte."""
        return self.take(1, field)[0]

    def u16le(self, field: str) -> int:
        """Unsigned 16-bit little-endian."""
        return int(_U16LE.unpack(self.take(2, field))[0])

    def u32le(self, field: str) -> int:
        """Unsigned 32-bit little-endian."""
        return int(_U32LE.unpack(self.take(4, field))[0])

    def u64le(self, field: str) -> int:
        """Unsigned 64-bit little-endian."""
        return int(_U64LE.unpack(self.take(8, field))[0])

    def u16be(self, field: str) -> int:
        """Unsigned 16-bit big-endian."""
        return int(_U16BE.unpack(self.take(2, field))[0])

    def u32be(self, field: str) -> int:
        """Unsigned 32-bit big-endian."""
        return int(_U32BE.unpack(self.take(4, field))[0])

    def u24le(self, field: str) -> int:
        """Unsigned 24-bit little-endian (SPDM lengths)."""
        return int.from_bytes(self.take(3, field), "little")

    def rest(self, field: str) -> bytes:
        """Everything left (possibly empty)."""
        return self.take(self.remaining, field)

    def sub(self, n: int, field: str) -> Reader:
        """A reader over the next ``n`` bytes, reporting offsets relative to this blob."""
        start = self.base + self._pos
        return Reader(self.take(n, field), what=f"{self.what}/{field}", base=start)

    def expect_end(self) -> None:
        """Raise if bytes remain: trailing data is malformed, never silently ignored."""
        if self.remaining:
            raise MalformedEvidence(
                f"{self.what}: {self.remaining} unexpected trailing bytes at offset {self.base + self._pos}",
                step="parse",
                expected=0,
                actual=self.remaining,
            )
