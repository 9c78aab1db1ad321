"""The package layout follows the data flow: check every import in ``src/ccai`` against the table.

The table below (mirrored in ``docs/architecture.md``) says which ccai packages each package may
import. An entry ``A: {B, C}`` allows A to import B and C, and everything B and C may import in turn
(imports point downstream only; the table is checked to be acyclic). Every package may use the
foundation modules. On top of the table:

* no module imports a private module (a name starting with ``_``) of another package: packages talk
  through their curated ``__init__``;
* ``verify`` stays a pure appraisal core: never ``virtual``, ``tee`` or ``attest``, and no HTTP or
  server library;
* a module that is in neither the table nor the foundation may import nothing from ccai (it has no
  place in the data flow yet).

Imports are read with :mod:`ast`, including lazy imports inside functions and ``TYPE_CHECKING``
blocks: both couple the packages. ``importlib.import_module`` with a computed name is not seen.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"

#: Modules every package may import (and that import only each other).
FOUNDATION = frozenset(
    {
        "ccai",
        "ccai.errors",
        "ccai._binary",
        "ccai._time",
        "ccai._home",
        "ccai._types",
        "ccai._json",
        "ccai._files",
        "ccai._net",
        "ccai._logs",
        "ccai._database",
        "ccai._embedded_model",
    }
)

#: Allowed import directions between the top-level packages of ccai, in data-flow order.
#: A package may import the packages listed and, through them, whatever those may import.
ALLOWED: Mapping[str, frozenset[str]] = {
    "evidence": frozenset(),
    "device": frozenset({"evidence"}),
    "tee": frozenset({"evidence"}),
    "collateral": frozenset({"evidence"}),
    "verify": frozenset({"collateral", "evidence"}),
    "token": frozenset({"verify"}),
    "attest": frozenset({"device", "tee", "evidence", "collateral"}),
    "virtual": frozenset({"device", "tee", "evidence", "collateral", "token"}),
    "sealed": frozenset(),
    "service": frozenset({"verify", "token", "collateral", "evidence", "sealed"}),
    "kbs": frozenset({"verify", "token", "collateral", "evidence", "sealed"}),
    "openai_protocol": frozenset(),
    # EHBP: encrypted HTTP bodies (the foundation only); the gateway, the client, bench and cli use it.
    "ehbp": frozenset(),
    # kbs: its guest-side client (the public names of ccai.kbs; nothing private, as for every package).
    "gateway": frozenset(
        {"attest", "verify", "token", "sealed", "openai_protocol", "kbs", "virtual", "ehbp"}
    ),
    "client": frozenset({"verify", "evidence", "token", "openai_protocol", "ehbp"}),
    "bench": frozenset(
        {
            "openai_protocol",
            "ehbp",
            "client",
            "sealed",
            "verify",
            "virtual",
            "device",
            "evidence",
            "collateral",
            "token",
            "attest",
        }
    ),
    "cli": frozenset(
        {
            "device",
            "tee",
            "virtual",
            "attest",
            "evidence",
            "collateral",
            "verify",
            "token",
            "service",
            "kbs",
            "sealed",
            "openai_protocol",
            "ehbp",
            "gateway",
            "client",
            "bench",
        }
    ),
}

#: Imports that must never happen, whatever the table says (ccai packages or top-level third-party names).
NEVER: Mapping[str, frozenset[str]] = {
    "verify": frozenset(
        {
            "ccai.virtual",
            "ccai.tee",
            "ccai.attest",
            "httpx",
            "fastapi",
            "uvicorn",
            "starlette",
            "requests",
            "aiohttp",
            "urllib3",
        }
    ),
}


def closure(package: str) -> frozenset[str]:
    """Every package ``package`` may import: the table's entries, followed transitively."""
    seen: set[str] = set()
    todo = list(ALLOWED[package])
    while todo:
        dep = todo.pop()
        if dep not in seen:
            seen.add(dep)
            todo.extend(ALLOWED.get(dep, ()))
    return frozenset(seen)


