"""The load pipeline: ciphertext chunks → N decrypting threads → pinned staging pool → copy stream → device.

On a CUDA device the pipeline has two stages joined by queues:

* **N decrypt workers** (each with its own AES-GCM context) take the next chunk from a shared cursor,
  take a free buffer from one pinned staging pool (one pinned allocation, ``threads × 2`` chunk-sized
  slots by default), ``decrypt_into`` it straight from the memory-mapped ciphertext (the GIL is
  released inside) and put it on the *filled* queue. They never call into CUDA except to wait, with a
  blocking (sleeping, not spinning) event, for the copy that last read a slot before refilling it.
* **One copy submitter** takes filled slots in order, enqueues ``cudaMemcpyAsync`` of each into the
  file's device buffer on its copy stream(s), records the slot's event and returns the slot to the
  free queue at once; it never waits for a copy to finish.

So decryption of some slots overlaps the DMA of others, the copy engine gets a steady FIFO of copies
from one stream, and host memory stays at ``slots × chunk`` pinned; plaintext never reaches a file.
On the CPU the chunk is decrypted directly into the destination tensor (no staging).

The same pipeline with the AES step replaced by a memory copy (:func:`load_plaintext`) is the
baseline that prices decryption in ``ccai bench load``: every stage, buffer and thread is shared,
only the transform differs.

All or nothing: every chunk must authenticate before any tensor is returned; on the first failure
the workers stop, the copy stream is drained, the device buffers are dropped and one opaque
:class:`~ccai.errors.UnsealError` is raised.
"""

from __future__ import annotations

import mmap
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

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
from ccai.sealed._keys import SealedKey
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


@dataclass(frozen=True, slots=True, kw_only=True)
class _Tuning:
    """Pipeline knobs that are not part of the public API (the benchmarks sweep them).

    Args:
        slots_per_thread: Pinned staging slots per decrypt worker (host memory: threads × this × chunk).
        copy_streams: CUDA streams the submitter spreads the copies over (round robin).
        unmap_early: The worker that finishes a file's last chunk unmaps it while the others keep
            working. Off by default: ``munmap`` takes the address-space lock for writing (and shoots
            down TLBs on every core), stalling the page faults of every other worker meanwhile.
    """

    slots_per_thread: int = 2
    copy_streams: int = 1
    unmap_early: bool = False


class _Copier(Protocol):
    """Moves a filled staging slot into its destination."""

    def submit(self, index: int, dest: torch.Tensor, src: torch.Tensor) -> None:
        """Start copying ``src`` (a view of staging slot ``index``) into ``dest``."""

    def wait(self, index: int) -> None:
        """Block until the last copy out of slot ``index`` has finished reading it."""

    def finish(self) -> None:
        """Block until every submitted copy has finished."""


class _CudaCopier:
    """Asynchronous host-to-device copies on ``streams`` CUDA streams, one blocking event per slot."""

    def __init__(self, device: torch.device, *, slots: int, streams: int) -> None:
        import torch

        self._streams = [torch.cuda.Stream(device) for _ in range(max(1, streams))]  # type: ignore[no-untyped-call]
        # blocking=True: a waiting worker sleeps instead of spinning on a core that decrypts.
        self._events = [torch.cuda.Event(blocking=True) for _ in range(slots)]  # type: ignore[no-untyped-call]
        self._recorded = [False] * slots
        self._turn = 0
        self._current: object = None

    def submit(self, index: int, dest: torch.Tensor, src: torch.Tensor) -> None:
        import torch

        stream = self._streams[self._turn % len(self._streams)]
        self._turn += 1
        if stream is not self._current:  # the current stream is per thread: only the submitter's changes
            torch.cuda.set_stream(stream)
            self._current = stream
        dest.copy_(src, non_blocking=True)
        self._events[index].record(stream)
        self._recorded[index] = True

    def wait(self, index: int) -> None:
        # Set before the slot went back to the free queue (queue hand-off orders the accesses).
        if self._recorded[index]:
            self._events[index].synchronize()

    def finish(self) -> None:
        for stream in self._streams:
            stream.synchronize()


class _HostCopier:
    """Synchronous copies (host destinations): exercises the staged pipeline without a GPU."""

    def submit(self, index: int, dest: torch.Tensor, src: torch.Tensor) -> None:
        del index
        dest.copy_(src)

    def wait(self, index: int) -> None:
        del index

    def finish(self) -> None:
        pass


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


