"""The transformers serve command line that ``ccai dev engine`` builds (no process is started)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from ccai.openai_protocol import default_attn_implementation, engine_command


@pytest.fixture
def model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A model directory, and a ``transformers`` command wherever the [torch] extra is missing."""
    if shutil.which("transformers") is None and not Path(sys.executable).with_name("transformers").exists():
        monkeypatch.setattr(shutil, "which", lambda name: f"/opt/bin/{name}")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    return tmp_path / "m"


def test_cpu_engine_runs_one_torch_thread(model_dir: Path, tmp_path: Path) -> None:
    cmd = engine_command(model_dir, hf_cache=tmp_path / "hub", port=9001)
    assert cmd.argv[1:3] == ("serve", str(model_dir.resolve()))
    assert "--continuous-batching" in cmd.argv and "--attn-implementation" not in cmd.argv
    assert cmd.argv[cmd.argv.index("--log-level") + 1] == "info"
    assert cmd.env["OMP_NUM_THREADS"] == "1" and cmd.settings["omp_num_threads"] == "1"
    assert cmd.url == "http://127.0.0.1:9001" and cmd.model == str(model_dir.resolve())
    free = engine_command(model_dir, hf_cache=tmp_path / "hub", cpu_threads=None)
    assert "OMP_NUM_THREADS" not in free.env


def test_cuda_engine_options(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return object() if name == "flash_attn" else (None if name == "flash_attn_interface" else real(name))

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert default_attn_implementation("cuda:0") == "flash_attention_2"
    assert default_attn_implementation("cpu") is None
    cmd = engine_command(
        model_dir, hf_cache=tmp_path / "hub", device="cuda", cuda_graphs=True, max_batch_tokens=4096
    )
    argv = list(cmd.argv)
    assert argv[argv.index("--attn-implementation") + 1] == "flash_attention_2"
    assert "--cb-use-cuda-graph" in argv and argv[argv.index("--cb-max-batch-tokens") + 1] == "4096"
    assert "OMP_NUM_THREADS" not in cmd.env
    assert cmd.settings["attn_implementation"] == "flash_attention_2" and cmd.settings["cuda_graphs"] is True
    off = engine_command(
        model_dir, hf_cache=tmp_path / "hub", device="cuda", attn_implementation="sdpa", cuda_graphs=False
    )
    assert off.argv[off.argv.index("--attn-implementation") + 1] == "sdpa"
    assert "--no-cb-use-cuda-graph" in off.argv
