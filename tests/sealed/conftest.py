"""Fixtures for the sealed-model tests: a small synthetic safetensors model and a KEK."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

torch = pytest.importorskip(
    "torch",
    reason="sealed-model tests load torch tensors: pip install 'ccai[torch]'",
)
from safetensors.torch import save_file  # noqa: E402

from ccai.sealed import Kek, new_kek, seal  # noqa: E402

CHUNK = 4096


def dtype_tensors() -> dict[str, object]:
    """One tensor of every common dtype this torch supports, with awkward sizes."""
    gen = torch.Generator().manual_seed(7)
    base = torch.randn(37, 129, generator=gen) * 4
    out: dict[str, object] = {
        "f32": base.clone(),
        "f16": base.to(torch.float16),
        "bf16": base.to(torch.bfloat16),
        "f64": base[:3].to(torch.float64),
        "i8": torch.randint(-128, 127, (1001,), dtype=torch.int8, generator=gen),
        "u8": torch.randint(0, 255, (513,), dtype=torch.uint8, generator=gen),
        "i16": torch.randint(-1000, 1000, (77,), dtype=torch.int16, generator=gen),
        "i32": torch.randint(-(2**31), 2**31 - 1, (5, 7), dtype=torch.int32, generator=gen),
        "i64": torch.randint(-(2**62), 2**62, (9,), dtype=torch.int64, generator=gen),
        "bool": torch.rand(333, generator=gen) > 0.5,
        "scalar": torch.tensor(3.25),
        "empty": torch.empty(0, 16),
    }
    for name in ("float8_e4m3fn", "float8_e5m2"):
        if hasattr(torch, name):
            out[name] = base.to(getattr(torch, name))
    return out


@pytest.fixture
def kek() -> Kek:
    return new_kek(kid="test-kek")


@pytest.fixture
def ram_dir() -> Iterator[Path]:
    """A private directory on /dev/shm (RAM-backed), removed afterwards."""
    import shutil

    path = Path(tempfile.mkdtemp(prefix="ccai-test-", dir="/dev/shm"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A model directory: two safetensors shards, a config and a nested tokenizer file."""
    d = tmp_path / "model"
    d.mkdir()
    tensors = dtype_tensors()
    names = sorted(tensors)
    save_file({n: tensors[n] for n in names[::2]}, d / "model-00001.safetensors", metadata={"format": "pt"})
    save_file({n: tensors[n] for n in names[1::2]}, d / "model-00002.safetensors")
    (d / "config.json").write_text('{"model_type": "toy", "hidden": 129}')
    (d / "tok").mkdir()
    (d / "tok" / "vocab.txt").write_bytes(bytes(range(256)) * 40)
    (d / "empty.txt").write_bytes(b"")
    return d


@pytest.fixture
def sealed_dir(model_dir: Path, tmp_path: Path, kek: Kek) -> Path:
    out = tmp_path / "sealed"
    seal(model_dir, out, kek, chunk_size=CHUNK, threads=2)
    return out
