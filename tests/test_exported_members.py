"""Pin the public surface: every package's ``__all__`` names exist and nothing private leaks."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import ccai

PACKAGES = sorted(
    m.name for m in pkgutil.walk_packages(ccai.__path__, "ccai.") if m.ispkg and "._" not in m.name
)


@pytest.mark.parametrize("name", ["ccai", *PACKAGES])
def test_all_names_exist_and_are_public(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    for member in exported:
        assert not member.startswith("_") or member == "__version__", f"{name} exports private {member}"
        assert hasattr(module, member), f"{name}.__all__ names missing {member}"


def test_error_tree_root() -> None:
    from ccai import errors

    for member in errors.__all__:
        assert issubclass(getattr(errors, member), errors.Error)
