"""``ccai demo``: the virtual-GPU flow runs end to end and says it is simulated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ccai.cli.app import app
from ccai.cli.demo import run_demo
from ccai.cli.gpu import ArchChoice
from ccai.evidence import parse_evidence_json

pytestmark = pytest.mark.extra("service")  # the demo runs the dev collateral server

runner = CliRunner()


def test_demo_runs_and_is_labelled() -> None:
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "SIMULATED" in result.stdout
    assert "NV_GPU_DRIVER_GH100_" in result.stdout
    assert "demo finished" in result.stdout


def test_demo_json() -> None:
    result = runner.invoke(app, ["demo", "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    doc = json.loads(result.stdout)
    assert doc["simulated"] is True and doc["result"] == "ok"
    titles = [step["title"] for step in doc["steps"]]
    assert titles[0] == "create virtual CC GPUs"
    assert "check report signatures and nonces" in titles
    last = next(s for s in doc["steps"] if s["title"] == "RIM ids and opaque fields")["gpus"][0]
    assert last["driver_rim_id"].startswith("NV_GPU_DRIVER_GH100_")
    assert last["vbios_rim_id"].startswith("NV_GPU_VBIOS_")
    assert "FWID" in last["opaque"]


def test_demo_keeps_state_in_given_home(tmp_path: Path) -> None:
    run = run_demo(
        home=tmp_path,
        gpus=2,
        arch=ArchChoice.BLACKWELL,
        token_bytes=lambda n: bytes(range(n)),
        verbose=False,
    )
    nonce_step = next(s for s in run.steps if s["title"] == "draw a fresh verifier nonce")
    assert nonce_step["nonce"] == bytes(range(32)).hex()
    items = parse_evidence_json((tmp_path / "demo-evidence.json").read_bytes())
    assert [i.arch for i in items] == ["BLACKWELL", "BLACKWELL"]
    assert all(i.nonce == bytes(range(32)) for i in items)
    shown = next(s for s in run.steps if s["title"] == "RIM ids and opaque fields")
    assert shown["gpus"][0]["driver_rim_id"].startswith("NV_GPU_CC_DRIVER_")
    verified = run.steps[-1]
    assert verified["overall"]["x-nvidia-overall-att-result"] is True
    assert verified["claims"]["GPU-1"]["x-ccai-simulated"] is True
