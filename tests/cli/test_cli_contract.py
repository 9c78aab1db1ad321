"""Every ``ccai`` command keeps the scripting contract, through the real entry point.

The contract (README, "Exit codes"): with ``--json`` on the command line stdout carries exactly one
JSON document whatever happens — on failure ``{"result": "error", "error": {"class", "message",
"exit_code", …}}``, for the verification commands with the steps that ran in the same document —
stderr carries one ``error:`` line (plus its detail lines) and never a traceback, and the exit code
says what kind of failure it was (never 70 for bad input).

Each case runs ``python -m ccai.cli`` in a subprocess (``main()`` as installed, reading
``sys.argv``), a few at a time. Commands that start servers or long jobs (``dev engine``,
``dev collateral-server``, ``bench serve``, ``demo``) only get arguments that fail before anything
starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.core import TyperArgument, TyperOption

import ccai
from ccai.cli import evidence
from ccai.cli.__main__ import main
from ccai.cli.app import app

NONCE = "4cff7f5380ead8fad8ec2c531c110aca4302a88f603792801a8ca29ee151af2e"
SRC = Path(ccai.__file__).resolve().parent.parent


def _commands(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, cmd
    for name, sub in (getattr(cmd, "commands", None) or {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))
LEAVES = [(path, cmd) for path, cmd in COMMANDS if not getattr(cmd, "commands", None)]


def _file_argument(cmd: Any) -> bool:
    return any(isinstance(p, TyperArgument) and p.type_descriptor.is_path for p in cmd.params)


#: Commands that take a file or directory argument; ``verify`` alone is ``verify bundle``.
FILE_COMMANDS = [path for path, cmd in LEAVES if _file_argument(cmd)] + [("verify",)]


def _leading_values(cmd: Any) -> list[str]:
    """Placeholder values for the positional arguments before the file argument (``policy set NAME FILE``)."""
    values = []
    for param in cmd.params:
        if not isinstance(param, TyperArgument):
            continue
        if param.type_descriptor.is_path:
            break
        values.append("placeholder")
    return values


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def _ccai(args: list[str], home: Path) -> Result:
    env = {key: value for key, value in os.environ.items() if key != "CCAI_DEBUG"}
    env |= {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
        "CCAI_HOME": str(home),
        "NO_COLOR": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "ccai.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=home,
        timeout=120,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


#: Options without which a command refuses before it reads its file argument.
EXTRA = {("unseal",): ["--force-disk"]}


def _required_values(path: tuple[str, ...], cmd: Any, files: dict[str, str]) -> list[str]:
    """Values for a command's required options (and ``--nonce``), so that its file argument is
    what fails."""
    args = list(EXTRA.get(path, []))
    for param in cmd.params:
        if not isinstance(param, TyperOption):
            continue
        long = max(param.opts, key=len)
        if param.required or long == "--nonce":
            assert long in files, f"{cmd.name}: no test value for the required option {long}"
            args += [long, files[long]]
    return args


def _cases(tmp: Path, vectors: Path) -> dict[str, tuple[list[str], Path]]:
    """Every case: id → (arguments, $CCAI_HOME and working directory)."""
    files = {
        "--nonce": NONCE,
        "--output": str(tmp / "out" / "result"),
        "--kek": str(tmp / "kek.json"),
        "--new-kek": str(tmp / "kek2.json"),
    }
    cases: dict[str, tuple[list[str], Path]] = {}
    for path, _ in COMMANDS:
        cases["unknown-option:" + " ".join(path)] = ([*path, "--no-such-flag", "--json"], tmp)
    garbage = tmp / "garbage.bin"
    garbage.write_bytes(b"\x00\xffnot evidence, not JSON, not a model\n" * 8)
    for path in FILE_COMMANDS:
        cmd = dict(COMMANDS)[path if path != ("verify",) else ("verify", "bundle")]
        options = _required_values(path, cmd, files)
        lead = _leading_values(cmd)
        name = " ".join(path)
        cases["missing-file:" + name] = ([*path, *lead, str(tmp / "no-such-file"), *options, "--json"], tmp)
        cases["garbage-file:" + name] = ([*path, *lead, str(garbage), *options, "--json"], tmp)
    cpu = vectors / "cpu"
    simulated = ("--nonce", NONCE, "--offline", "--allow-simulated", "--json")
    cases |= {
        "exit-3:verify gpu": (["verify", "gpu", "gpu-evidence.json", *simulated], tmp / "gpu"),
        "exit-3:verify BUNDLE": (["verify", "bundle.json", *simulated], tmp / "vm"),
        "exit-3:verify tdx": (
            ["verify", "tdx", str(cpu / "tdx/dcap-qvl/tdx_quote"), "--at", "2025-06-20", "--json"],
            tmp,
        ),
        "exit-3:verify snp": (
            ["verify", "snp", str(cpu / "snp/teekit/sev-gcp.bin"), "--at", "2026-01-01", "--json"],
            tmp,
        ),
    }
    return cases


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory, vectors: Path) -> dict[str, Result]:
    """Run every case (a few processes at a time) after making the inputs the exit-3 cases need."""
    home = tmp_path_factory.mktemp("contract")
    (home / "gpu").mkdir()
    (home / "vm").mkdir()
    # Each virtual machine in its own $CCAI_HOME: one must not replace the other's test PKI.
    setup = [
        (["keys", "new", "-o", "kek.json"], home),
        (["keys", "new", "-o", "kek2.json"], home),
        (["gpu", "evidence", "--simulate", "--nonce", NONCE, "-o", "gpu-evidence.json"], home / "gpu"),
        (["attest", "--simulate", "tdx", "--nonce", NONCE, "-o", "bundle.json"], home / "vm"),
    ]
    cases = _cases(home, vectors)
    with ThreadPoolExecutor(max_workers=4) as pool:
        for (args, _), made in zip(setup, pool.map(lambda case: _ccai(*case), setup), strict=True):
            assert made.code == 0, (args, made.err)
        done = pool.map(lambda case: _ccai(*case), cases.values())
        return dict(zip(cases, done, strict=True))


def _one_error_document(result: Result) -> dict[str, Any]:
    """The checks every failure shares; returns the one JSON document."""
    assert "Traceback" not in result.err, result.err
    assert [line for line in result.err.splitlines() if line.startswith("error:")] != [], result.err
    assert len([line for line in result.err.splitlines() if "error:" in line]) == 1, result.err
    doc = json.loads(result.out)  # exactly one document: a second one would be "Extra data"
    assert isinstance(doc, dict), result.out
    assert doc["result"] == "error"
    error = doc["error"]
    assert {"class", "message", "exit_code"} <= error.keys()
    assert error["exit_code"] == result.code
    assert error["message"] and error["message"] in result.err, (error, result.err)
    return doc


@pytest.mark.parametrize("path", [path for path, _ in COMMANDS], ids=lambda p: " ".join(p) or "ccai")
def test_unknown_option_is_usage_exit_2_with_one_json_document(
    path: tuple[str, ...], results: dict[str, Result]
) -> None:
    result = results["unknown-option:" + " ".join(path)]
    assert result.code == 2, result
    doc = _one_error_document(result)
    assert doc["error"]["class"] == "UsageError"
    assert doc["error"]["message"].startswith("No such option: --no-such-flag")
    assert doc["error"]["hint"].endswith(" --help")
    assert result.err.startswith("error: UsageError: No such option: --no-such-flag")


@pytest.mark.parametrize("path", FILE_COMMANDS, ids=" ".join)
@pytest.mark.parametrize("case", ["missing-file", "garbage-file"])
def test_bad_file_is_exit_1_or_2_with_one_json_document(
    path: tuple[str, ...], case: str, results: dict[str, Result]
) -> None:
    result = results[f"{case}:{' '.join(path)}"]
    assert result.code in (1, 2), result
    doc = _one_error_document(result)
    if case == "missing-file":
        assert "no-such-file" in doc["error"]["message"], doc


@pytest.mark.parametrize("command", ["verify gpu", "verify BUNDLE", "verify tdx", "verify snp"])
def test_collateral_unavailable_document_holds_the_steps_that_ran(
    command: str, results: dict[str, Result]
) -> None:
    result = results["exit-3:" + command]
    assert result.code == 3, result
    doc = _one_error_document(result)
    assert doc["error"]["class"] == "CollateralUnavailable"
    steps = {step["step"]: step["status"] for step in doc["steps"]}
    assert next(iter(steps.values())) == "ok", steps  # a step ran, and its result is kept
    assert steps.get(doc["error"]["step"]) in ("failed", None), steps
    assert "claims" in doc


# -- failures that are not ccai errors, through main() in this process ---------------------------


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    captured = capsys.readouterr()
    return Result(int(info.value.code or 0), captured.out, captured.err)


def test_internal_error_is_exit_70_with_one_json_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def bug(_: bytes) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(evidence, "describe_file", bug)
    (tmp_path / "e.json").write_text("[]")
    result = _main(capsys, "evidence", "inspect", str(tmp_path / "e.json"), "--json")
    assert result.code == 70
    assert json.loads(result.out)["error"]["class"] == "RuntimeError"
    assert json.loads(result.out)["error"]["exit_code"] == 70
    assert result.err.startswith("internal error: RuntimeError: a bug")


def test_missing_extra_is_exit_2_with_one_json_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def needs_torch(_: bytes) -> None:
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    monkeypatch.setattr(evidence, "describe_file", needs_torch)
    (tmp_path / "e.json").write_text("[]")
    result = _main(capsys, "evidence", "inspect", str(tmp_path / "e.json"), "--json")
    assert result.code == 2
    doc = _one_error_document(result)
    needs = "this command needs torch (the [torch] extra): pip install 'ccai[torch]'"
    assert doc["error"]["message"] == needs


def test_without_json_stdout_stays_empty_on_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    result = _main(capsys, "verify", "gpu", "--no-such-flag")
    assert result.code == 2 and result.out == ""
    first, hint = result.err.splitlines()  # one line for the error, one for the hint
    assert first == "error: UsageError: No such option: --no-such-flag"
    assert hint.startswith("  hint:") and hint.endswith(" verify gpu --help")


def test_arguments_after_double_dash_do_not_ask_for_json(capsys: pytest.CaptureFixture[str]) -> None:
    result = _main(capsys, "evidence", "inspect", "--", "--json")
    assert result.code == 2 and result.out == ""