@dataclass(frozen=True, slots=True, kw_only=True)
class Violation:
    """One import the architecture does not allow."""

    importer: str
    imported: str
    why: str

    @property
    def pair(self) -> tuple[str, str]:
        """``(importer, imported)``."""
        return (self.importer, self.imported)

    def __str__(self) -> str:
        return f"{self.importer} imports {self.imported}: {self.why}"


def module_name(path: Path, root: Path) -> str:
    """The dotted module name of a file below ``root`` (the directory that holds ``ccai/``)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def read_tree(root: Path) -> dict[str, tuple[str, bool]]:
    """``{module: (source, is_package)}`` for every ``.py`` file under ``root/ccai``."""
    return {
        module_name(path, root): (path.read_text(encoding="utf-8"), path.name == "__init__.py")
        for path in sorted((root / "ccai").rglob("*.py"))
    }


def imports_of(module: str, source: str, *, is_package: bool, known: frozenset[str]) -> Iterator[str]:
    """The modules one source file imports (``from X import y`` gives ``X.y`` when that is a module)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source, filename=module)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            yield target
            for alias in node.names:
                if f"{target}.{alias.name}" in known:
                    yield f"{target}.{alias.name}"


def unit_of(module: str) -> str | None:
    """The table entry a ccai module belongs to: a package name, ``"foundation"``, or ``None``."""
    if module in FOUNDATION:
        return "foundation"
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in ALLOWED:
        return parts[1]
    return None


def _is_private_of_other(importer_unit: str | None, imported: str) -> bool:
    parts = imported.split(".")
    return (
        len(parts) >= 3
        and parts[1] in ALLOWED
        and parts[1] != importer_unit
        and any(p.startswith("_") and not p.startswith("__") for p in parts[2:])
    )


def check_import(importer: str, imported: str) -> Violation | None:
    """Why ``importer`` may not import ``imported``, or ``None`` when it may."""
    unit = unit_of(importer)
    never = NEVER.get(unit or "", frozenset())
    top = imported.split(".", maxsplit=1)[0]
    for banned in never:
        if imported == banned or imported.startswith(banned + ".") or (top == banned and "." not in banned):
            return Violation(importer=importer, imported=imported, why=f"{unit} must never import {banned}")
    if top != "ccai":
        return None
    target = unit_of(imported)
    if unit is None:
        return Violation(
            importer=importer, imported=imported, why="the importer is in no package of the table"
        )
    if target is None:
        return Violation(
            importer=importer, imported=imported, why="the imported module is in no package of the table"
        )
    if _is_private_of_other(unit, imported):
        return Violation(importer=importer, imported=imported, why=f"a private module of package {target}")
    if target in ("foundation", unit):
        return None
    if unit == "foundation":
        return Violation(importer=importer, imported=imported, why="foundation modules import no package")
    if target not in closure(unit):
        return Violation(
            importer=importer,
            imported=imported,
            why=f"{unit} may import only {sorted(closure(unit))} (and the foundation)",
        )
    return None


def check_tree(tree: Mapping[str, tuple[str, bool]]) -> list[Violation]:
    """Every violation in a module tree (``{module: (source, is_package)}``), sorted."""
    known = frozenset(tree)
    found: set[Violation] = set()
    for module, (source, is_package) in tree.items():
        for imported in imports_of(module, source, is_package=is_package, known=known):
            violation = check_import(module, imported)
            if violation is not None:
                found.add(violation)
    return sorted(found, key=lambda v: (v.importer, v.imported))


def _pairs(violations: Iterable[Violation]) -> set[tuple[str, str]]:
    return {v.pair for v in violations}


# --- the checks ------------------------------------------------------------------------------------


