"""KEK files, envelope unwrap and KEK rotation without re-encrypting the weights."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest

from ccai.errors import UnsealError, UsageError
from ccai.sealed import DataKey, Kek, load_into, new_kek, read_header, read_kek, rewrap, unwrap_key, write_kek

pytest.importorskip("torch")


def test_kek_file_round_trip_and_mode(tmp_path: Path) -> None:
    kek = new_kek()
    path = tmp_path / "k.json"
    write_kek(kek, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_kek(path) == kek
    doc = json.loads(path.read_text())
    assert doc["kty"] == "oct" and doc["kid"] == kek.kid and kek.kid.startswith("kek-")
    with pytest.raises(UsageError, match="exists"):
        write_kek(new_kek(), path)
    assert read_kek(path) == kek  # not overwritten


def test_kek_repr_hides_the_key() -> None:
    kek = Kek(kid="x", key=b"\xab" * 32)
    assert "ab" not in repr(kek).replace("kid='x'", "")
    assert "171" not in repr(DataKey(key=b"\xab" * 32))


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b'{"kty": "RSA", "kid": "a", "k": "AA"}',
        b'{"kty": "oct", "k": "AA"}',
        b'{"kty": "oct", "kid": "a", "k": "AAAA"}',  # 3 bytes: not a 256-bit key
        b"[]",
    ],
)
def test_bad_kek_files(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(UsageError):
        read_kek(path)


def test_missing_kek_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found"):
        read_kek(tmp_path / "none.json")


def _digest_tree(root: Path, sub: str) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((root / sub).iterdir())}


def test_rewrap_rotates_the_kek_without_touching_weights(sealed_dir: Path, kek: Kek) -> None:
    before_data = _digest_tree(sealed_dir, "data")
    before_manifest = (sealed_dir / "manifest.bin").read_bytes()
    data_key = unwrap_key(sealed_dir, kek)
    new = new_kek(kid="kek-2")
    header = rewrap(sealed_dir, kek, new)
    assert header.kid == "kek-2" and read_header(sealed_dir) == header
    assert _digest_tree(sealed_dir, "data") == before_data
    assert (sealed_dir / "manifest.bin").read_bytes() == before_manifest
    assert unwrap_key(sealed_dir, new).key == data_key.key  # same data key, new envelope
    assert load_into(sealed_dir, new, device="cpu")
    with pytest.raises(UnsealError):
        load_into(sealed_dir, kek, device="cpu")
    with pytest.raises(UnsealError):
        rewrap(sealed_dir, kek, new_kek())  # the old KEK no longer unwraps


def test_rewrap_with_the_same_kid_but_new_key_bytes(sealed_dir: Path, kek: Kek) -> None:
    rotated = Kek(kid=kek.kid, key=bytes(32))
    rewrap(sealed_dir, kek, rotated)
    with pytest.raises(UnsealError):
        unwrap_key(sealed_dir, kek)
    assert load_into(sealed_dir, rotated, device="cpu")


def test_rewrap_with_the_data_key(sealed_dir: Path, kek: Kek) -> None:
    data_key = unwrap_key(sealed_dir, kek)
    new = new_kek()
    rewrap(sealed_dir, data_key, new)
    assert unwrap_key(sealed_dir, new).key == data_key.key


def test_invalid_key_sizes() -> None:
    with pytest.raises(UsageError):
        Kek(kid="a", key=b"short")
    with pytest.raises(UsageError):
        Kek(kid="", key=bytes(32))
    with pytest.raises(UsageError):
        DataKey(key=bytes(31))


class _CountingSource:
    """A KeySource that hands out a KEK and counts how often it was asked."""

    def __init__(self, kek: Kek) -> None:
        self._kek, self.calls = kek, 0

    def kek(self) -> Kek:
        self.calls += 1
        return self._kek


def test_a_key_source_is_accepted_wherever_a_kek_is(sealed_dir: Path, model_dir: Path, kek: Kek) -> None:
    from ccai.sealed import KeySource, read_file, read_manifest, resolve_key

    source = _CountingSource(kek)
    assert isinstance(source, KeySource) and resolve_key(source) is kek
    names = {f.name for f in read_manifest(sealed_dir, source).files}
    assert "config.json" in names
    assert read_file(sealed_dir, source, "config.json") == (model_dir / "config.json").read_bytes()
    tensors = load_into(sealed_dir, source, device="cpu")
    assert tensors and source.calls == 4  # asked once per opened model (resolve_key above included)
    wrong = _CountingSource(new_kek(kid="test-kek"))  # same kid, other bytes
    with pytest.raises(UnsealError):
        read_manifest(sealed_dir, wrong)
    with pytest.raises(UsageError):
        resolve_key(b"not a key")  # type: ignore[arg-type]
