"""Time handling: one clock call per request, ISO 8601 parsing for ``--at``."""

from __future__ import annotations

from datetime import UTC, datetime

from ccai.errors import UsageError

__all__ = ["parse_instant", "utcnow"]


def utcnow() -> datetime:
    """The current time, timezone-aware UTC. Capture it once per request and pass it down."""
    return datetime.now(UTC)


def parse_instant(text: str) -> datetime:
    """Parse an ISO 8601 instant (``2024-01-01T00:00:00Z``); naive times are taken as UTC.

    Raises:
        UsageError: the text is not an ISO 8601 date/time.
    """
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"not an ISO 8601 time: {text!r}", hint="use e.g. 2025-06-01T12:00:00Z") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
