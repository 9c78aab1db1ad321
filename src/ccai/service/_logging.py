"""Structured JSON log lines (one object per line on stderr) with request ids and no secrets.

Only fields the service chooses are logged: method, path, status, latency, request id, API key
*id*, verdict. Headers (``Authorization``), bodies, evidence and keys are never passed to a logger.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

__all__ = ["LOGGER_NAME", "JsonFormatter", "configure_logging", "log_event"]

LOGGER_NAME = "ccai.service"
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON object: time, level, logger, message and the ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            out["exception"] = record.exc_info[0].__name__
        return json.dumps(out, default=str)


def configure_logging(level: int = logging.INFO) -> None:
    """Send ``ccai.service`` logs to stderr as JSON lines (idempotent)."""
    logger = logging.getLogger(LOGGER_NAME)
    if any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def log_event(message: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event with structured fields."""
    logging.getLogger(LOGGER_NAME).log(level, message, extra=fields)
