"""The sealed-model commands, run through the real Typer app and the real exit-code mapping."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")


def ccai(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ccai.cli", *args], capture_output=True, text=True, check=False, timeout=120
    )


def test_cli_keys_seal_inspect_unseal_rewrap(model_dir: Path, tmp_path: Path, ram_dir: Path) -> None:
    kek = tmp_path / "kek.json"
    made = ccai("keys", "new", "-o", str(kek), "--kid", "cli-kek", "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["kid"] == "cli-kek"
    assert stat.S_IMODE(kek.stat().st_mode) == 0o600

    sealed = tmp_path / "sealed"
    result = ccai(
        "seal", str(model_dir), "-o", str(sealed), "--kek", str(kek), "--chunk-mib", "0.0625", "--json"
    )
    assert result.returncode == 0, result.stderr
    sealed_doc = json.loads(result.stdout)
    assert sealed_doc["kid"] == "cli-kek" and sealed_doc["chunk_size"] == 65536
    assert {f["name"] for f in sealed_doc["files"]} >= {"config.json", "model-00001.safetensors"}

    public = ccai("sealed", "inspect", str(sealed), "--json")
    assert public.returncode == 0 and "files" not in json.loads(public.stdout)
    full = ccai("sealed", "inspect", str(sealed), "--kek", str(kek), "--json", "--tensors")
    doc = json.loads(full.stdout)
    shard = next(f for f in doc["files"] if f["name"] == "model-00001.safetensors")
    assert shard["tensors"] and {"name", "dtype", "shape", "offset", "size"} <= set(shard["tensors"][0])
    human = ccai("sealed", "inspect", str(sealed), "--kek", str(kek))
    assert human.returncode == 0 and "config.json" in human.stdout

    out = ram_dir / "plain"
    unsealed = ccai("unseal", str(sealed), "-o", str(out), "--kek", str(kek), "--json")
    assert unsealed.returncode == 0, unsealed.stderr
    assert (out / "config.json").read_bytes() == (model_dir / "config.json").read_bytes()

    new = tmp_path / "new.json"
    assert ccai("keys", "new", "-o", str(new)).returncode == 0
    rotated = ccai("sealed", "rewrap", str(sealed), "--kek", str(kek), "--new-kek", str(new), "--json")
    assert rotated.returncode == 0, rotated.stderr
    old_fails = ccai("sealed", "inspect", str(sealed), "--kek", str(kek))
    assert old_fails.returncode == 1 and "UnsealError" in old_fails.stderr
    assert ccai("sealed", "inspect", str(sealed), "--kek", str(new)).returncode == 0


def test_cli_errors(model_dir: Path, tmp_path: Path, ram_dir: Path) -> None:
    kek, other = tmp_path / "k.json", tmp_path / "o.json"
    ccai("keys", "new", "-o", str(kek))
    ccai("keys", "new", "-o", str(other))
    missing = ccai("seal", str(tmp_path / "nope"), "-o", str(tmp_path / "s"), "--kek", str(kek))
    assert missing.returncode == 2 and "not found" in missing.stderr
    assert "sealing" not in missing.stderr  # the progress bar appears only once bytes flow
    shown = ccai("seal", str(model_dir), "-o", str(tmp_path / "s2"), "--kek", str(kek))
    assert shown.returncode == 0 and "sealing" in shown.stderr
    sealed = tmp_path / "s"
    assert ccai("seal", str(model_dir), "-o", str(sealed), "--kek", str(kek), "--json").returncode == 0
    wrong = ccai("unseal", str(sealed), "-o", str(ram_dir / "u"), "--kek", str(other), "--json")
    assert wrong.returncode == 1 and "UnsealError" in wrong.stderr
    assert not (ram_dir / "u").exists()
    no_key = ccai("unseal", str(sealed), "-o", str(ram_dir / "u"), "--kek", str(tmp_path / "none.json"))
    assert no_key.returncode == 2
    exists = ccai("keys", "new", "-o", str(kek))
    assert exists.returncode == 2


def test_bench_load_command_reports_every_method(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ccai.cli.app import app

    result = CliRunner().invoke(
        app,
        [
            "bench",
            "load",
            "--size",
            "0.02",
            "--device",
            "cpu",
            "--threads",
            "1,2",
            "--chunk-mib",
            "1",
            "--repeats",
            "1",
            "--workdir",
            str(tmp_path),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["identical"] is True
    methods = [(r["method"], r["threads"]) for r in report["rows"]]
    assert methods == [
        ("safetensors", 0),
        ("pipeline-plain", 1),
        ("sealed", 1),
        ("pipeline-plain", 2),
        ("sealed", 2),
    ]
    assert all(r["gbps"] > 0 for r in report["rows"])
    assert list(tmp_path.iterdir()) == []  # scratch removed
