"""Regression: ccai's file writes never follow planted symlinks, are atomic, and ignore the umask.

Writers used to go through predictable ``.NAME.tmp`` paths (a symlink planted there redirected the
write anywhere the victim could write) and sealed outputs took their mode from the umask (0666
under umask 000). These tests plant the symlinks and set the umask.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ccai._files import atomic_write, open_private_exclusive, private_dir


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Run with umask 000, the worst case for modes taken from the umask."""
    old = os.umask(0)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file an attacker would like overwritten, outside the directory being written."""
    outside = tmp_path / "outside"
    outside.mkdir()
    file = outside / "victim"
    file.write_bytes(b"precious")
    return file


def test_a_symlink_at_the_old_temporary_name_is_not_followed(tmp_path: Path, victim: Path) -> None:
    target = tmp_path / "out.json"
    planted = tmp_path / ".out.json.tmp"
    planted.symlink_to(victim)
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert victim.read_bytes() == b"precious"
    assert planted.is_symlink()


def test_a_symlink_at_the_target_is_replaced_not_followed(tmp_path: Path, victim: Path) -> None:
    target = tmp_path / "out.json"
    target.symlink_to(victim)
    atomic_write(target, b"new")
    assert not target.is_symlink()
    assert target.read_bytes() == b"new"
    assert victim.read_bytes() == b"precious"


def test_modes_do_not_follow_the_umask(tmp_path: Path, open_umask: None) -> None:
    assert _mode(atomic_write(tmp_path / "secret", b"k")) == 0o600
    assert _mode(atomic_write(tmp_path / "public", b"p", mode=0o644)) == 0o644
    fd = open_private_exclusive(tmp_path / "stream")
    os.close(fd)
    assert _mode(tmp_path / "stream") == 0o600
    nested = private_dir(tmp_path / "a" / "b" / "c")
    for directory in (tmp_path / "a", tmp_path / "a" / "b", nested):
        assert _mode(directory) == 0o700


def test_private_dir_repairs_a_wide_mode_and_refuses_a_file(tmp_path: Path) -> None:
    wide = tmp_path / "wide"
    wide.mkdir()
    wide.chmod(0o777)
    private_dir(wide)
    assert _mode(wide) == 0o700
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        private_dir(tmp_path / "file")


@pytest.mark.parametrize("fail_at", ["fsync", "replace"])
def test_a_failed_write_keeps_the_old_target_and_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: str
) -> None:
    target = tmp_path / "out.json"
    target.write_bytes(b"old")

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, fail_at, boom)
    with pytest.raises(OSError, match="No space"):
        atomic_write(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_no_replace_refuses_an_existing_target_or_symlink(tmp_path: Path, victim: Path) -> None:
    existing = tmp_path / "key"
    existing.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        atomic_write(existing, b"new", replace=False)
    assert existing.read_bytes() == b"old"
    dangling = tmp_path / "link"
    dangling.symlink_to(tmp_path / "outside" / "created-by-link")
    with pytest.raises(FileExistsError):
        atomic_write(dangling, b"new", replace=False)
    assert not (tmp_path / "outside" / "created-by-link").exists()
    assert _leftovers(tmp_path) == []
    assert atomic_write(tmp_path / "fresh", b"x", replace=False).read_bytes() == b"x"


def test_an_exclusive_open_refuses_a_second_writer_and_a_symlink(tmp_path: Path, victim: Path) -> None:
    path = tmp_path / "chunk"
    os.close(open_private_exclusive(path))
    with pytest.raises(FileExistsError):
        open_private_exclusive(path)
    link = tmp_path / "link"
    link.symlink_to(victim)
    with pytest.raises(FileExistsError):
        open_private_exclusive(link)
    assert victim.read_bytes() == b"precious"


def test_concurrent_writers_never_share_a_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "out"
    payloads = [bytes([i]) * 65536 for i in range(8)]
    errors: list[BaseException] = []

    def write(data: bytes) -> None:
        try:
            for _ in range(20):
                atomic_write(target, data)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(p,)) for p in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert target.read_bytes() in payloads  # one writer's whole file, never a mix
    assert _leftovers(tmp_path) == []


def test_concurrent_creators_of_one_file_keep_the_first(tmp_path: Path) -> None:
    target = tmp_path / "key"
    outcomes: list[str] = []
    lock = threading.Lock()

    def create(i: int) -> None:
        try:
            atomic_write(target, f"writer {i}".encode(), replace=False)
            result = f"writer {i}"
        except FileExistsError:
            result = "refused"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes if o != "refused"]
    assert len(winners) == 1
    assert target.read_bytes() == winners[0].encode()


def _writers() -> list[tuple[str, str, Callable[[Path], object], int]]:
    """(id, file name, write(directory) -> None, mode) for each ccai writer of a named file."""
    from ccai.cli._output import write_output
    from ccai.collateral import CollateralBundle, GpuCollateral, RimDirectory, write_bundle
    from ccai.sealed import new_kek, write_kek
    from ccai.token import TokenSigner

    rim_id = "NV_GPU_DRIVER_GH100_550.144.03"
    return [
        (
            "bundle",
            "bundle.json",
            lambda d: write_bundle(d / "bundle.json", CollateralBundle(gpu=GpuCollateral())),
            0o644,
        ),
        ("rim-dir", f"{rim_id}.xml", lambda d: RimDirectory(d).store(rim_id, b"<rim/>"), 0o644),
        ("cli-output", "evidence.json", lambda d: write_output(d / "evidence.json", b"{}"), 0o644),
        ("kek", "kek.json", lambda d: write_kek(new_kek(), d / "kek.json", overwrite=True), 0o600),
        ("token-key", "signing.pem", lambda d: TokenSigner.load_or_create(d / "signing.pem"), 0o600),
    ]


@pytest.mark.parametrize(
    ("name", "write", "mode"), [w[1:] for w in _writers()], ids=[w[0] for w in _writers()]
)
def test_every_writer_ignores_a_symlink_at_its_old_temporary_name(
    tmp_path: Path, victim: Path, open_umask: None, name: str, write: Callable[[Path], object], mode: int
) -> None:
    directory = tmp_path / "d"
    directory.mkdir()
    planted = directory / f".{name}.tmp"
    planted.symlink_to(victim)
    write(directory)
    assert victim.read_bytes() == b"precious"
    assert (directory / name).is_file() and not (directory / name).is_symlink()
    assert _mode(directory / name) == mode
    assert _leftovers(directory) == [planted.name]  # only the attacker's own link


def test_the_collateral_cache_and_ccai_home_are_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_umask: None
) -> None:
    from datetime import UTC, datetime

    from ccai._home import ccai_home
    from ccai.collateral import CollateralCache

    monkeypatch.setenv("CCAI_HOME", str(tmp_path / "home"))
    home = ccai_home()
    assert _mode(home) == 0o700
    cache = CollateralCache(home / "cache" / "collateral")
    cache.put_rim("NV_GPU_DRIVER_GH100_550.144.03", b"<rim/>", now=datetime(2025, 6, 1, tzinfo=UTC))
    assert _mode(home / "cache") == 0o700
    assert _mode(home / "cache" / "collateral") == 0o700
    files = list((home / "cache" / "collateral").iterdir())
    assert len(files) == 1 and _mode(files[0]) == 0o600


def test_a_token_key_created_twice_at_once_is_one_key(tmp_path: Path) -> None:
    from ccai.token import TokenSigner

    path = tmp_path / "signing.pem"
    kids: list[str] = []
    threads = [
        threading.Thread(target=lambda: kids.append(TokenSigner.load_or_create(path).kid)) for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(kids) == 6 and len(set(kids)) == 1
    assert TokenSigner.load_or_create(path).kid == kids[0]


@pytest.mark.parametrize(
    ("name", "write", "mode"),
    [w[1:] for w in _writers() if w[0] != "token-key"],
    ids=[w[0] for w in _writers() if w[0] != "token-key"],
)
def test_every_writer_replaces_a_symlink_at_its_target(
    tmp_path: Path, victim: Path, name: str, write: Callable[[Path], object], mode: int
) -> None:
    directory = tmp_path / "d"
    directory.mkdir()
    (directory / name).symlink_to(victim)
    write(directory)
    assert victim.read_bytes() == b"precious"
    assert not (directory / name).is_symlink()
    assert _mode(directory / name) == mode
