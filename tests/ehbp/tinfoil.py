"""Tinfoil's own Python EHBP client (``tinfoil-ehbp`` from PyPI) in a venv of its own, for interop
tests: created once per version under ``$CCAI_CACHE`` (else pytest's cache directory, else
``~/.cache/ccai``) and reused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

import pytest

from ccai._embedded_model import ccai_cache

TINFOIL_EHBP_VERSION = "0.4.1"
SCRIPT = Path(__file__).with_name("tinfoil_client.py")


def tinfoil_python(config: pytest.Config) -> Path:
    """The interpreter of a venv with ``tinfoil-ehbp==0.4.1``; skips the test when pip cannot get it."""
    env_root = os.environ.get("CCAI_CACHE")
    cache = getattr(config, "cache", None)  # absent under ``-p no:cacheprovider``
    if env_root:
        root = Path(env_root)
    elif cache is not None:
        root = cache.mkdir("ccai-interop")
    else:
        root = ccai_cache() / "interop"
    home = root / f"tinfoil-ehbp-{TINFOIL_EHBP_VERSION}"
    python = home / "bin" / "python"
    ready = home / ".installed"
    if ready.exists():
        return python
    venv.EnvBuilder(with_pip=True, clear=True).create(home)
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", f"tinfoil-ehbp=={TINFOIL_EHBP_VERSION}"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if install.returncode != 0:
        pytest.skip(f"cannot install tinfoil-ehbp=={TINFOIL_EHBP_VERSION}: {install.stderr.strip()[-300:]}")
    ready.write_text(sys.version)
    return python


def run_tinfoil_client(
    python: Path, url: str, json_path: str, json_body: Any, stream_path: str, stream_body: Any
) -> dict[str, Any]:
    """Run tinfoil_client.py against ``url``; its JSON report."""
    done = subprocess.run(
        [
            str(python),
            str(SCRIPT),
            url,
            json_path,
            json.dumps(json_body),
            stream_path,
            json.dumps(stream_body),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report
