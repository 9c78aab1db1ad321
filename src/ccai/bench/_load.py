"""The load benchmark behind ``ccai bench load`` and ``benchmarks/bench_load.py``.

One run measures, on the same synthetic safetensors model in the page cache:

1. stock ``safetensors.torch.load_file(path, device=…)`` (the loader engines use),
2. ccai's pipeline without decryption (:func:`~ccai.sealed.load_plaintext`),
3. ccai's sealed load (:func:`~ccai.sealed.load_into`),

sweeping thread count and chunk size for (2) and (3). The ratio that prices decryption is
sealed time ÷ plaintext-pipeline time at the same threads and chunk size. Numbers are printed,
never asserted (benchmarks are not tests).
"""

from __future__ import annotations

import gc
import json
import os
import secrets
import shutil
import statistics
import struct
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from ccai.errors import DriverNotFound, UsageError
from ccai.sealed import load_into, load_plaintext, new_kek, seal

__all__ = ["LoadMeasurement", "LoadReport", "run_load_benchmark", "write_synthetic_model"]

_GB = 1e9
_MIB = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadMeasurement:
    """One measured configuration.

    Args:
        method: ``safetensors``, ``pipeline-plain`` or ``sealed``.
        threads: Worker threads (0 for stock safetensors).
        chunk_mib: Chunk size in MiB (0 for stock safetensors).
        seconds: Median wall time of the repetitions.
        gbps: Bytes loaded ÷ median time, in GB/s (10⁹ B/s).
        vs_plain: Time ÷ plaintext-pipeline time at the same threads and chunk (sealed rows).
        vs_safetensors: Stock safetensors time ÷ this time (speed-up over the stock loader).
    """

    method: str
    threads: int
    chunk_mib: float
    seconds: float
    gbps: float
    vs_plain: float | None
    vs_safetensors: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadReport:
    """The whole run: environment, model size and every measurement."""

    device: str
    device_name: str
    size_bytes: int
    repeats: int
    cpu_threads_available: int
    cryptography_version: str
    openssl_version: str
    seal_seconds: dict[str, float]
    identical: bool
    rows: tuple[LoadMeasurement, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        out = asdict(self)
        out["rows"] = [asdict(r) for r in self.rows]
        return out

    def best(self, method: str) -> LoadMeasurement | None:
        """The fastest row of ``method``."""
        rows = [r for r in self.rows if r.method == method]
        return min(rows, key=lambda r: r.seconds) if rows else None

    def render(self) -> str:
        """A plain-text table and summary."""
        lines = [
            f"load benchmark: {self.size_bytes / 2**30:.2f} GiB synthetic bf16 model → {self.device} "
            f"({self.device_name}); median of {self.repeats}; {self.cpu_threads_available} CPU threads; "
            f"cryptography {self.cryptography_version} ({self.openssl_version})",
            "",
            f"{'method':<16}{'threads':>8}{'chunk MiB':>11}{'time s':>10}{'GB/s':>9}"
            f"{'÷ plain':>10}{'× stock':>10}",
        ]
        for r in self.rows:
            vs_plain = f"{r.vs_plain:.3f}" if r.vs_plain is not None else "—"
            vs_stock = f"{r.vs_safetensors:.2f}" if r.vs_safetensors is not None else "—"
            threads = str(r.threads) if r.threads else "—"
            chunk = f"{r.chunk_mib:g}" if r.chunk_mib else "—"
            lines.append(
                f"{r.method:<16}{threads:>8}{chunk:>11}{r.seconds:>10.3f}{r.gbps:>9.2f}{vs_plain:>10}{vs_stock:>10}"
            )
        best_sealed, best_plain, stock = (
            self.best("sealed"),
            self.best("pipeline-plain"),
            self.best("safetensors"),
        )
        lines.append("")
        if best_sealed is not None:
            summary = (
                f"best sealed: {best_sealed.gbps:.2f} GB/s ({best_sealed.threads} threads, "
                f"{best_sealed.chunk_mib:g} MiB chunks), {best_sealed.vs_plain:.3f}× the plaintext pipeline "
                "at the same setting"
            )
            if stock is not None:
                summary += f", {stock.seconds / best_sealed.seconds:.2f}× faster than stock safetensors"
            lines.append(summary)
        if best_plain is not None:
            lines.append(f"best plaintext pipeline: {best_plain.gbps:.2f} GB/s")
        if stock is not None:
            lines.append(f"stock safetensors.load_file: {stock.gbps:.2f} GB/s")
        lines.append(f"sealed load bit-identical to stock safetensors on {self.device}: {self.identical}")
        lines.append(
            "sealing: " + ", ".join(f"{k} MiB chunks {v:.1f} s" for k, v in self.seal_seconds.items())
        )
        return "\n".join(lines)


def write_synthetic_model(
    directory: Path, size_bytes: int, *, shard_bytes: int = 4 << 30, tensor_bytes: int = 256 * _MIB
) -> list[Path]:
    """Write a synthetic bf16 safetensors model of about ``size_bytes`` bytes, streaming.

    The tensor data is a repeated random block: its content does not change load or AES speed,
    and generating 8 GiB of fresh randomness would dominate the set-up time.

    Args:
        directory: Where to write ``model-NNNNN.safetensors`` shards and a ``config.json``.
        size_bytes: Total tensor bytes wanted.
        shard_bytes: Largest shard.
        tensor_bytes: Bytes per tensor (bf16, 2 bytes per element, rows of 4096 elements).

    Returns:
        The shard paths.
    """
    directory.mkdir(parents=True, exist_ok=True)
    cols = 4096
    rows = max(1, tensor_bytes // (2 * cols))
    per_tensor = rows * cols * 2
    count = max(1, size_bytes // per_tensor)
    per_shard = max(1, shard_bytes // per_tensor)
    block = secrets.token_bytes(min(per_tensor, 64 * _MIB))
    paths = []
    for shard, first in enumerate(range(0, count, per_shard)):
        names = [f"layers.{i}.weight" for i in range(first, min(count, first + per_shard))]
        header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
        for j, name in enumerate(names):
            header[name] = {
                "dtype": "BF16",
                "shape": [rows, cols],
                "data_offsets": [j * per_tensor, (j + 1) * per_tensor],
            }
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # safetensors pads the header to 8 bytes
        path = directory / f"model-{shard + 1:05d}.safetensors"
        with path.open("wb") as fh:
            fh.write(struct.pack("<Q", len(raw)) + raw)
            for _ in names:
                left = per_tensor
                while left:
                    piece = block[: min(left, len(block))]
                    fh.write(piece)
                    left -= len(piece)
        paths.append(path)
    (directory / "config.json").write_text('{"model_type": "synthetic"}\n')
    return paths


def _warm(paths: Sequence[Path]) -> None:
    """Read every file once so that all methods start from a warm page cache."""
    for path in paths:
        with path.open("rb", buffering=0) as fh:
            while fh.read(64 * _MIB):
                pass


@contextmanager
def _workdir(base: Path | None) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ccai-bench-load-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _torch_device(torch: Any, device: str) -> Any:
    """``torch.device(device)``, checked to exist here before any file is written."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise UsageError(f"not a device: {device!r}", hint="use cuda, cuda:N or cpu") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DriverNotFound(
                "CUDA is not available here (no NVIDIA GPU or driver, or torch built without CUDA)",
                hint="--device cpu measures the CPU load path",
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"no CUDA device {dev.index}: this machine has {torch.cuda.device_count()}")
    elif dev.type != "cpu":
        raise UsageError(f"unsupported device {device!r}", hint="use cuda, cuda:N or cpu")
    return dev


def run_load_benchmark(
    *,
    size_bytes: int = 8 << 30,
    device: str = "cuda",
    threads: Sequence[int] = (8, 16, 24, 32),
    chunk_mib: Sequence[float] = (16, 64),
    repeats: int = 3,
    workdir: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> LoadReport:
    """Measure stock safetensors, the plaintext pipeline and the sealed load on one synthetic model.

    Args:
        size_bytes: Model size (tensor bytes).
        device: ``"cuda"`` (or ``"cuda:N"``) or ``"cpu"``.
        threads: Thread counts to sweep.
        chunk_mib: Chunk sizes (MiB) to sweep; the model is sealed once per chunk size.
        repeats: Timed repetitions per configuration (after one untimed warm-up); the median is reported.
        workdir: Where to put the synthetic and sealed models (default: the system temp directory).
        log: Called with progress lines.

    Returns:
        The report.

    Raises:
        UsageError: ``device`` is not a device name, or names a GPU index this machine lacks.
        DriverNotFound: a CUDA device on a machine without CUDA (no GPU or driver, or a torch
            built without CUDA): ``device="cpu"`` measures the CPU path.
    """
    import cryptography
    import torch
    from cryptography.hazmat.backends.openssl import backend
    from safetensors.torch import load_file

    say = log or (lambda _msg: None)
    dev = _torch_device(torch, device)
    cuda = dev.type == "cuda"
    device_name = torch.cuda.get_device_name(dev) if cuda else "cpu"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(dev)

    def measure(fn: Callable[[], dict[str, torch.Tensor]]) -> float:
        times = []
        for attempt in range(repeats + 1):
            gc.collect()
            sync()
            start = time.perf_counter()
            result = fn()
            sync()
            elapsed = time.perf_counter() - start
            del result
            if attempt:  # the first run warms allocators and pinned-memory caches
                times.append(elapsed)
        return statistics.median(times)

    with _workdir(workdir) as work:
        say(f"writing a {size_bytes / 2**30:.2f} GiB synthetic model")
        shards = write_synthetic_model(work / "model", size_bytes)
        total = sum(p.stat().st_size for p in shards)
        kek = new_kek()
        sealed: dict[float, Path] = {}
        seal_seconds: dict[str, float] = {}
        for chunk in chunk_mib:
            say(f"sealing with {chunk:g} MiB chunks")
            start = time.perf_counter()
            sealed[chunk] = work / f"sealed-{chunk:g}"
            seal(work / "model", sealed[chunk], kek, chunk_size=int(chunk * _MIB) // 16 * 16)
            seal_seconds[f"{chunk:g}"] = time.perf_counter() - start
        _warm(shards)
        for path in sealed.values():
            _warm(sorted((path / "data").iterdir()))

        rows: list[LoadMeasurement] = []
        say("stock safetensors.load_file")
        if cuda:
            stock = measure(lambda: {k: v for p in shards for k, v in load_file(p, device=str(dev)).items()})
        else:
            # On the CPU load_file returns lazily mapped tensors; clone so that the bytes are read.
            stock = measure(lambda: {k: v.clone() for p in shards for k, v in load_file(p).items()})
        rows.append(
            LoadMeasurement(
                method="safetensors",
                threads=0,
                chunk_mib=0,
                seconds=stock,
                gbps=total / stock / _GB,
                vs_plain=None,
                vs_safetensors=1.0,
            )
        )
        for chunk in chunk_mib:
            for n in threads:
                say(f"{n} threads, {chunk:g} MiB chunks")
                size = int(chunk * _MIB) // 16 * 16
                plain = measure(partial(load_plaintext, shards, device=dev, threads=n, chunk_size=size))
                secret = measure(partial(load_into, sealed[chunk], kek, device=dev, threads=n))
                rows.append(
                    LoadMeasurement(
                        method="pipeline-plain",
                        threads=n,
                        chunk_mib=chunk,
                        seconds=plain,
                        gbps=total / plain / _GB,
                        vs_plain=1.0,
                        vs_safetensors=stock / plain,
                    )
                )
                rows.append(
                    LoadMeasurement(
                        method="sealed",
                        threads=n,
                        chunk_mib=chunk,
                        seconds=secret,
                        gbps=total / secret / _GB,
                        vs_plain=secret / plain,
                        vs_safetensors=stock / secret,
                    )
                )
        say("checking that the sealed load equals the stock load")
        reference = {k: v for p in shards for k, v in load_file(p, device=str(dev)).items()}
        loaded = load_into(sealed[chunk_mib[0]], kek, device=dev, threads=max(threads))
        identical = set(reference) == set(loaded) and all(
            torch.equal(loaded[name].view(torch.uint8), ref.view(torch.uint8))
            for name, ref in reference.items()
        )
        del reference, loaded
    return LoadReport(
        device=str(dev),
        device_name=device_name,
        size_bytes=total,
        repeats=repeats,
        cpu_threads_available=len(os.sched_getaffinity(0)),
        cryptography_version=cryptography.__version__,
        openssl_version=backend.openssl_version_text(),
        seal_seconds=seal_seconds,
        identical=identical,
        rows=tuple(rows),
    )
