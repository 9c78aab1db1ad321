"""The gateway's JSON log lines (one object per line on stderr); nothing secret is ever passed in.

Only fields the gateway chooses are logged: boot states and their durations, failure reasons (the
one-line message of a ccai error, which never carries a key), request paths and statuses. Keys,
prompts, completions and evidence bytes never reach a logger.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

__all__ = ["LOGGER_NAME", "configure_logging", "log_event"]

LOGGER_NAME = "ccai.gateway"
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            out["exception"] = record.exc_info[0].__name__
        return json.dumps(out, default=str)


def configure_logging(level: int = logging.INFO) -> None:
    """Send ``ccai.gateway`` logs to stderr as JSON lines (idempotent)."""
    logger = logging.getLogger(LOGGER_NAME)
    if any(isinstance(h.formatter, _JsonFormatter) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def log_event(event: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event with structured fields (never pass a secret)."""
    logging.getLogger(LOGGER_NAME).log(level, event, extra=fields)
