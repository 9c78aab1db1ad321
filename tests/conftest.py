"""Shared fixtures: where the real vectors are, an isolated $CCAI_HOME per test, optional extras.

A test that needs an optional extra of ccai (pyproject.toml) carries ``@pytest.mark.extra("NAME")``
(``@pytest.mark.torch`` is the same as ``extra("torch")``) and is skipped, with the ``pip install``
line in the reason, when a module of that extra is missing. A test module that cannot even be
imported without an extra calls ``pytest.importorskip(MODULE, reason=...)`` naming the extra.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _vectors_root() -> Path:
    env = os.environ.get("CCAI_VECTORS")
    return Path(env) if env else REPO / "tests" / "vectors"


VECTORS = _vectors_root()

#: The modules that tell whether an extra is installed.
EXTRAS: dict[str, tuple[str, ...]] = {
    "service": ("fastapi", "uvicorn"),
    "gateway": ("pyhpke", "openai"),
    "torch": ("torch", "transformers", "safetensors"),
    "postgres": ("psycopg",),
    "plot": ("matplotlib",),
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "extra(name): needs the optional extra [name]; skipped when it is not installed"
    )


def missing_extra_reason(extra: str) -> str | None:
    """Why a test of ``extra`` cannot run here, or ``None`` when the extra is installed."""
    missing = [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return f"needs the [{extra}] extra ({', '.join(missing)} missing): pip install 'ccai[{extra}]'"


def pytest_runtest_setup(item: pytest.Item) -> None:
    extras = [str(mark.args[0]) for mark in item.iter_markers("extra")]
    if item.get_closest_marker("torch") is not None:
        extras.append("torch")
    for extra in extras:
        if extra not in EXTRAS:
            pytest.fail(f"unknown extra {extra!r} in a marker; known: {sorted(EXTRAS)}")
        reason = missing_extra_reason(extra)
        if reason is not None:
            pytest.skip(reason)


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
