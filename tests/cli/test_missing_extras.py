"""A command that needs an optional extra exits 2 with a one-line ``pip install 'ccai[…]'`` hint.

The missing module is simulated by a ``None`` entry in ``sys.modules`` (what ``import`` then reports
as ``ModuleNotFoundError`` with the module's name), so the test runs with or without the extras.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ccai.cli.__main__ import main
from ccai.cli._errors import ExitCode, exit_code_for, missing_extra


def _run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["ccai", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return int(exit_info.value.code or 0), capsys.readouterr().err


def test_missing_extra_maps_module_to_extra() -> None:
    assert missing_extra(ModuleNotFoundError("x", name="uvicorn")) == ("uvicorn", "service")
    assert missing_extra(ModuleNotFoundError("x", name="transformers.models")) == ("transformers", "torch")
    assert missing_extra(ModuleNotFoundError("x", name="matplotlib")) == ("matplotlib", "plot")
    assert missing_extra(ModuleNotFoundError("x", name="not_an_extra")) is None
    assert missing_extra(ValueError("uvicorn")) is None
    assert exit_code_for(ModuleNotFoundError("x", name="psycopg")) is ExitCode.USAGE


@pytest.mark.parametrize(
    ("argv", "module", "extra"),
    [
        (["dev", "collateral-server", "--port", "1"], "uvicorn", "service"),
        (["bench", "load", "--size", "0.001", "--device", "cpu", "--repeats", "1"], "torch", "torch"),
        (["demo", "--json"], "fastapi", "service"),
    ],
)
def test_command_without_its_extra_exits_2_with_a_hint(
    argv: list[str],
    module: str,
    extra: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    code, err = _run(monkeypatch, capsys, *argv)
    assert code == 2, err
    assert f"pip install 'ccai[{extra}]'" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_dev_engine_without_transformers_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setattr("shutil.which", lambda _name: None)
    code, err = _run(monkeypatch, capsys, "dev", "engine", str(tmp_path / "model"))
    assert code == 2, err
    assert "pip install 'ccai[torch]'" in err and "Traceback" not in err
    monkeypatch.setitem(sys.modules, "torch", None)
    code, err = _run(monkeypatch, capsys, "dev", "engine", "--random", "llama:tiny")
    assert code == 2 and "pip install 'ccai[torch]'" in err, err
