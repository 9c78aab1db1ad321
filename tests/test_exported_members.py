"""Pin the public surface, httpx's way: each package's ``__all__`` is exactly its public namespace.

Every public name a package's ``__init__`` binds is in ``__all__``, and every name in ``__all__`` is
bound. Sub-modules (which Python binds on the package as they are imported), the ``annotations``
feature of ``from __future__ import annotations`` and ``typing.TYPE_CHECKING`` are not part of the
surface.
"""

from __future__ import annotations

import importlib
import pkgutil
import types

import pytest

import ccai

PACKAGES = sorted(
    m.name for m in pkgutil.walk_packages(ccai.__path__, "ccai.") if m.ispkg and "._" not in m.name
)

# Bound by ``from __future__ import annotations`` and ``from typing import TYPE_CHECKING``.
_NOT_SURFACE = frozenset({"annotations", "TYPE_CHECKING"})

# Packages whose import needs an optional extra: (module that must be importable, extra).
_EXTRAS: dict[str, tuple[str, str]] = {}


def _public_namespace(module: types.ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and name not in _NOT_SURFACE and not isinstance(value, types.ModuleType)
    }


def test_every_package_is_covered() -> None:
    assert "ccai.openai_protocol" in PACKAGES and "ccai.bench" in PACKAGES and "ccai.verify" in PACKAGES


@pytest.mark.parametrize("name", ["ccai", *PACKAGES])
def test_all_is_the_public_namespace(name: str) -> None:
    if name in _EXTRAS:
        needed, extra = _EXTRAS[name]
        pytest.importorskip(needed, reason=f"{name} needs the [{extra}] extra")
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert len(exported) == len(set(exported)), f"{name}.__all__ repeats a name"
    for member in exported:
        assert not member.startswith("_") or member == "__version__", f"{name} exports private {member}"
    missing = [member for member in exported if not hasattr(module, member)]
    assert not missing, f"{name}.__all__ names what the package does not define: {missing}"
    unlisted = _public_namespace(module) - set(exported)
    assert not unlisted, f"{name} has public names missing from __all__: {sorted(unlisted)}"


def test_error_tree_root() -> None:
    from ccai import errors

    for member in errors.__all__:
        assert issubclass(getattr(errors, member), errors.Error)
