"""Regression: sealed outputs are private whatever the umask, and rewrap never follows a symlink.

Sealed data files, the manifest and the header took their mode from the umask (0666 under umask
000), and ``rewrap`` wrote the header through the predictable ``.ccai-sealed.json.tmp``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccai.errors import UsageError
from ccai.sealed import Kek, new_kek, read_file, rewrap, seal, unseal_to_directory, write_kek
from ccai.sealed._format import HEADER_NAME

from .conftest import CHUNK


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)
    yield
    os.umask(old)


def _modes(root: Path) -> dict[str, int]:
    """Relative path → permission bits, for ``root`` and everything under it."""
    modes = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        modes[path.relative_to(root).as_posix()] = stat.S_IMODE(path.lstat().st_mode)
    return modes


def _assert_private(root: Path) -> None:
    modes = _modes(root)
    for name, mode in modes.items():
        is_dir = name == "." or (root / name).is_dir()
        assert mode == (0o700 if is_dir else 0o600), f"{name}: {oct(mode)}"


def test_sealed_output_is_private_under_umask_000(
    model_dir: Path, tmp_path: Path, kek: Kek, open_umask: None
) -> None:
    out = tmp_path / "sealed"
    seal(model_dir, out, kek, chunk_size=CHUNK, threads=2)
    _assert_private(out)
    rewrap(out, kek, new_kek(kid="next"))
    _assert_private(out)


def test_unsealed_output_is_private_under_umask_000(
    sealed_dir: Path, kek: Kek, ram_dir: Path, open_umask: None
) -> None:
    out = ram_dir / "plain"
    unseal_to_directory(sealed_dir, out, kek, threads=2)
    assert (out / "tok" / "vocab.txt").is_file()
    _assert_private(out)


def test_unsealing_into_an_existing_wide_directory_makes_it_private(
    sealed_dir: Path, kek: Kek, ram_dir: Path
) -> None:
    out = ram_dir / "plain"
    out.mkdir(mode=0o755)
    out.chmod(0o755)
    unseal_to_directory(sealed_dir, out, kek, threads=2)
    _assert_private(out)


def test_rewrap_does_not_follow_a_symlink_at_the_old_temporary_name(
    sealed_dir: Path, kek: Kek, tmp_path: Path
) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    planted = sealed_dir / f".{HEADER_NAME}.tmp"
    planted.symlink_to(victim)
    new = new_kek(kid="rotated")
    rewrap(sealed_dir, kek, new)
    assert victim.read_bytes() == b"precious"
    assert read_file(sealed_dir, new, "config.json").startswith(b"{")
    assert sorted(p.name for p in sealed_dir.iterdir() if p.name.endswith(".tmp")) == [planted.name]


def test_a_kek_is_never_written_through_a_symlink(tmp_path: Path, open_umask: None) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    link = tmp_path / "kek.json"
    link.symlink_to(victim)
    with pytest.raises(UsageError, match="exists"):
        write_kek(new_kek(), link)
    assert victim.read_bytes() == b"precious"
    fresh = tmp_path / "fresh.json"
    write_kek(new_kek(), fresh)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
