"""The load pipeline: ciphertext chunks → N decrypting threads → (pinned) host buffers → device.

Each worker thread owns an AES-GCM context, two chunk-sized host buffers (pinned when the target is
a CUDA device) and, on CUDA, its own stream. It takes the next chunk from a shared cursor, decrypts
it with ``decrypt_into`` straight from the memory-mapped ciphertext into one of its buffers (the GIL
is released inside), and enqueues an asynchronous copy of that buffer into the file's device
buffer; the copy of one buffer overlaps the decryption into the other. Host memory stays at
``threads × 2 × chunk``; plaintext never reaches a file. On the CPU the chunk is decrypted directly
into the destination tensor (no staging).

The same pipeline with the AES step replaced by a memory copy (:func:`load_plaintext`) is the
baseline that prices decryption in ``ccai bench load``.

All or nothing: every chunk must authenticate before any tensor is returned; on the first failure
the workers stop, the device buffers are dropped and one opaque :class:`~ccai.errors.UnsealError`
is raised.
"""

from __future__ import annotations

import mmap
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ccai.errors import DriverNotFound, MalformedEvidence, UnsealError, UsageError
from ccai.sealed._container import default_threads, open_model
from ccai.sealed._format import (
    TAG_BYTES,
    SafetensorsInfo,
    chunk_aad,
    chunk_count,
    chunk_nonce,
    parse_safetensors_header,
)
from ccai.sealed._keys import DataKey, Kek
from ccai.sealed._seal import DEFAULT_CHUNK_SIZE

if TYPE_CHECKING:
    import torch

__all__ = ["load_into", "load_plaintext", "torch_dtype"]

