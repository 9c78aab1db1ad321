"""The staged (GPU-shaped) load pipeline, run on the CPU with synchronous host copies.

On CUDA, ``load_into`` decrypts into a pool of pinned staging slots and one submitter thread copies
them to the device. The same code runs here with ``_HostCopier`` in place of the CUDA copier, so the
queueing, slot recycling, error handling and exactly-once coverage are tested without a GPU.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ccai.errors import UnsealError
from ccai.sealed import Kek, load_into, load_plaintext
from ccai.sealed._pipeline import _HostCopier, _load_plain, _load_sealed, _Tuning

from .conftest import CHUNK

torch = pytest.importorskip("torch")


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Same names and the same bytes (compared as raw bytes, so NaNs and -0.0 count exactly)."""

    def raw(t: torch.Tensor) -> bytes:
        return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()

    return set(a) == set(b) and all(a[k].dtype == b[k].dtype and raw(a[k]) == raw(b[k]) for k in a)


@pytest.mark.parametrize(
    ("threads", "tuning"),
    [
        (1, _Tuning()),
        (3, _Tuning()),
        (2, _Tuning(slots_per_thread=1)),
        (4, _Tuning(slots_per_thread=3, copy_streams=2)),
        (3, _Tuning(unmap_early=True)),
    ],
)
def test_staged_sealed_load_equals_direct_load(
    sealed_dir: Path, kek: Kek, threads: int, tuning: _Tuning
) -> None:
    direct = load_into(sealed_dir, kek, device="cpu", threads=2)
    staged = _load_sealed(sealed_dir, kek, device="cpu", threads=threads, tuning=tuning, stage_on_host=True)
    assert _equal(staged, direct)


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_staged_plain_load_equals_direct_load(model_dir: Path, threads: int) -> None:
    paths = sorted(model_dir.glob("*.safetensors"))
    direct = load_plaintext(paths, device="cpu", threads=2, chunk_size=CHUNK)
    staged = _load_plain(paths, device="cpu", threads=threads, chunk_size=CHUNK, stage_on_host=True)
    assert _equal(staged, direct)


class _CountingCopier(_HostCopier):
    """Host copier that records every (destination address, length) it copies."""

    def __init__(self) -> None:
        self.copies: list[tuple[int, int]] = []
        self.lock = threading.Lock()

    def submit(self, index: int, dest: torch.Tensor, src: torch.Tensor) -> None:
        with self.lock:
            self.copies.append((dest.data_ptr(), dest.numel()))
        super().submit(index, dest, src)


def test_every_byte_is_copied_exactly_once(
    sealed_dir: Path, kek: Kek, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ccai.sealed import _pipeline

    copier = _CountingCopier()
    monkeypatch.setattr(_pipeline, "_HostCopier", lambda: copier)
    tensors = _load_sealed(sealed_dir, kek, device="cpu", threads=3, stage_on_host=True)
    # Per destination buffer (one per file), the copied ranges tile it with no gap and no overlap.
    bases = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors.values()}
    for base, size in bases.items():
        ranges = sorted((p - base, n) for p, n in copier.copies if base <= p < base + size)
        assert ranges, "no copy reached this file"
        end = 0
        for start, n in ranges:
            assert start == end  # contiguous, each chunk once
            end = start + n
        assert end == size
    assert len(copier.copies) == len(set(copier.copies))


def test_tampered_chunk_fails_in_the_staged_pipeline(sealed_dir: Path, kek: Kek) -> None:
    path = sealed_dir / "data" / "000002.bin"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    result = None
    with pytest.raises(UnsealError):
        result = _load_sealed(sealed_dir, kek, device="cpu", threads=3, stage_on_host=True)
    assert result is None


class _FailingCopier(_HostCopier):
    """Host copier whose third copy fails (a device error while copying)."""

    def __init__(self) -> None:
        self.calls = 0

    def submit(self, index: int, dest: torch.Tensor, src: torch.Tensor) -> None:
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("copy failed")
        super().submit(index, dest, src)


@pytest.mark.parametrize("slots_per_thread", [1, 2])
def test_a_failing_copy_stops_the_pipeline_without_deadlock(
    sealed_dir: Path, kek: Kek, monkeypatch: pytest.MonkeyPatch, slots_per_thread: int
) -> None:
    from ccai.sealed import _pipeline

    monkeypatch.setattr(_pipeline, "_HostCopier", _FailingCopier)
    with pytest.raises(RuntimeError, match="copy failed"):
        _load_sealed(
            sealed_dir,
            kek,
            device="cpu",
            threads=2,
            tuning=_Tuning(slots_per_thread=slots_per_thread),
            stage_on_host=True,
        )
