"""Sealing a model directory, rotating its KEK, and unsealing it to a RAM-backed directory."""

from __future__ import annotations

import hashlib
import hmac
import os
import queue
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ccai._files import atomic_write, open_private_exclusive, private_dir
from ccai.errors import MalformedEvidence, UnsealError, UsageError
from ccai.sealed._container import OpenedModel, default_threads, open_model, read_header, resolve_data_key
from ccai.sealed._format import (
    DATA_DIR,
    HEADER_NAME,
    MANIFEST_NAME,
    MAX_CHUNK,
    MIN_CHUNK,
    TAG_BYTES,
    FileEntry,
    Header,
    Manifest,
    SafetensorsInfo,
    chunk_aad,
    chunk_aad_prefix,
    chunk_count,
    chunk_nonce,
    data_file_name,
    derive_keys,
    header_binding,
    manifest_aad,
    parse_safetensors_header,
)
from ccai.sealed._keys import DataKey, Kek, SealedKey, wrap_data_key

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "Progress",
    "is_ram_backed",
    "read_file",
    "read_manifest",
    "rewrap",
    "seal",
    "unseal_to_directory",
    "unwrap_key",
]

#: Default plaintext chunk size: 16 MiB (the measured sweet spot for the decrypt-and-copy pipeline).
DEFAULT_CHUNK_SIZE = 16 << 20
#: Progress callback: ``(bytes_done, bytes_total)``; may be called from worker threads.
Progress = Callable[[int, int], None]
_RAM_FS = frozenset({"tmpfs", "ramfs"})
_MAX_HEADER = 100 << 20  # safetensors' own limit on the JSON header
#: Files sealed at the same time (each has a reading thread and a SHA-256 thread; the AES workers and the
#: chunk buffers are shared, so memory stays at ``2 × threads`` chunks).
_FILE_STREAMS = 4


