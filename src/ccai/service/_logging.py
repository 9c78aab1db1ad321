"""Structured JSON log lines (one object per line on stderr) with request ids and no secrets.

Only fields the service chooses are logged: method, path, status, latency, request id, API key
*id*, verdict. Headers (``Authorization``), bodies, evidence and keys are never passed to a logger.
"""

from __future__ import annotations

import logging
from typing import Any

from ccai._logs import JsonFormatter, configure_json_logging

__all__ = ["LOGGER_NAME", "JsonFormatter", "configure_logging", "log_event"]

LOGGER_NAME = "ccai.service"


def configure_logging(level: int = logging.INFO) -> None:
    """Send ``ccai.service`` logs to stderr as JSON lines (idempotent)."""
    configure_json_logging(LOGGER_NAME, level=level)


def log_event(message: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event with structured fields."""
    logging.getLogger(LOGGER_NAME).log(level, message, extra=fields)