_TORCH_DTYPES = {
    "BOOL": "bool",
    "U8": "uint8",
    "I8": "int8",
    "I16": "int16",
    "U16": "uint16",
    "I32": "int32",
    "U32": "uint32",
    "I64": "int64",
    "U64": "uint64",
    "F16": "float16",
    "BF16": "bfloat16",
    "F32": "float32",
    "F64": "float64",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "F8_E8M0": "float8_e8m0fnu",
}


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of a safetensors dtype name.

    Raises:
        UsageError: this torch build has no such dtype.
    """
    import torch

    attr = _TORCH_DTYPES.get(name)
    dtype = getattr(torch, attr, None) if attr else None
    if not isinstance(dtype, torch.dtype):
        raise UsageError(f"torch {torch.__version__} has no dtype for safetensors {name}")
    return dtype


@dataclass(frozen=True, slots=True, kw_only=True)
class _Job:
    """One chunk: where its source bytes are and where its plaintext goes."""

    slot: int  # index of the file's destination buffer and source map
    dest_offset: int
    length: int  # plaintext bytes
    src_offset: int
    src_length: int  # length + TAG_BYTES when encrypted
    nonce: bytes | None
    aad: bytes | None


def _resolve_device(device: str | torch.device) -> torch.device:
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DriverNotFound("CUDA is not available", hint="load with device='cpu'")
        if str(dev) == "cuda":  # no index given: the current device
            dev = torch.device("cuda", torch.cuda.current_device())
    elif dev.type != "cpu":
        raise UsageError(f"unsupported device {device!r}: use 'cuda', 'cuda:N' or 'cpu'")
    return dev


def _run(
    jobs: Sequence[_Job],
    sources: Sequence[mmap.mmap],
    dests: Sequence[torch.Tensor],
    *,
    device: torch.device,
    threads: int,
    chunk_size: int,
    key: bytes | None,
) -> None:
    """Run the pipeline; raises the first worker exception after all workers have stopped."""
    import numpy as np
    import torch

    cursor = iter(range(len(jobs)))
    lock = threading.Lock()
    # Chunks left per source: the worker that finishes a file's last chunk unmaps it, so that the
    # unmapping (page-table teardown, proportional to the file size) overlaps the other files'
    # work instead of running after the pipeline. The caller still closes every map (a no-op then).
    left = [0] * len(sources)
    for job in jobs:
        left[job.slot] += 1
    stop = threading.Event()
    cuda = device.type == "cuda"

    def next_job() -> _Job | None:
        if stop.is_set():
            return None
        with lock:
            i = next(cursor, None)
        return None if i is None else jobs[i]

    def done(job: _Job) -> None:
        with lock:
            left[job.slot] -= 1
            last = left[job.slot] == 0
        if last:
            sources[job.slot].close()

    def transform(job: _Job, out: memoryview, aead: AESGCM | None) -> None:
        # Slices taken inside `with` are released even when decryption fails, so the memory
        # maps can be closed afterwards.
        with memoryview(sources[job.slot])[job.src_offset : job.src_offset + job.src_length] as src:
            if aead is None:
                np.copyto(np.frombuffer(out, dtype=np.uint8), np.frombuffer(src, dtype=np.uint8))
            else:  # encrypted jobs always carry nonce and aad; b"" would fail authentication
                aead.decrypt_into(job.nonce or b"", src, job.aad or b"", out)

    def cpu_worker() -> None:
        aead = AESGCM(key) if key is not None else None  # one context per thread
        try:
            while (job := next_job()) is not None:
                dest = dests[job.slot][job.dest_offset : job.dest_offset + job.length]
                with memoryview(dest.numpy()) as out:  # type: ignore[arg-type]
                    transform(job, out, aead)
                done(job)
        except BaseException:
            stop.set()
            raise

    def cuda_worker() -> None:
        aead = AESGCM(key) if key is not None else None  # one context per thread
        stream = torch.cuda.Stream(device)  # type: ignore[no-untyped-call]
        # The current stream is per thread: set it once instead of entering a context per chunk.
        torch.cuda.set_stream(stream)
        staging = [torch.empty(chunk_size, dtype=torch.uint8, pin_memory=True) for _ in range(2)]
        views = [memoryview(t.numpy()) for t in staging]  # type: ignore[arg-type]
        events = [torch.cuda.Event(), torch.cuda.Event()]  # type: ignore[no-untyped-call]
        used = [False, False]
        turn = 0
        try:
            while (job := next_job()) is not None:
                b = turn % 2
                turn += 1
                if used[b]:
                    events[b].synchronize()  # the previous copy out of this buffer is done
                with views[b][: job.length] as out:
                    transform(job, out, aead)
                done(job)
                if job.length:
                    dest = dests[job.slot][job.dest_offset : job.dest_offset + job.length]
                    dest.copy_(staging[b][: job.length], non_blocking=True)
                    events[b].record(stream)
                    used[b] = True
        except BaseException:
            stop.set()
            raise
        finally:
            stream.synchronize()
            for view in views:
                view.release()

    worker = cuda_worker if cuda else cpu_worker
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ccai-load") as pool:
        futures = [pool.submit(worker) for _ in range(threads)]
    for fut in futures:
        error = fut.exception()
        if error is not None:
            raise error


def _tensors(info: SafetensorsInfo, flat: torch.Tensor, out: dict[str, torch.Tensor], *, what: str) -> None:
    import torch

    for t in info.tensors:
        if t.name in out:
            raise MalformedEvidence(f"{what}: tensor {t.name!r} appears in more than one file")
        dtype = torch_dtype(t.dtype)
        raw = flat[t.offset : t.offset + t.size]
        itemsize = torch.empty((), dtype=dtype).element_size()
        if t.offset % itemsize:  # unaligned in the file: views need aligned storage offsets
            raw = raw.clone()
        out[t.name] = raw.view(dtype).reshape(t.shape)


def load_into(
    sealed: Path,
    key: Kek | DataKey,
    *,
    device: str | torch.device = "cuda",
    threads: int | None = None,
    files: Sequence[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Decrypt the safetensors weights of a sealed model straight into device memory.

    Args:
        sealed: The sealed model directory.
        key: The KEK that wraps the model's data key, or the data key itself.
        device: ``"cuda"``, ``"cuda:N"`` or ``"cpu"``.
        threads: Decrypting workers (default: usable cores, at most 16). Host memory used is
            ``threads × 2 × chunk size`` (pinned) on CUDA and nothing extra on the CPU.
        files: Only these safetensors files of the model (default: all of them).

    Returns:
        Tensor name → tensor on ``device``, bit-identical to the sealed safetensors files. The
        tensors of one file are views into one device buffer per file.

    Raises:
        UsageError: not a sealed model, unknown file, bad device.
        DriverNotFound: ``device`` is CUDA and CUDA is not available.
        UnsealError: wrong key, tampering, reordering, truncation — any authentication failure.
            Nothing is returned: no partial tensors.
    """
    import torch

    dev = _resolve_device(device)
    model = open_model(Path(sealed), key)
    entries = [f for f in model.manifest.files if f.safetensors is not None]
    if files is not None:
        wanted = set(files)
        missing = wanted - {e.name for e in entries}
        if missing:
            raise UsageError(f"the sealed model has no safetensors file {sorted(missing)[0]!r}")
        entries = [e for e in entries if e.name in wanted]
    workers = threads or default_threads()
    sources: list[mmap.mmap] = []
    dests: list[torch.Tensor] = []
    jobs: list[_Job] = []
    try:
        for slot, entry in enumerate(entries):
            sources.append(model.map_data(entry))
            dests.append(torch.empty(entry.size, dtype=torch.uint8, device=dev))
            prefix = model.aad_prefix(entry)
            for i in range(entry.chunks):
                start, n, cstart = model.chunk_span(entry, i)
                jobs.append(
                    _Job(
                        slot=slot,
                        dest_offset=start,
                        length=n,
                        src_offset=cstart,
                        src_length=n + TAG_BYTES,
                        nonce=chunk_nonce(entry.index, i),
                        aad=chunk_aad(prefix, i, entry.chunks),
                    )
                )
        _run(
            jobs,
            sources,
            dests,
            device=dev,
            threads=workers,
            chunk_size=model.header.chunk_size,
            key=model.content_key,
        )
    except (InvalidTag, ValueError, BufferError, OSError):
        dests.clear()
        raise UnsealError() from None
    finally:
        for mm in sources:
            mm.close()
    out: dict[str, torch.Tensor] = {}
    for entry, flat in zip(entries, dests, strict=True):
        assert entry.safetensors is not None  # filtered above; narrows the type
        _tensors(entry.safetensors, flat, out, what=entry.name)
    return out