class _Source:
    """The memory maps and the per-chunk transform shared by both pipeline shapes."""

    def __init__(self, jobs: Sequence[_Job], sources: Sequence[mmap.mmap], *, unmap_early: bool) -> None:
        self.jobs = jobs
        self.stop = threading.Event()
        self._sources = sources
        self._cursor = iter(range(len(jobs)))
        self._lock = threading.Lock()
        self._unmap_early = unmap_early
        self._left = [0] * len(sources)
        for job in jobs:
            self._left[job.slot] += 1

    def next_job(self) -> _Job | None:
        if self.stop.is_set():
            return None
        with self._lock:
            i = next(self._cursor, None)
        return None if i is None else self.jobs[i]

    def done(self, job: _Job) -> None:
        if not self._unmap_early:
            return  # the caller unmaps every file after the pipeline
        with self._lock:
            self._left[job.slot] -= 1
            last = self._left[job.slot] == 0
        if last:
            self._sources[job.slot].close()

    def transform(self, job: _Job, out: memoryview, aead: AESGCM | None) -> None:
        import numpy as np

        # Slices taken inside `with` are released even when decryption fails, so the memory
        # maps can be closed afterwards.
        with memoryview(self._sources[job.slot])[job.src_offset : job.src_offset + job.src_length] as src:
            if aead is None:
                np.copyto(np.frombuffer(out, dtype=np.uint8), np.frombuffer(src, dtype=np.uint8))
            else:  # encrypted jobs always carry nonce and aad; b"" would fail authentication
                aead.decrypt_into(job.nonce or b"", src, job.aad or b"", out)


def _run(
    jobs: Sequence[_Job],
    sources: Sequence[mmap.mmap],
    dests: Sequence[torch.Tensor],
    *,
    threads: int,
    chunk_size: int,
    key: bytes | None,
    copier: _Copier | None,
    pinned: bool = False,
    tuning: _Tuning = _Tuning(),
) -> None:
    """Run the pipeline; raises the first exception after every thread has stopped.

    ``copier`` None decrypts straight into the (host) destinations; otherwise chunks are staged
    through a pool of ``threads × tuning.slots_per_thread`` slots (pinned when ``pinned``) and
    handed to ``copier`` by one submitter thread.
    """
    src = _Source(jobs, sources, unmap_early=tuning.unmap_early)
    if copier is None:
        _run_direct(src, dests, threads=threads, key=key)
    else:
        _run_staged(
            src,
            dests,
            threads=threads,
            chunk_size=chunk_size,
            key=key,
            copier=copier,
            slots=max(2, threads * tuning.slots_per_thread),
            pinned=pinned,
        )


def _run_direct(src: _Source, dests: Sequence[torch.Tensor], *, threads: int, key: bytes | None) -> None:
    def worker() -> None:
        aead = AESGCM(key) if key is not None else None  # one context per thread
        try:
            while (job := src.next_job()) is not None:
                dest = dests[job.slot][job.dest_offset : job.dest_offset + job.length]
                with memoryview(dest.numpy()) as out:  # type: ignore[arg-type]
                    src.transform(job, out, aead)
                src.done(job)
        except BaseException:
            src.stop.set()
            raise

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ccai-load") as pool:
        futures = [pool.submit(worker) for _ in range(threads)]
    _raise_first(futures)


