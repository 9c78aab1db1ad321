"""Shared fixtures: where the real vectors are, and an isolated $CCAI_HOME per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _vectors_root() -> Path:
    env = os.environ.get("CCAI_VECTORS")
    return Path(env) if env else REPO / "tests" / "vectors"


VECTORS = _vectors_root()


@pytest.fixture(scope="session")
def vectors() -> Path:
    """Root of the real evidence vectors (the project's copy in ``tests/vectors``, or $CCAI_VECTORS)."""
    if not VECTORS.is_dir():
        pytest.fail(f"real vectors not found at {VECTORS}; set CCAI_VECTORS")
    return VECTORS


@pytest.fixture(autouse=True)
def ccai_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own $CCAI_HOME so virtual-hardware state never leaks between tests."""
    home = tmp_path_factory.mktemp("ccai_home")
    monkeypatch.setenv("CCAI_HOME", str(home))
    yield home