def test_table_is_acyclic_and_complete() -> None:
    for package, deps in ALLOWED.items():
        assert deps <= ALLOWED.keys(), f"{package} names packages outside the table: {deps - ALLOWED.keys()}"
        assert package not in closure(package), f"{package} may import itself through a cycle"
    assert closure("openai_protocol") == frozenset()
    assert not {"ccai.virtual", "ccai.tee", "ccai.attest"} & {f"ccai.{p}" for p in closure("verify")}
    on_disk = {p.name for p in (SRC / "ccai").iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    missing = {p for p in on_disk if not p.startswith("_")} - ALLOWED.keys()
    assert not missing, f"packages missing from the table: {sorted(missing)}"


def test_imports_follow_the_table() -> None:
    violations = check_tree(read_tree(SRC))
    assert not violations, "imports against docs/architecture.md:\n" + "\n".join(map(str, violations))


# --- the checker can fail --------------------------------------------------------------------------


def _tree(sources: Mapping[str, str]) -> dict[str, tuple[str, bool]]:
    return {name: (textwrap.dedent(src), False) for name, src in sources.items()}


def test_checker_reports_planted_violations() -> None:
    tree = _tree(
        {
            "ccai.verify._x": """
                import httpx
                from ccai.tee import VirtualCpuTee
                from ccai.collateral import CollateralBundle
                """,
            "ccai.token._t": "from ccai.verify._result import VerifiedEvidence\n",
            "ccai.openai_protocol._y": "from ccai.verify import Verifier\n",
            "ccai.bench._z": """
                def lazy() -> None:
                    from ccai.openai_protocol._sse import SseParser
                """,
            "ccai.evidence._e": "import ccai.collateral\n",
            "ccai._stray": "from ccai.errors import Error\n",
            "ccai.device._d": "from ccai._stray import thing\n",
            "ccai.errors": "from ccai.verify import Verifier\n",
        }
    )
    assert _pairs(check_tree(tree)) == {
        ("ccai.verify._x", "httpx"),
        ("ccai.verify._x", "ccai.tee"),
        ("ccai.token._t", "ccai.verify._result"),
        ("ccai.openai_protocol._y", "ccai.verify"),
        ("ccai.bench._z", "ccai.openai_protocol._sse"),
        ("ccai.evidence._e", "ccai.collateral"),
        ("ccai._stray", "ccai.errors"),
        ("ccai.device._d", "ccai._stray"),
        ("ccai.errors", "ccai.verify"),
    }


def test_checker_allows_what_the_table_allows() -> None:
    tree = _tree(
        {
            "ccai.verify._a": "from ccai.collateral import Bundle\nfrom ccai.evidence import parse_rim\n",
            "ccai.verify._b": "from ccai.verify._a import thing\nfrom ccai import errors\n",
            "ccai.token._c": "from ccai.evidence import GpuEvidence\n",  # allowed through verify
            "ccai.cli._d": "import typer\nfrom ccai.bench import run_sweep\n",
        }
    )
    assert check_tree(tree) == []


def test_checker_reads_a_tree_on_disk(tmp_path: Path) -> None:
    verify = tmp_path / "ccai" / "verify"
    verify.mkdir(parents=True)
    (tmp_path / "ccai" / "__init__.py").write_text("")
    (tmp_path / "ccai" / "_types.py").write_text("")
    (verify / "__init__.py").write_text("from ccai.verify._core import verify\n")
    (verify / "_core.py").write_text(
        "from .. import _types\nfrom ..tee import _virtual\n\ndef verify() -> None:\n    import uvicorn\n"
    )
    assert _pairs(check_tree(read_tree(tmp_path))) == {
        ("ccai.verify._core", "ccai.tee"),
        ("ccai.verify._core", "uvicorn"),
    }
    # "from ..tee import _virtual" names the module ccai.tee._virtual once it exists.
    (tmp_path / "ccai" / "tee").mkdir()
    (tmp_path / "ccai" / "tee" / "__init__.py").write_text("")
    (tmp_path / "ccai" / "tee" / "_virtual.py").write_text("")
    assert ("ccai.verify._core", "ccai.tee._virtual") in _pairs(check_tree(read_tree(tmp_path)))


# --- at run time -----------------------------------------------------------------------------------


def test_importing_verify_loads_no_tee_attest_virtual_or_httpx() -> None:
    code = (
        "import ccai.verify, sys; "
        "loaded = {'httpx', 'ccai.tee', 'ccai.virtual', 'ccai.attest'} & set(sys.modules); "
        "assert not loaded, sorted(loaded)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
