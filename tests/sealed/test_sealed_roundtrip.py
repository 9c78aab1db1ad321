"""Round trips: seal → load_into / unseal_to_directory / read_file give back exactly the original."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ccai.sealed
from ccai.errors import UsageError
from ccai.sealed import (
    DataKey,
    Kek,
    is_ram_backed,
    load_into,
    load_plaintext,
    read_file,
    read_header,
    read_manifest,
    seal,
    unseal_to_directory,
    unwrap_key,
)

from .conftest import CHUNK, dtype_tensors

torch = pytest.importorskip("torch")
from safetensors.torch import load_file, save_file  # noqa: E402


def _same(a: object, b: object) -> bool:
    """Bit-identical: same dtype, shape and bytes (NaN-safe, unlike ==)."""
    assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.numel() == 0:
        return True
    raw_a = a.contiguous().reshape(-1).view(torch.uint8)
    raw_b = b.contiguous().reshape(-1).view(torch.uint8)
    return bool(torch.equal(raw_a, raw_b))


def _reference(model_dir: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for path in sorted(model_dir.glob("*.safetensors")):
        out.update(load_file(path))
    return out


def test_load_into_cpu_is_bit_identical_for_every_dtype(model_dir: Path, sealed_dir: Path, kek: Kek) -> None:
    tensors = load_into(sealed_dir, kek, device="cpu", threads=3)
    reference = _reference(model_dir)
    assert set(tensors) == set(reference) == set(dtype_tensors())
    for name, ref in reference.items():
        assert _same(tensors[name], ref), name
        assert tensors[name].device.type == "cpu"


def test_fp8_dtypes_are_covered() -> None:
    # The dtype fixture must exercise fp8 whenever this torch has it (the issue asks for bf16/fp8).
    names = set(dtype_tensors())
    assert {"bf16", "f16", "f32", "i8", "bool"} <= names
    if hasattr(torch, "float8_e4m3fn"):
        assert {"float8_e4m3fn", "float8_e5m2"} <= names


def test_load_with_data_key_and_file_subset(model_dir: Path, sealed_dir: Path, kek: Kek) -> None:
    data_key = unwrap_key(sealed_dir, kek)
    assert isinstance(data_key, DataKey)
    part = load_into(sealed_dir, data_key, device="cpu", files=["model-00002.safetensors"])
    assert set(part) == set(load_file(model_dir / "model-00002.safetensors"))
    with pytest.raises(UsageError):
        load_into(sealed_dir, kek, device="cpu", files=["nope.safetensors"])


def test_unseal_to_directory_is_byte_identical(
    model_dir: Path, sealed_dir: Path, kek: Kek, ram_dir: Path
) -> None:
    out = ram_dir / "plain"
    unseal_to_directory(sealed_dir, out, kek, threads=2)
    original = sorted(p.relative_to(model_dir) for p in model_dir.rglob("*") if p.is_file())
    restored = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert original == restored
    for rel in original:
        assert (out / rel).read_bytes() == (model_dir / rel).read_bytes(), rel
        assert (out / rel).stat().st_mode & 0o077 == 0


def test_manifest_describes_the_model(model_dir: Path, sealed_dir: Path, kek: Kek) -> None:
    manifest = read_manifest(sealed_dir, kek)
    header = read_header(sealed_dir)
    assert manifest.model_id == header.model_id and header.kid == "test-kek"
    assert manifest.chunk_size == header.chunk_size == CHUNK
    by_name = {f.name: f for f in manifest.files}
    assert set(by_name) == {p.relative_to(model_dir).as_posix() for p in model_dir.rglob("*") if p.is_file()}
    for name, entry in by_name.items():
        data = (model_dir / name).read_bytes()
        assert entry.size == len(data)
        assert entry.sha256 == hashlib.sha256(data).digest()
        assert entry.chunks == max(1, -(-len(data) // CHUNK))
    shard = by_name["model-00001.safetensors"].safetensors
    assert shard is not None and shard.metadata == {"format": "pt"}
    header_len = int.from_bytes((model_dir / "model-00001.safetensors").read_bytes()[:8], "little")
    assert shard.header_size == 8 + header_len
    assert by_name["config.json"].safetensors is None


def test_read_file_and_unknown_name(sealed_dir: Path, kek: Kek) -> None:
    assert json.loads(read_file(sealed_dir, kek, "config.json")) == {"model_type": "toy", "hidden": 129}
    assert read_file(sealed_dir, kek, "empty.txt") == b""
    with pytest.raises(UsageError):
        read_file(sealed_dir, kek, "missing.json")


def test_sealed_directory_hides_names_and_content(model_dir: Path, sealed_dir: Path) -> None:
    names = {p.name for p in sealed_dir.rglob("*")}
    assert names == {"ccai-sealed.json", "manifest.bin", "data", *(f"{i:06d}.bin" for i in range(5))}
    blob = b"".join(p.read_bytes() for p in sealed_dir.rglob("*") if p.is_file())
    for secret in (b"model-00001", b"config.json", b"hidden", b"bf16", bytes(range(256))):
        assert secret not in blob


def test_load_plaintext_pipeline_matches_safetensors(model_dir: Path) -> None:
    paths = sorted(model_dir.glob("*.safetensors"))
    tensors = load_plaintext(paths, device="cpu", threads=2, chunk_size=CHUNK)
    for name, ref in _reference(model_dir).items():
        assert _same(tensors[name], ref), name


def test_seal_refuses_bad_arguments(model_dir: Path, sealed_dir: Path, kek: Kek, tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        seal(tmp_path / "missing", tmp_path / "x", kek)
    with pytest.raises(UsageError):
        seal(model_dir, sealed_dir, kek)  # output exists
    with pytest.raises(UsageError):
        seal(model_dir, tmp_path / "y", kek, chunk_size=1000)
    assert not (tmp_path / "y").exists()


def test_progress_reaches_total(model_dir: Path, tmp_path: Path, kek: Kek, ram_dir: Path) -> None:
    seen: list[tuple[int, int]] = []
    seal(model_dir, tmp_path / "s", kek, chunk_size=CHUNK, progress=lambda d, t: seen.append((d, t)))
    total = sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file())
    assert max(d for d, _ in seen) == total and {t for _, t in seen} == {total}
    seen.clear()
    unseal_to_directory(tmp_path / "s", ram_dir / "u", kek, progress=lambda d, t: seen.append((d, t)))
    assert max(d for d, _ in seen) == total


MOUNTS = """\
proc /proc proc rw 0 0
/dev/sda1 / ext4 rw 0 0
tmpfs /dev/shm tmpfs rw 0 0
ramfs /mnt/ram\\040disk ramfs rw 0 0
/dev/sdb1 /dev/shm/disk xfs rw 0 0
"""


@pytest.mark.parametrize(
    ("path", "ram"),
    [
        ("/dev/shm/model", True),
        ("/dev/shm", True),
        ("/dev/shmem/model", False),  # a prefix of the name is not the mount point
        ("/mnt/ram disk/x", True),
        ("/dev/shm/disk/model", False),  # the longest (innermost) mount wins
        ("/home/user/model", False),
    ],
)
def test_is_ram_backed_uses_the_innermost_mount(path: str, ram: bool) -> None:
    assert is_ram_backed(Path(path), mounts=MOUNTS) is ram


def test_unseal_refuses_a_disk_path_unless_forced(sealed_dir: Path, kek: Kek) -> None:
    disk = next((p for p in (Path.cwd(), Path.home()) if not is_ram_backed(p)), None)
    if disk is None:
        pytest.skip("no disk-backed directory on this machine")
    out = Path(tempfile.mkdtemp(prefix=".ccai-unseal-test-", dir=disk))
    try:
        with pytest.raises(UsageError, match="RAM-backed"):
            unseal_to_directory(sealed_dir, out / "plain", kek)
        assert not (out / "plain").exists()
        unseal_to_directory(sealed_dir, out / "plain", kek, force_disk=True)
        assert (out / "plain" / "config.json").is_file()
    finally:
        import shutil

        shutil.rmtree(out)


def test_unseal_refuses_a_non_empty_output(sealed_dir: Path, kek: Kek, ram_dir: Path) -> None:
    (ram_dir / "keep.txt").write_text("mine")
    with pytest.raises(UsageError):
        unseal_to_directory(sealed_dir, ram_dir, kek)
    assert (ram_dir / "keep.txt").read_text() == "mine"


def test_public_surface_is_pinned() -> None:
    assert sorted(ccai.sealed.__all__) == [
        "DEFAULT_CHUNK_SIZE",
        "DataKey",
        "FileEntry",
        "Header",
        "Kek",
        "KeySource",
        "Manifest",
        "SafetensorsInfo",
        "SealedKey",
        "TensorEntry",
        "is_ram_backed",
        "kek_from_jwk",
        "kek_to_jwk",
        "load_into",
        "load_model",
        "load_plaintext",
        "load_tokenizer",
        "new_kek",
        "read_file",
        "read_header",
        "read_kek",
        "read_manifest",
        "resolve_key",
        "rewrap",
        "seal",
        "unseal_to_directory",
        "unwrap_key",
        "write_kek",
    ]


def test_seal_and_unseal_work_without_torch(tmp_path: Path, ram_dir: Path) -> None:
    script = f"""
