"""Importing a library package loads only what it needs: no HTTP stack for the verifier's inputs,
no web framework for the virtual hardware, and no upstream-to-downstream imports."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _loaded_after(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def _tops(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


@pytest.mark.parametrize("module", ["ccai.virtual", "ccai.collateral", "ccai.evidence", "ccai.verify"])
def test_no_http_or_web_framework_at_import(module: str) -> None:
    assert not _tops(_loaded_after(module)) & {"httpx", "fastapi", "starlette", "uvicorn"}


def test_evidence_does_not_import_collateral() -> None:
    loaded = _loaded_after("ccai.evidence")
    assert not {m for m in loaded if m.startswith(("ccai.collateral", "ccai.attest", "ccai.virtual"))}


def test_device_and_tee_do_not_import_the_virtual_hardware() -> None:
    for module in ("ccai.device", "ccai.tee"):
        assert not {m for m in _loaded_after(module) if m.startswith("ccai.virtual")}, module
