"""The gateway's JSON log lines (``ccai._logs``); nothing secret is ever passed in.

Only fields the gateway chooses are logged: boot states and their durations, failure reasons (the
one-line message of a ccai error, which never carries a key), request paths and statuses. Keys,
prompts, completions and evidence bytes never reach a logger.
"""

from __future__ import annotations

import logging
from typing import Any

from ccai._logs import configure_json_logging

__all__ = ["LOGGER_NAME", "configure_logging", "log_event"]

LOGGER_NAME = "ccai.gateway"


def configure_logging(level: int = logging.INFO) -> None:
    """Send ``ccai.gateway`` logs to stderr as JSON lines, the text under ``event`` (idempotent)."""
    configure_json_logging(LOGGER_NAME, text_key="event", level=level)


def log_event(event: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event with structured fields (never pass a secret)."""
    logging.getLogger(LOGGER_NAME).log(level, event, extra=fields)
