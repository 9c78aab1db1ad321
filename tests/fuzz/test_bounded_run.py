"""CI's short, bounded fuzz run: every target gets its seeds plus a fixed number of seeded
mutations from the built-in engine (no wall-clock limits or assertions). The long runs are
``scripts/fuzz`` (docs/fuzzing.md)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from fuzz_engine import Mutator, run_builtin
from fuzz_targets import TARGETS

RUNS = 300


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_survives_seeded_mutations(name: str, tmp_path: Path) -> None:
    result = run_builtin(name, runs=RUNS, seed=20260601, crash_dir=tmp_path)
    assert result.executions == RUNS
    assert not result.crashes, f"{name} crashed: {sorted(result.signatures)}; inputs in {tmp_path}"


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_every_target_has_seeds(name: str) -> None:
    assert TARGETS[name].corpus(), f"{name} has an empty seed corpus"


def test_the_mutator_is_deterministic() -> None:
    a = Mutator([b"seed one", b"another seed"], random.Random(7))
    b = Mutator([b"seed one", b"another seed"], random.Random(7))
    assert [a.next() for _ in range(200)] == [b.next() for _ in range(200)]
