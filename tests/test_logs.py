"""``ccai._logs``: the JSON log lines the attestation service, the key broker and the gateway share."""

from __future__ import annotations

import json
import logging

import pytest

from ccai._logs import JsonFormatter, configure_json_logging


def test_a_record_is_one_json_object_with_its_fields() -> None:
    record = logging.LogRecord("ccai.kbs", logging.INFO, __file__, 1, "released", None, None)
    record.resource = "models/kek/m"
    doc = json.loads(JsonFormatter("event").format(record))
    assert doc["event"] == "released" and doc["resource"] == "models/kek/m"
    assert doc["level"] == "info" and doc["logger"] == "ccai.kbs" and "message" not in doc
    assert json.loads(JsonFormatter().format(record))["message"] == "released"


def test_configuring_twice_adds_one_handler(capsys: pytest.CaptureFixture[str]) -> None:
    name = "ccai.test-logs"
    configure_json_logging(name, text_key="event")
    configure_json_logging(name, text_key="event")
    logger = logging.getLogger(name)
    try:
        assert len(logger.handlers) == 1 and not logger.propagate
        logger.info("stored", extra={"version": 2})
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
    lines = capsys.readouterr().err.splitlines()
    assert [json.loads(line)["version"] for line in lines] == [2]
