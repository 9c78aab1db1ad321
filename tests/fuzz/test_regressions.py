"""Replay every crash the fuzzer kept (tests/fuzz/crashes/<target>/<sha256>): each input must now
raise nothing but ``ccai.errors.Error`` from its target (docs/fuzzing.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fuzz_engine import CRASH_DIR
from fuzz_targets import TARGETS

CASES = sorted(p for p in CRASH_DIR.glob("*/*") if p.is_file() and not p.name.startswith((".", "libfuzzer-")))


def test_every_crash_directory_names_a_target() -> None:
    for directory in CRASH_DIR.iterdir():
        if directory.is_dir():
            assert directory.name in TARGETS, f"{directory} is not a fuzz target"


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.name[:12]}" for p in CASES])
def test_kept_crash_raises_only_ccai_errors(path: Path) -> None:
    target = path.parent.name
    TARGETS[target].run(path.read_bytes())  # a target swallows ccai errors and lets anything else out