import sys
sys.modules["torch"] = None  # any import of torch now fails
from pathlib import Path
from ccai.sealed import new_kek, seal, unseal_to_directory, read_manifest
src = Path({str(tmp_path)!r}) / "m"
src.mkdir()
(src / "a.bin").write_bytes(bytes(range(256)) * 100)
k = new_kek()
seal(src, src.parent / "s", k, chunk_size=4096)
unseal_to_directory(src.parent / "s", Path({str(ram_dir)!r}) / "u", k)
assert (Path({str(ram_dir)!r}) / "u" / "a.bin").read_bytes() == (src / "a.bin").read_bytes()
assert "torch" not in [m for m in sys.modules if sys.modules[m] is not None]
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


_DTYPES = ["float32", "float16", "bfloat16", "int8", "int64", "bool", "float8_e4m3fn", "float8_e5m2"]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shapes=st.lists(
        st.tuples(st.sampled_from(_DTYPES), st.lists(st.integers(0, 40), min_size=0, max_size=3)),
        min_size=1,
        max_size=6,
    ),
    chunk_units=st.integers(256, 1024),  # chunk size = 16 × units: 4 KiB … 16 KiB, not powers of two
    threads=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_property_seal_then_load_is_identity(
    shapes: list[tuple[str, list[int]]], chunk_units: int, threads: int, seed: int
) -> None:
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for i, (dtype_name, shape) in enumerate(shapes):
        if not hasattr(torch, dtype_name):
            continue
        dtype = getattr(torch, dtype_name)
        raw = torch.randint(0, 256, (int(torch.tensor(shape).prod()) * dtype.itemsize,), generator=gen)
        tensors[f"t{i}"] = raw.to(torch.uint8).view(dtype).reshape(shape)
    if not tensors:
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "m").mkdir()
        save_file(tensors, root / "m" / "w.safetensors")
        key = Kek(kid="prop", key=bytes(range(32)))
        seal(root / "m", root / "s", key, chunk_size=16 * chunk_units, threads=threads)
        loaded = load_into(root / "s", key, device="cpu", threads=threads)
    assert set(loaded) == set(tensors)
    for name, ref in tensors.items():
        assert _same(loaded[name], ref), name


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_many_files_sealed_concurrently_keep_order_and_digests(
    tmp_path: Path, kek: Kek, threads: int
) -> None:
    # More files than concurrent file streams, fewer chunk buffers than in-flight chunks, files of
    # 0, 1 and many chunks: every file must come back whole, under its own name and index.
    src = tmp_path / "m"
    (src / "sub").mkdir(parents=True)
    contents: dict[str, bytes] = {}
    for i in range(9):
        name = f"sub/f{i}.bin" if i % 2 else f"f{i}.bin"
        contents[name] = hashlib.sha256(str(i).encode()).digest() * (i * 97 * CHUNK // 32 // 7 + i)
        (src / name).write_bytes(contents[name])
    tensors = {f"t{i}": torch.arange(i * 1000 + 1, dtype=torch.float32) for i in range(3)}
    save_file(tensors, str(src / "model.safetensors"))
    out = tmp_path / "s"
    seal(src, out, kek, chunk_size=CHUNK, threads=threads)
    manifest = read_manifest(out, kek)
    assert [f.index for f in manifest.files] == list(range(len(manifest.files)))
    for name, data in contents.items():
        entry = manifest.file(name)
        assert entry.size == len(data)
        assert entry.sha256 == hashlib.sha256(data).digest()
        assert read_file(out, kek, name) == data
    loaded = load_into(out, kek, device="cpu", threads=threads)
    assert set(loaded) == set(tensors)
    assert all(_same(loaded[k], v) for k, v in tensors.items())
