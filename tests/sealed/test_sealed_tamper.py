"""Tampering, truncation, reordering, cross-model swaps and wrong keys: one UnsealError, nothing returned."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from ccai.errors import UnsealError
from ccai.sealed import DataKey, Kek, load_into, read_file, read_manifest, seal, unseal_to_directory
from ccai.sealed._format import TAG_BYTES

from .conftest import CHUNK

pytest.importorskip("torch")

STRIDE = CHUNK + TAG_BYTES


def _shard(sealed: Path) -> Path:
    """Data file of the first safetensors shard (index 2: config.json and empty.txt sort first)."""
    return sealed / "data" / "000002.bin"


def _assert_all_fail(sealed: Path, key: Kek | DataKey, out: Path) -> None:
    """Every unsealing path raises UnsealError and leaves nothing behind."""
    result = None
    with pytest.raises(UnsealError) as info:
        result = load_into(sealed, key, device="cpu", threads=2)
    assert result is None
    assert str(info.value) == "sealed model could not be decrypted or authenticated" or "KEK" in str(
        info.value
    )
    with pytest.raises(UnsealError):
        unseal_to_directory(sealed, out, key, threads=2)
    assert not out.exists()


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_untouched_model_loads(sealed_dir: Path, kek: Kek) -> None:
    # The control for every negative below: the same fixture loads when nothing is changed.
    assert load_into(sealed_dir, kek, device="cpu")


def test_shard_has_several_chunks(sealed_dir: Path) -> None:
    assert _shard(sealed_dir).stat().st_size > 3 * STRIDE


@pytest.mark.parametrize("where", ["first", "middle", "last", "tag", "last-byte"])
def test_flipping_a_byte_in_any_chunk(sealed_dir: Path, kek: Kek, ram_dir: Path, where: str) -> None:
    path = _shard(sealed_dir)
    size = path.stat().st_size
    chunks = -(-size // STRIDE)
    offset = {
        "first": 5,
        "middle": (chunks // 2) * STRIDE + 100,
        "last": (chunks - 1) * STRIDE + 1,
        "tag": STRIDE - 3,  # inside the first chunk's tag
        "last-byte": size - 1,
    }[where]
    _flip(path, offset)
    _assert_all_fail(sealed_dir, kek, ram_dir / "out")


def test_every_data_file_is_authenticated(sealed_dir: Path, kek: Kek, ram_dir: Path) -> None:
    for data_file in sorted((sealed_dir / "data").iterdir()):
        original = data_file.read_bytes()
        _flip(data_file, len(original) // 2)
        with pytest.raises(UnsealError):
            unseal_to_directory(sealed_dir, ram_dir / "out", kek)
        assert not (ram_dir / "out").exists()
        data_file.write_bytes(original)
    unseal_to_directory(sealed_dir, ram_dir / "out", kek)


def test_swapping_two_chunks(sealed_dir: Path, kek: Kek, ram_dir: Path) -> None:
    path = _shard(sealed_dir)
    data = bytearray(path.read_bytes())
    first, second = data[0:STRIDE], data[STRIDE : 2 * STRIDE]
    data[0:STRIDE], data[STRIDE : 2 * STRIDE] = second, first
    path.write_bytes(bytes(data))
    _assert_all_fail(sealed_dir, kek, ram_dir / "out")


def test_duplicating_a_chunk(sealed_dir: Path, kek: Kek, ram_dir: Path) -> None:
    path = _shard(sealed_dir)
    data = bytearray(path.read_bytes())
    data[STRIDE : 2 * STRIDE] = data[0:STRIDE]
    path.write_bytes(bytes(data))
    _assert_all_fail(sealed_dir, kek, ram_dir / "out")


@pytest.mark.parametrize("cut", ["one-chunk", "mid-chunk", "one-byte", "everything"])
def test_truncation(sealed_dir: Path, kek: Kek, ram_dir: Path, cut: str) -> None:
    path = _shard(sealed_dir)
    data = path.read_bytes()
    keep = {
        "one-chunk": (len(data) - 1) // STRIDE * STRIDE,
        "mid-chunk": STRIDE + 77,
        "one-byte": len(data) - 1,
        "everything": 0,
    }[cut]
    path.write_bytes(data[:keep])
    _assert_all_fail(sealed_dir, kek, ram_dir / "out")


def test_truncation_to_a_shorter_consistent_file(
    model_dir: Path, tmp_path: Path, kek: Kek, ram_dir: Path
) -> None:
    # Even if an attacker also had a manifest for fewer chunks, every chunk commits to the count:
    # a file cut at a chunk boundary and re-labelled cannot authenticate. Simulate by deleting
    # whole trailing chunks: the size check and the per-chunk count both refuse it.
    sealed = tmp_path / "s"
    seal(model_dir, sealed, kek, chunk_size=CHUNK)
    path = _shard(sealed)
    data = path.read_bytes()
    path.write_bytes(data[: STRIDE * 2])
    _assert_all_fail(sealed, kek, ram_dir / "out")


def test_appended_bytes(sealed_dir: Path, kek: Kek, ram_dir: Path) -> None:
    path = _shard(sealed_dir)
    path.write_bytes(path.read_bytes() + b"\x00" * 16)
    _assert_all_fail(sealed_dir, kek, ram_dir / "out")


def test_missing_data_file(sealed_dir: Path, kek: Kek, ram_dir: Path) -> None:
    _shard(sealed_dir).unlink()
    _assert_all_fail(sealed_dir, kek, ram_dir / "out")


def test_swapping_two_files_of_one_model(sealed_dir: Path, kek: Kek, ram_dir: Path) -> None:
    a, b = sealed_dir / "data" / "000002.bin", sealed_dir / "data" / "000003.bin"
    tmp = a.with_suffix(".tmp")
    a.rename(tmp)
    b.rename(a)
    tmp.rename(b)
    _assert_all_fail(sealed_dir, kek, ram_dir / "out")


@pytest.fixture
def other_model(model_dir: Path, tmp_path: Path, kek: Kek) -> Path:
    """The same plaintext sealed again with the same KEK and chunk size: only the model id and key differ."""
    other = tmp_path / "other"
    seal(model_dir, other, kek, chunk_size=CHUNK)
    return other


def test_chunk_from_another_model(sealed_dir: Path, other_model: Path, kek: Kek, ram_dir: Path) -> None:
    mine, theirs = _shard(sealed_dir), _shard(other_model)
    data = bytearray(mine.read_bytes())
    data[STRIDE : 2 * STRIDE] = theirs.read_bytes()[STRIDE : 2 * STRIDE]
    mine.write_bytes(bytes(data))
    _assert_all_fail(sealed_dir, kek, ram_dir / "out")


@pytest.mark.parametrize("part", ["data file", "manifest", "header"])
def test_parts_from_another_model(
    sealed_dir: Path, other_model: Path, kek: Kek, ram_dir: Path, part: str
) -> None:
    rel = {"data file": "data/000002.bin", "manifest": "manifest.bin", "header": "ccai-sealed.json"}[part]
    shutil.copyfile(other_model / rel, sealed_dir / rel)
    _assert_all_fail(sealed_dir, kek, ram_dir / "out")


def test_wrong_kek_same_kid(sealed_dir: Path, ram_dir: Path) -> None:
    _assert_all_fail(sealed_dir, Kek(kid="test-kek", key=b"\x00" * 32), ram_dir / "out")


def test_wrong_kek_other_kid(sealed_dir: Path, ram_dir: Path) -> None:
    _assert_all_fail(sealed_dir, Kek(kid="another", key=b"\x00" * 32), ram_dir / "out")


def test_wrong_data_key(sealed_dir: Path, ram_dir: Path) -> None:
    _assert_all_fail(sealed_dir, DataKey(key=b"\x11" * 32), ram_dir / "out")


def test_manifest_tamper(sealed_dir: Path, kek: Kek, ram_dir: Path) -> None:
    _flip(sealed_dir / "manifest.bin", 40)
    _assert_all_fail(sealed_dir, kek, ram_dir / "out")
    with pytest.raises(UnsealError):
        read_manifest(sealed_dir, kek)


def _edit_header(sealed: Path, edit: Callable[[dict[str, object]], None]) -> None:
    path = sealed / "ccai-sealed.json"
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def _hexflip(value: object) -> str:
    assert isinstance(value, str)
    return ("1" if value[0] == "0" else "0") + value[1:]


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda d: d.__setitem__("chunk_size", CHUNK * 2), id="chunk_size"),
        pytest.param(lambda d: d.__setitem__("model_id", _hexflip(d["model_id"])), id="model_id"),
        pytest.param(
            lambda d: d.__setitem__("manifest_nonce", _hexflip(d["manifest_nonce"])), id="manifest_nonce"
        ),
        pytest.param(lambda d: d["key"].__setitem__("wrapped", _hexflip(d["key"]["wrapped"])), id="wrapped"),
        pytest.param(lambda d: d["key"].__setitem__("nonce", _hexflip(d["key"]["nonce"])), id="wrap_nonce"),
        pytest.param(lambda d: d.__setitem__("version", 2), id="version"),
        pytest.param(lambda d: d.__setitem__("format", "other"), id="format"),
        pytest.param(lambda d: d.pop("key"), id="no-key"),
    ],
)
def test_header_tamper(
    sealed_dir: Path, kek: Kek, ram_dir: Path, edit: Callable[[dict[str, object]], None]
) -> None:
    _edit_header(sealed_dir, edit)
    _assert_all_fail(sealed_dir, kek, ram_dir / "out")


def test_header_kid_edit_with_matching_kek(sealed_dir: Path, kek: Kek, ram_dir: Path) -> None:
    # Renaming the KEK in the header (and presenting the right key bytes under that name) fails:
    # the kid is bound into the wrap's associated data.
    _edit_header(sealed_dir, lambda d: d["key"].__setitem__("kid", "renamed"))  # type: ignore[index]
    _assert_all_fail(sealed_dir, Kek(kid="renamed", key=kek.key), ram_dir / "out")


def test_read_file_detects_tamper(sealed_dir: Path, kek: Kek) -> None:
    _flip(sealed_dir / "data" / "000000.bin", 3)  # config.json
    with pytest.raises(UnsealError):
        read_file(sealed_dir, kek, "config.json")


def test_failed_unseal_into_existing_empty_dir_leaves_it_empty(
    sealed_dir: Path, kek: Kek, ram_dir: Path
) -> None:
    _flip(_shard(sealed_dir), 9)
    out = ram_dir / "existing"
    out.mkdir()
    with pytest.raises(UnsealError):
        unseal_to_directory(sealed_dir, out, kek)
    assert out.is_dir() and not any(out.iterdir())
