"""JSON log lines for ccai's services: one object per line on stderr, fields chosen by the caller.

A service logs only fields it chooses (paths, statuses, latencies, ids, verdicts, boot states); keys,
headers, bodies, prompts and evidence are never passed to a logger. Each service has its own logger
name and the key its event text goes under (``message`` for the attestation service and key broker,
``event`` for the gateway).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

__all__ = ["JsonFormatter", "configure_json_logging"]

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON object: time, level, logger, the text and the ``extra`` fields.

    Args:
        text_key: The key the record's text goes under.
    """

    def __init__(self, text_key: str = "message") -> None:
        super().__init__()
        self.text_key = text_key

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            self.text_key: record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            out["exception"] = record.exc_info[0].__name__
        return json.dumps(out, default=str)


def configure_json_logging(name: str, *, text_key: str = "message", level: int = logging.INFO) -> None:
    """Send logger ``name`` to stderr as JSON lines (idempotent)."""
    logger = logging.getLogger(name)
    if any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(text_key))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