def load_plaintext(
    paths: Sequence[Path],
    *,
    device: str | torch.device = "cuda",
    threads: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> dict[str, torch.Tensor]:
    """Load plaintext safetensors files through the same pipeline, with the AES step replaced by a copy.

    This is the baseline :func:`load_into` is measured against (``ccai bench load``): it shows
    what the pipeline costs without decryption.

    Args:
        paths: safetensors files.
        device: ``"cuda"``, ``"cuda:N"`` or ``"cpu"``.
        threads: Copy workers (default: usable cores, at most 16).
        chunk_size: Bytes per chunk.

    Returns:
        Tensor name → tensor on ``device``.

    Raises:
        UsageError: a file is missing, bad device.
        MalformedEvidence: a file is not a valid safetensors file.
    """
    import torch

    dev = _resolve_device(device)
    workers = threads or default_threads()
    sources: list[mmap.mmap] = []
    dests: list[torch.Tensor] = []
    infos: list[SafetensorsInfo] = []
    jobs: list[_Job] = []
    try:
        for slot, path in enumerate(paths):
            try:
                with Path(path).open("rb") as fh:
                    sources.append(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ))
            except (OSError, ValueError) as exc:
                raise UsageError(f"cannot map {path}: {exc}") from None
            mm = sources[-1]
            n_header = int.from_bytes(mm[:8], "little") if len(mm) >= 8 else len(mm)
            infos.append(parse_safetensors_header(mm[: 8 + n_header], file_size=len(mm), what=str(path)))
            size = len(mm)
            dests.append(torch.empty(size, dtype=torch.uint8, device=dev))
            for i in range(chunk_count(size, chunk_size)):
                start = i * chunk_size
                n = min(chunk_size, size - start)
                jobs.append(
                    _Job(
                        slot=slot,
                        dest_offset=start,
                        length=n,
                        src_offset=start,
                        src_length=n,
                        nonce=None,
                        aad=None,
                    )
                )
        _run(jobs, sources, dests, device=dev, threads=workers, chunk_size=chunk_size, key=None)
    finally:
        for mm in sources:
            mm.close()
    out: dict[str, torch.Tensor] = {}
    for path, info, flat in zip(paths, infos, dests, strict=True):
        _tensors(info, flat, out, what=str(path))
    return out
