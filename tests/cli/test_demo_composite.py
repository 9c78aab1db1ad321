"""ccai demo boots a virtual TDX VM with virtual GPUs and verifies the composite bundle."""

from __future__ import annotations

from pathlib import Path

import pytest

from ccai.cli.demo import run_demo
from ccai.cli.gpu import ArchChoice
from ccai.collateral import load_embedded_collateral
from ccai.evidence import load_evidence_bundle


@pytest.mark.extra("service")  # the demo runs the dev collateral server
def test_demo_verifies_the_composite_bundle(tmp_path: Path) -> None:
    run = run_demo(
        home=tmp_path, gpus=2, arch=ArchChoice.HOPPER, token_bytes=lambda n: b"\x42" * n, verbose=False
    )
    verified = next(s for s in run.steps if s["title"].startswith("verify the composite bundle"))
    assert [s["outcome"] for s in verified["steps"]][-1] == "ok"
    assert verified["tcb_status"] == "UpToDate" and verified["gpus"] == 2
    assert verified["swapped_gpu_evidence"] == "rejected: BindingError"
    bundle = load_evidence_bundle((tmp_path / "demo-bundle.json").read_bytes())
    assert bundle.nonce == b"\x42" * 32 and bundle.cpu is not None and bundle.cpu.type == "tdx"
    collateral = load_embedded_collateral(bundle)
    assert collateral is not None and "tdx" in collateral.cpu
