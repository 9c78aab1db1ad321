"""``--help`` of every command, ``--version`` and shell completion.

Regressions: every flag showed a ``<bool>`` placeholder that read as if it took a value, usage
lines showed required arguments as ``{model_dir}`` / ``{BUNDLE}``, ``ccai verify --help`` never
mentioned the ``ccai verify BUNDLE`` form, and there was no ``--version`` and no completion.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.core import TyperArgument
from typer.testing import CliRunner

from ccai.cli._help import CcaiCommand, CcaiGroup
from ccai.cli.app import app

runner = CliRunner()


def _commands(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, cmd
    for name, sub in (getattr(cmd, "commands", None) or {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))

#: A metavar in braces: ``{model_dir}``, ``{BUNDLE}`` (help texts may hold JSON like ``{arch, nonce}``).
BRACED = re.compile(r"\{[A-Za-z_][A-Za-z0-9_.-]*\}")
#: A quoted template a help text documents on purpose (``"CMD {model_dir} {port}"``).
QUOTED = re.compile(r'"[^"]{0,300}"')


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=[" ".join(p) or "ccai" for p, _ in COMMANDS])
def test_help_shows_no_bool_placeholder_and_no_braced_metavar(path: tuple[str, ...], cmd: Any) -> None:
    assert isinstance(cmd, CcaiCommand | CcaiGroup), type(cmd)
    result = runner.invoke(app, [*path, "--help"], prog_name="ccai", terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    unquoted = QUOTED.sub('""', result.output)
    assert not BRACED.search(unquoted), BRACED.search(unquoted)
    usage = next(line for line in result.output.splitlines() if "Usage:" in line)
    assert "{" not in usage and "}" not in usage, usage
    for param in cmd.params:
        if isinstance(param, TyperArgument):
            shown = param.metavar or param.name.upper()
            assert shown == shown.upper() and (shown in usage), (shown, usage)


def test_usage_marks_optional_arguments_with_brackets() -> None:
    seal = runner.invoke(app, ["seal", "--help"], prog_name="ccai", terminal_width=200).output
    assert "ccai seal [OPTIONS] MODEL_DIR" in seal
    gpu = runner.invoke(app, ["verify", "gpu", "--help"], prog_name="ccai", terminal_width=200).output
    assert "ccai verify gpu [OPTIONS] [EVIDENCE]" in gpu


def test_verify_help_shows_the_bundle_form() -> None:
    result = runner.invoke(app, ["verify", "--help"], prog_name="ccai", terminal_width=200)
    assert result.exit_code == 0
    assert "ccai verify [OPTIONS] COMMAND [ARGS]..." in result.output
    assert "or: ccai verify BUNDLE [OPTIONS]" in result.output
    assert "short for ccai verify bundle BUNDLE" in result.output


def test_version() -> None:
    expected = importlib.metadata.version("ccai")
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"ccai {expected}\n"
    result = runner.invoke(app, ["--version", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == {"ccai": expected}


def test_root_json_without_version_is_a_usage_error() -> None:
    result = runner.invoke(app, ["--json", "gpu", "status"])
    assert result.exit_code != 0
    assert "--json goes after the command" in str(result.exception)


def test_shell_completion_completes_commands() -> None:
    env = {"_CCAI_COMPLETE": "complete_bash", "COMP_WORDS": "ccai ver", "COMP_CWORD": "1"}
    result = runner.invoke(app, [], prog_name="ccai", env=env)
    assert result.exit_code == 0 and result.output.split() == ["verify"]
    env = {"_CCAI_COMPLETE": "complete_bash", "COMP_WORDS": "ccai verify g", "COMP_CWORD": "2"}
    result = runner.invoke(app, [], prog_name="ccai", env=env)
    assert result.output.split() == ["gpu"]


def test_root_help_offers_completion_and_version() -> None:
    result = runner.invoke(app, ["--help"], prog_name="ccai", terminal_width=200)
    assert result.exit_code == 0
    for flag in ("--version", "--install-completion", "--show-completion"):
        assert flag in result.output