def _run_staged(
    src: _Source,
    dests: Sequence[torch.Tensor],
    *,
    threads: int,
    chunk_size: int,
    key: bytes | None,
    copier: _Copier,
    slots: int,
    pinned: bool,
) -> None:
    import torch

    # One allocation for the whole pool (pinned once, pages resident), fixed views per slot.
    pool = torch.empty(slots * chunk_size, dtype=torch.uint8, pin_memory=pinned)
    tensors = [pool[i * chunk_size : (i + 1) * chunk_size] for i in range(slots)]
    whole = memoryview(pool.numpy())  # type: ignore[arg-type]
    views = [whole[i * chunk_size : (i + 1) * chunk_size] for i in range(slots)]
    free: queue.SimpleQueue[int] = queue.SimpleQueue()
    filled: queue.SimpleQueue[tuple[int, _Job] | None] = queue.SimpleQueue()
    for i in range(slots):
        free.put(i)

    def worker() -> None:
        aead = AESGCM(key) if key is not None else None  # one context per thread
        try:
            while (job := src.next_job()) is not None:
                index = free.get()
                try:
                    copier.wait(index)  # the copy that last read this slot is done
                    with views[index][: job.length] as out:
                        src.transform(job, out, aead)
                except BaseException:
                    free.put(index)
                    raise
                src.done(job)
                filled.put((index, job))
        except BaseException:
            src.stop.set()
            raise

    def submitter() -> None:
        # Never waits for a copy: slots go back to the free queue at once, guarded by their event.
        # After a failure it keeps recycling slots (without copying) so no worker blocks on `free`.
        error: BaseException | None = None
        while (item := filled.get()) is not None:
            index, job = item
            if error is None and job.length:
                try:
                    staged = tensors[index] if job.length == chunk_size else tensors[index][: job.length]
                    copier.submit(
                        index, dests[job.slot][job.dest_offset : job.dest_offset + job.length], staged
                    )
                except BaseException as exc:
                    error = exc
                    src.stop.set()
            free.put(index)
        if error is not None:
            raise error

    try:
        with ThreadPoolExecutor(max_workers=threads + 1, thread_name_prefix="ccai-load") as pool_:
            copying = pool_.submit(submitter)
            futures = [pool_.submit(worker) for _ in range(threads)]
            wait(futures)
            filled.put(None)
        copier.finish()
    finally:
        for view in views:
            view.release()
        whole.release()
    _raise_first([*futures, copying])


def _raise_first(futures: Sequence[Future[None]]) -> None:
    for fut in futures:
        error = fut.exception()
        if error is not None:
            raise error


def _copier_for(device: torch.device, *, threads: int, tuning: _Tuning) -> _Copier | None:
    if device.type != "cuda":
        return None
    return _CudaCopier(device, slots=max(2, threads * tuning.slots_per_thread), streams=tuning.copy_streams)


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
    key: SealedKey,
    *,
    device: str | torch.device = "cuda",
    threads: int | None = None,
    files: Sequence[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Decrypt the safetensors weights of a sealed model straight into device memory.

    Args:
        sealed: The sealed model directory.
        key: The KEK that wraps the model's data key, the data key itself, or a
            :class:`~ccai.sealed.KeySource` such as ``ccai.kbs.BrokerKey`` (the KEK is then
            fetched through attestation and exists only in this process).
        device: ``"cuda"``, ``"cuda:N"`` or ``"cpu"``.
        threads: Decrypting workers (default: usable cores, at most 16). Host memory used is
            ``threads × 2 × chunk size`` (one pinned staging pool) on CUDA and nothing extra on
            the CPU; one more thread submits the host-to-device copies.
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
    return _load_sealed(sealed, key, device=device, threads=threads, files=files)


def _load_sealed(
    sealed: Path,
    key: SealedKey,
    *,
    device: str | torch.device = "cuda",
    threads: int | None = None,
    files: Sequence[str] | None = None,
    tuning: _Tuning = _Tuning(),
    stage_on_host: bool = False,
) -> dict[str, torch.Tensor]:
    """:func:`load_into` with the private knobs.

    ``tuning`` is swept by the benchmarks; ``stage_on_host`` runs the staged (GPU-shaped) pipeline
    with synchronous host copies, so tests cover it without a GPU.
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
            threads=workers,
            chunk_size=model.header.chunk_size,
            key=model.content_key,
            copier=_HostCopier() if stage_on_host else _copier_for(dev, threads=workers, tuning=tuning),
            pinned=dev.type == "cuda",
            tuning=tuning,
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
    return _load_plain(paths, device=device, threads=threads, chunk_size=chunk_size)


def _load_plain(
    paths: Sequence[Path],
    *,
    device: str | torch.device = "cuda",
    threads: int | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    tuning: _Tuning = _Tuning(),
    stage_on_host: bool = False,
) -> dict[str, torch.Tensor]:
    """:func:`load_plaintext` with the private knobs of :func:`_load_sealed`."""
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
        _run(
            jobs,
            sources,
            dests,
            threads=workers,
            chunk_size=chunk_size,
            key=None,
            copier=_HostCopier() if stage_on_host else _copier_for(dev, threads=workers, tuning=tuning),
            pinned=dev.type == "cuda",
            tuning=tuning,
        )
    finally:
        for mm in sources:
            mm.close()
    out: dict[str, torch.Tensor] = {}
    for path, info, flat in zip(paths, infos, dests, strict=True):
        _tensors(info, flat, out, what=str(path))
    return out
