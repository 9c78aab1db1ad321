"""Regression: the same GPU evidence listed three times verified as three GPUs.

Every GPU's report was genuine and bound to the nonce, so nothing refused the copies. The default GPU
policy (and the guard ccai puts around NVIDIA policy files) now requires distinct GPUs (distinct
``ueid`` claims), through the library and through ``ccai verify gpu``.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ccai.attest import collect_gpu_evidence
from ccai.cli.app import app
from ccai.errors import PolicyViolation
from ccai.evidence import dump_evidence_json
from ccai.verify import Verifier
from ccai.virtual import VirtualGpuBackend, virtual_trust_anchors


@pytest.fixture
def tripled(tmp_path: Path) -> tuple[VirtualGpuBackend, bytes, list]:  # type: ignore[type-arg]
    backend = VirtualGpuBackend.create(gpus=1)
    nonce = secrets.token_bytes(32)
    (item,) = collect_gpu_evidence(backend, nonce)
    return backend, nonce, [item, item, item]


def _rims(backend: VirtualGpuBackend, directory: Path) -> Path:
    directory.mkdir()
    for rim_id in backend.rim_ids(0):
        (directory / f"{rim_id}.xml").write_bytes(backend.rim(rim_id))
    return directory


def test_library_refuses_the_same_gpu_counted_three_times(tripled: tuple, tmp_path: Path) -> None:  # type: ignore[type-arg]
    backend, nonce, items = tripled
    verifier = Verifier.simulated(virtual_trust_anchors(backend.home))
    collateral = {rim_id: backend.rim(rim_id) for rim_id in backend.rim_ids(0)}
    from ccai.collateral import GpuCollateral

    gathered = GpuCollateral(rims=collateral, ocsp={}, ocsp_checked=False)
    assert verifier.verify_gpu(items[:1], nonce=nonce, collateral=gathered, reported_cc_mode="on")
    with pytest.raises(PolicyViolation, match="the same device as GPU-0") as info:
        verifier.verify_gpu(items, nonce=nonce, collateral=gathered, reported_cc_mode="on")
    assert info.value.step == "(12) policy"


def test_cli_refuses_the_same_gpu_counted_three_times(tripled: tuple, tmp_path: Path) -> None:  # type: ignore[type-arg]
    backend, nonce, items = tripled
    evidence = tmp_path / "evidence.json"
    evidence.write_bytes(dump_evidence_json(items))
    rim_dir = _rims(backend, tmp_path / "rims")
    args = ["verify", "gpu", str(evidence), "--nonce", nonce.hex(), "--rim-dir", str(rim_dir), "--offline"]
    result = CliRunner().invoke(app, [*args, "--allow-simulated", "--json"])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["error"]["class"] == "PolicyViolation"
    assert "the same device as GPU-0" in doc["error"]["message"]