class _Counter:
    """Thread-safe byte counter that forwards to a progress callback."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self._lock = threading.Lock()
        self._done = 0
        self._total = total
        self._progress = progress

    def add(self, n: int) -> None:
        if self._progress is None:
            return
        with self._lock:
            self._done += n
            done = self._done
        self._progress(done, self._total)


def _model_files(model_dir: Path) -> list[tuple[str, Path]]:
    files = []
    for path in sorted(model_dir.rglob("*")):
        if path.is_file():
            files.append((path.relative_to(model_dir).as_posix(), path))
    if not files:
        raise UsageError(f"model directory is empty: {model_dir}")
    return files


def _safetensors_info(path: Path, name: str, size: int) -> SafetensorsInfo:
    with path.open("rb") as fh:
        first = fh.read(8)
        if len(first) < 8:
            raise MalformedEvidence(f"{name}: too short for a safetensors file")
        n = int.from_bytes(first, "little")
        if n > _MAX_HEADER or 8 + n > size:
            raise MalformedEvidence(f"{name}: safetensors header length {n} is out of range")
        return parse_safetensors_header(first + fh.read(n), file_size=size, what=name)


class _Slot:
    """A plaintext/ciphertext buffer pair, returned to the free list when encryption and hashing are done."""

    def __init__(self, size: int, free: queue.Queue[_Slot]) -> None:
        self.plain = bytearray(size)
        self.cipher = bytearray(size + TAG_BYTES)
        self._free = free
        self._lock = threading.Lock()
        self._pending = 0

    def hold(self, users: int) -> None:
        self._pending = users

    def release(self) -> None:
        with self._lock:
            self._pending -= 1
            last = self._pending == 0
        if last:
            self._free.put(self)


def _seal_file(
    src: Path,
    dst: Path,
    *,
    index: int,
    name: str,
    chunk_size: int,
    content_key: bytes,
    model_id: bytes,
    pool: ThreadPoolExecutor,
    slots: queue.Queue[_Slot],
    counter: _Counter,
) -> FileEntry:
    """Encrypt one file chunk by chunk, streaming.

    The calling thread reads the file in order; the shared pool encrypts and writes each chunk at
    its place; a hashing thread of this file feeds the chunks, in order, to the file's SHA-256
    (the one step that cannot be split, so it runs beside reading instead of after it). A chunk
    buffer returns to the free list when both its encryption and its hashing are done.
    """
    size = src.stat().st_size
    info = _safetensors_info(src, name, size) if name.endswith(".safetensors") else None
    count = chunk_count(size, chunk_size)
    prefix = chunk_aad_prefix(model_id, index, name)
    digest = hashlib.sha256()
    aead = AESGCM(content_key)
    futures: list[Future[None]] = []
    to_hash: queue.Queue[tuple[_Slot, int] | None] = queue.Queue()

    def hash_chunks() -> None:
        while (item := to_hash.get()) is not None:
            slot, n = item
            try:
                with memoryview(slot.plain)[:n] as pv:
                    digest.update(pv)  # releases the GIL for large buffers
            finally:
                slot.release()

    with src.open("rb", buffering=0) as fin, os.fdopen(open_private_exclusive(dst), "wb") as fout:
        out_fd = fout.fileno()
        os.ftruncate(out_fd, size + TAG_BYTES * count)

        def work(i: int, n: int, slot: _Slot) -> None:
            try:
                with memoryview(slot.plain)[:n] as pv, memoryview(slot.cipher)[: n + TAG_BYTES] as cv:
                    aead.encrypt_into(chunk_nonce(index, i), pv, chunk_aad(prefix, i, count), cv)
                    os.pwrite(out_fd, cv, i * (chunk_size + TAG_BYTES))
            finally:
                slot.release()
            counter.add(n)

        hasher = threading.Thread(target=hash_chunks, name=f"ccai-seal-sha-{index}", daemon=True)
        hasher.start()
        try:
            for i in range(count):
                slot = slots.get()
                n = min(chunk_size, size - i * chunk_size)
                with memoryview(slot.plain)[:n] as pv:
                    got = fin.readinto(pv)
                if got != n:
                    slots.put(slot)
                    raise UsageError(f"{name} changed size while being sealed")
                slot.hold(2)
                to_hash.put((slot, n))
                futures.append(pool.submit(work, i, n, slot))
        finally:
            to_hash.put(None)
            hasher.join()
            # Never close the output while a worker may still write to its descriptor.
            wait(futures)
        for fut in futures:
            fut.result()
    return FileEntry(
        index=index, name=name, size=size, sha256=digest.digest(), chunks=count, safetensors=info
    )


def seal(
    model_dir: Path,
    out: Path,
    kek: Kek,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    threads: int | None = None,
    progress: Progress | None = None,
) -> Manifest:
    """Seal every file of ``model_dir`` into the sealed directory ``out``, streaming.

    A fresh random data key and model id are made for this sealing; the data key is stored only
    wrapped by ``kek``. Memory use is bounded by ``2 × threads`` chunk buffers. The output appears
    atomically: it is written beside ``out`` and renamed into place when complete. Its files are
    mode 0600 and its directories 0700, whatever the umask.

    Args:
        model_dir: A model directory (safetensors weights, config, tokenizer, …).
        out: Where to create the sealed model (must not exist).
        kek: The key-encryption key.
        chunk_size: Plaintext bytes per AES-GCM chunk (4 KiB … 1 GiB).
        threads: Encryption workers (default: usable cores, at most 16).
        progress: Called with ``(bytes_done, bytes_total)``.

    Returns:
        The manifest that was sealed.

    Raises:
        UsageError: missing or empty ``model_dir``, existing ``out``, bad ``chunk_size``.
        MalformedEvidence: a ``*.safetensors`` file is not a valid safetensors file.
    """
    model_dir, out = Path(model_dir), Path(out)
    if not model_dir.is_dir():
        raise UsageError(f"model directory not found: {model_dir}")
    if out.exists():
        raise UsageError(f"output exists: {out}", hint="remove it or choose another path")
    if not MIN_CHUNK <= chunk_size <= MAX_CHUNK or chunk_size % 16:
        raise UsageError(f"chunk size must be a multiple of 16 between {MIN_CHUNK} and {MAX_CHUNK}")
    files = _model_files(model_dir)
    workers = threads or default_threads()
    model_id = secrets.token_bytes(16)
    data_key = DataKey(key=secrets.token_bytes(32))
    content_key, manifest_key = derive_keys(data_key.key, model_id)
    counter = _Counter(sum(p.stat().st_size for _, p in files), progress)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = private_dir(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        private_dir(tmp / DATA_DIR)
        slots: queue.Queue[_Slot] = queue.Queue()
        buf = min(chunk_size, max(p.stat().st_size for _, p in files) or 1)
        for _ in range(2 * workers):
            slots.put(_Slot(buf, slots))
        with (
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ccai-seal") as pool,
            ThreadPoolExecutor(
                max_workers=min(len(files), _FILE_STREAMS), thread_name_prefix="ccai-seal-file"
            ) as readers,
        ):
            jobs = [
                readers.submit(
                    _seal_file,
                    path,
                    tmp / data_file_name(index),
                    index=index,
                    name=name,
                    chunk_size=chunk_size,
                    content_key=content_key,
                    model_id=model_id,
                    pool=pool,
                    slots=slots,
                    counter=counter,
                )
                for index, (name, path) in enumerate(files)
            ]
            wait(jobs)
        entries = [job.result() for job in jobs]
        manifest = Manifest(model_id=model_id, chunk_size=chunk_size, files=tuple(entries))
        manifest_nonce = secrets.token_bytes(12)
        blob = AESGCM(manifest_key).encrypt(
            manifest_nonce, manifest.to_json(), manifest_aad(model_id, chunk_size)
        )
        atomic_write(tmp / MANIFEST_NAME, blob)
        wrap_nonce, wrapped = wrap_data_key(data_key, kek, binding=header_binding(model_id))
        header = Header(
            model_id=model_id,
            chunk_size=chunk_size,
            kid=kek.kid,
            wrap_nonce=wrap_nonce,
            wrapped_key=wrapped,
            manifest_nonce=manifest_nonce,
        )
        atomic_write(tmp / HEADER_NAME, header.to_json())
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def rewrap(sealed: Path, old: Kek | DataKey, new: Kek) -> Header:
    """Rotate the KEK: re-wrap the model's data key under ``new``; the weights are not touched.

    Args:
        sealed: The sealed model directory.
        old: The KEK that wraps the data key now (or the data key itself).
        new: The KEK to wrap it with.

    Returns:
        The new header (written atomically in place of the old one, mode 0600; a symlink planted
        at the header's name is replaced, not followed).

    Raises:
        UnsealError: ``old`` does not unwrap the data key.
    """
    sealed = Path(sealed)
    header = read_header(sealed)
    data_key = resolve_data_key(header, old)
    nonce, wrapped = wrap_data_key(data_key, new, binding=header_binding(header.model_id))
    updated = Header(
        model_id=header.model_id,
        chunk_size=header.chunk_size,
        kid=new.kid,
        wrap_nonce=nonce,
        wrapped_key=wrapped,
        manifest_nonce=header.manifest_nonce,
    )
    atomic_write(sealed / HEADER_NAME, updated.to_json())
    return updated


def unwrap_key(sealed: Path, kek: Kek) -> DataKey:
    """Unwrap a sealed model's data key with its KEK (what a key broker releases to a workload).

    Args:
        sealed: The sealed model directory (only its public header is read).
        kek: The KEK named in the header.

    Returns:
        The data key, usable in place of the KEK by every unsealing function.

    Raises:
        UnsealError: wrong KEK or altered header.
    """
    return resolve_data_key(read_header(Path(sealed)), kek)


def read_manifest(sealed: Path, key: SealedKey) -> Manifest:
    """Decrypt and authenticate the manifest of a sealed model.

    Args:
        sealed: The sealed model directory.
        key: The KEK, the data key, or a :class:`~ccai.sealed.KeySource` (asked once).

    Returns:
        The manifest (file names, sizes, SHA-256 digests, tensor tables).

    Raises:
        UsageError: not a sealed model directory.
        UnsealError: wrong key or tampered header/manifest.
    """
    return open_model(sealed, key).manifest


def read_file(sealed: Path, key: SealedKey, name: str) -> bytes:
    """Decrypt one file of a sealed model into memory (for small files: config, tokenizer).

    Args:
        sealed: The sealed model directory.
        key: The KEK (or the data key).
        name: The file's relative name in the original model directory.

    Returns:
        The plaintext, authenticated chunk by chunk and checked against its SHA-256.

    Raises:
        UsageError: no file of that name in the model.
        UnsealError: wrong key or tampering.
    """
    model = open_model(sealed, key)
    try:
        entry = model.manifest.file(name)
    except KeyError:
        raise UsageError(f"the sealed model has no file {name!r}") from None
    return model.decrypt_file(entry)


def _unescape_mount(field: str) -> str:
    # /proc/mounts escapes space, tab, newline and backslash as octal (\040 …).
    return field.encode().decode("unicode_escape") if "\\" in field else field


def is_ram_backed(path: Path, *, mounts: str | None = None) -> bool:
    """Whether ``path`` (or, if absent, its nearest existing parent) lies on tmpfs or ramfs.

    Args:
        path: The path to check.
        mounts: Contents of ``/proc/mounts`` (read from the system when ``None``; injectable for tests).

    Returns:
        ``True`` when the mount holding ``path`` is RAM-backed.
    """
    # Resolve symlinks in the part that exists; the part still to be created stays as written.
    probe, rest = Path(os.path.abspath(path)), []
    while not probe.exists() and probe != probe.parent:
        rest.append(probe.name)
        probe = probe.parent
    probe = probe.resolve().joinpath(*reversed(rest))
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return False
    best, best_type = "", ""
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        point = _unescape_mount(parts[1])
        inside = str(probe) == point or str(probe).startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, best_type = point, parts[2]
    return best_type in _RAM_FS


def unseal_to_directory(
    sealed: Path,
    out: Path,
    key: SealedKey,
    *,
    force_disk: bool = False,
    threads: int | None = None,
    progress: Progress | None = None,
) -> Manifest:
    """Decrypt a sealed model into a plain model directory, for engines that need a path.

    Plaintext weights must not reach a disk: ``out`` has to be on tmpfs or ramfs (for example
    ``/dev/shm`` inside the confidential VM) unless ``force_disk=True``. Every file is checked
    against its SHA-256; on any failure everything written is removed (all or nothing). Files are
    created exclusively with mode 0600 and directories (``out`` included) get mode 0700, whatever
    the umask.

    Args:
        sealed: The sealed model directory.
        out: The directory to create (must not exist, or be empty).
        key: The KEK (or the data key).
        force_disk: Allow a non-RAM-backed ``out`` (plaintext weights on disk: dangerous).
        threads: Decryption workers (default: usable cores, at most 16).
        progress: Called with ``(bytes_done, bytes_total)``.

    Returns:
        The manifest of the unsealed model.

    Raises:
        UsageError: ``out`` is on a disk (without ``force_disk``), exists and is not empty, or
            ``sealed`` is not a sealed model.
        UnsealError: wrong key, tampering or truncation.
    """
    sealed, out = Path(sealed), Path(out)
    if not force_disk and not is_ram_backed(out):
        raise UsageError(
            f"refusing to write plaintext weights to {out}: not a RAM-backed (tmpfs/ramfs) directory",
            hint="unseal into /dev/shm/…, or pass force_disk=True (--force-disk) to accept plaintext on disk",
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"output exists and is not an empty directory: {out}")
    model = open_model(sealed, key)
    workers = threads or default_threads()
    counter = _Counter(model.manifest.total_size, progress)
    created = not out.exists()
    private_dir(out)
    try:
        slots: queue.Queue[bytearray] = queue.Queue()
        for _ in range(2 * workers):
            slots.put(bytearray(model.header.chunk_size))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ccai-unseal") as pool:
            for entry in model.manifest.files:
                _unseal_file(model, entry, out, pool=pool, slots=slots, counter=counter)
    except (InvalidTag, ValueError, OSError):
        _remove_output(out, created=created)
        raise UnsealError() from None
    except BaseException:
        _remove_output(out, created=created)
        raise
    return model.manifest


def _remove_output(out: Path, *, created: bool) -> None:
    if created:
        shutil.rmtree(out, ignore_errors=True)
    else:
        for child in out.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


def _unseal_file(
    model: OpenedModel,
    entry: FileEntry,
    out: Path,
    *,
    pool: ThreadPoolExecutor,
    slots: queue.Queue[bytearray],
    counter: _Counter,
) -> None:
    target = (out / entry.name).resolve()
    if not target.is_relative_to(out.resolve()):
        raise UnsealError()  # a name escaping the output directory: never produced by seal()
    private_dir(target.parent)
    aead = AESGCM(model.content_key)
    prefix = model.aad_prefix(entry)
    mm = model.map_data(entry)
    fd = open_private_exclusive(target)
    try:
        os.ftruncate(fd, entry.size)

        def work(i: int) -> None:
            start, n, cstart = model.chunk_span(entry, i)
            buf = slots.get()
            try:
                with memoryview(mm)[cstart : cstart + n + TAG_BYTES] as src, memoryview(buf)[:n] as view:
                    aead.decrypt_into(
                        chunk_nonce(entry.index, i), src, chunk_aad(prefix, i, entry.chunks), view
                    )
                    os.pwrite(fd, view, start)
            finally:
                slots.put(buf)
            counter.add(n)

        futures = [pool.submit(work, i) for i in range(entry.chunks)]
        wait(futures)  # all workers are done with fd and mm before either is closed
        for fut in futures:
            fut.result()
        digest = hashlib.sha256()
        with open(fd, "rb", buffering=0, closefd=False) as fh:
            fh.seek(0)
            while block := fh.read(8 << 20):
                digest.update(block)
        if not hmac.compare_digest(digest.digest(), entry.sha256):
            raise UnsealError()
    finally:
        os.close(fd)
        mm.close()
