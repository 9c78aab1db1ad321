"""``ccai chat``: prints the verification summary then the streamed answer; refuses (exit 1, the
prompt unsent) a gateway whose attestation does not hold."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from ccai.cli._errors import exit_code_for
from ccai.cli.app import app
from ccai.errors import Error

from .conftest import WORDS, FakeGateway

runner = CliRunner()


def _run(*args: str) -> tuple[int, str, BaseException | None]:
    result = runner.invoke(app, list(args))
    if isinstance(result.exception, Error):
        return int(exit_code_for(result.exception)), result.output, result.exception
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output, None


def test_chat_streams_the_answer(gateway: FakeGateway) -> None:
    code, out, _ = _run("chat", gateway.url, "hi there", "--allow-simulated", "--model", "fake", "--json")
    assert code == 0, out
    document = json.loads(out)
    assert document["answer"] == "".join(WORDS)
    assert document["attestation"]["simulated"] is True
    assert document["attestation"]["hpke_public_key"] == gateway.middleware.key.public_key.hex()
    assert gateway.api_requests[0]["messages"][0]["content"] == "hi there"


def test_chat_refuses_without_allow_simulated(gateway: FakeGateway) -> None:
    code, _, error = _run("chat", gateway.url, "secret prompt", "--model", "fake")
    assert code == 1 and error is not None
    assert gateway.api_requests == []


def test_chat_refuses_a_wrong_nonce(gateway: FakeGateway) -> None:
    gateway.wrong_nonce = True
    code, _, error = _run("chat", gateway.url, "secret prompt", "--allow-simulated", "--model", "fake")
    assert code == 1 and type(error).__name__ == "NonceMismatch"
    assert gateway.api_requests == []
