"""Where the sealed load's time goes: AES compute, memory bandwidth, or host-to-device copy / overlap.

    python benchmarks/bench_load_breakdown.py --size-gib 8 --threads 8,12,16 --chunk-mib 16,64
    python benchmarks/bench_load_breakdown.py --size-gib 0.25 --threads 1,2 --chunk-mib 4 --device cpu

On one synthetic bf16 model (plaintext and sealed once per chunk size, page cache warm) it measures,
median of ``--repeats`` after one untimed warm-up:

  (a) decrypt   CPU only: N threads ``decrypt_into`` chunks from the ciphertext mmap into their own
                two (pinned) chunk buffers, no GPU — the AES + memory ceiling of the decrypt stage;
                also the ``munmap`` time of those maps afterwards;
  (b) memcpy    the same loop with a plain copy from the plaintext mmap (the copy stage of the
                plaintext pipeline), and its ``munmap`` time;
  (c) h2d       host-to-device copies alone from a pinned pool, chunk by chunk, over 1, 2 and 4
                streams from one thread — the DMA ceiling;
  (d) pipeline  ccai's full plaintext pipeline and sealed load, at the same settings; at the largest
                setting also with early unmapping, 2 copy streams and 4 staging slots per thread.

Reading it: if sealed (d) ≈ bytes ÷ (a), AES/memory on the CPU is the limit (more cores or fewer
bytes through memory); if plain (d) and sealed (d) both sit near bytes ÷ (c), the copy engine is; if
both (a) and (c) are well above (d), the pipeline's overlap (scheduling, waiting, page faults, memory
contention between DMA and the workers) is. GB/s = 10⁹ B/s. Prints a table; ``--json FILE`` keeps it.
"""

from __future__ import annotations

import argparse
import gc
import json
import mmap
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from ccai.bench._load import _warm, _workdir, write_synthetic_model
from ccai.sealed._container import open_model
from ccai.sealed._format import TAG_BYTES, chunk_aad, chunk_nonce, data_file_name
from ccai.sealed._keys import Kek, new_kek
from ccai.sealed._pipeline import _load_plain, _load_sealed, _Tuning
from ccai.sealed._seal import seal

_MIB = 1 << 20
_GB = 1e9

# (source index, source offset, source length, nonce, aad); nonce/aad None for plaintext.
Piece = tuple[int, int, int, bytes | None, bytes | None]


def _median(fn: Callable[[], Any], repeats: int, sync: Callable[[], None]) -> float:
    times = []
    for attempt in range(repeats + 1):
        gc.collect()
        sync()
        start = time.perf_counter()
        result = fn()
        sync()
        elapsed = time.perf_counter() - start
        del result
        if attempt:
            times.append(elapsed)
    return statistics.median(times)


def _sealed_pieces(sealed: Path, kek: Kek) -> tuple[list[Path], list[Piece], int, bytes]:
    model = open_model(sealed, kek)
    paths: list[Path] = []
    pieces: list[Piece] = []
    for entry in model.manifest.files:
        if entry.safetensors is None:
            continue
        paths.append(sealed / data_file_name(entry.index))
        prefix = model.aad_prefix(entry)
        for i in range(entry.chunks):
            _start, n, cstart = model.chunk_span(entry, i)
            aad = chunk_aad(prefix, i, entry.chunks)
            pieces.append((len(paths) - 1, cstart, n + TAG_BYTES, chunk_nonce(entry.index, i), aad))
    return paths, pieces, model.header.chunk_size, model.content_key


def _plain_pieces(paths: Sequence[Path], chunk: int) -> list[Piece]:
    pieces: list[Piece] = []
    for k, path in enumerate(paths):
        size = path.stat().st_size
        pieces.extend((k, off, min(chunk, size - off), None, None) for off in range(0, size, chunk))
    return pieces


def _cpu_stage(
    paths: Sequence[Path],
    pieces: Sequence[Piece],
    *,
    threads: int,
    chunk: int,
    key: bytes | None,
    pinned: bool,
) -> tuple[float, float]:
    """(seconds for the worker loop, seconds to unmap) for one run of stage (a) or (b)."""
    import numpy as np
    import torch
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    pool = torch.empty(threads * 2 * chunk, dtype=torch.uint8, pin_memory=pinned)
    whole = memoryview(pool.numpy())  # type: ignore[arg-type]
    maps = []
    for path in paths:
        with path.open("rb") as fh:
            maps.append(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ))
    cursor = iter(range(len(pieces)))
    lock = threading.Lock()

    def worker(w: int) -> None:
        aead = AESGCM(key) if key is not None else None
        turn = 0
        while True:
            with lock:
                i = next(cursor, None)
            if i is None:
                return
            k, off, n, nonce, aad = pieces[i]
            b = (w * 2 + turn % 2) * chunk
            turn += 1
            plain_n = n - TAG_BYTES if aead is not None else n
            with memoryview(maps[k])[off : off + n] as src, whole[b : b + plain_n] as out:
                if aead is not None:
                    aead.decrypt_into(nonce or b"", src, aad or b"", out)
                else:
                    np.copyto(np.frombuffer(out, dtype=np.uint8), np.frombuffer(src, dtype=np.uint8))

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as ex:
        for fut in [ex.submit(worker, w) for w in range(threads)]:
            fut.result()
    loop = time.perf_counter() - start
    start = time.perf_counter()
    for mm in maps:
        mm.close()
    unmap = time.perf_counter() - start
    whole.release()
    return loop, unmap


def _h2d(total: int, *, chunk: int, streams: int, device: Any) -> float:
    """Seconds to copy ``total`` bytes host→device in ``chunk`` pieces from a 32-slot pinned pool."""
    import torch

    slots = 32
    pool = torch.empty(slots * chunk, dtype=torch.uint8, pin_memory=True)
    dest = torch.empty(total, dtype=torch.uint8, device=device)
    ss = [torch.cuda.Stream(device) for _ in range(streams)]  # type: ignore[no-untyped-call]
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for i, off in enumerate(range(0, total, chunk)):
        n = min(chunk, total - off)
        s = i % slots
        with torch.cuda.stream(ss[i % streams]):
            dest[off : off + n].copy_(pool[s * chunk : s * chunk + n], non_blocking=True)
    for st in ss:
        st.synchronize()
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Set up the models, measure every stage and return the rows."""
    import cryptography
    import torch

    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    threads = [int(x) for x in args.threads.split(",")]
    chunks = [float(x) for x in args.chunk_mib.split(",")]

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(dev)

    def say(msg: str) -> None:
        print(f"… {msg}", file=sys.stderr, flush=True)

    rows: list[dict[str, Any]] = []
    with _workdir(args.workdir) as work:
        say(f"writing a {args.size_gib:g} GiB synthetic model")
        shards = write_synthetic_model(work / "model", int(args.size_gib * 2**30))
        total = sum(p.stat().st_size for p in shards)
        kek = new_kek()
        sealed: dict[float, Path] = {}
        for c in chunks:
            say(f"sealing with {c:g} MiB chunks")
            sealed[c] = work / f"sealed-{c:g}"
            seal(work / "model", sealed[c], kek, chunk_size=int(c * _MIB) // 16 * 16)
        _warm(shards)
        for path in sealed.values():
            _warm(sorted((path / "data").iterdir()))

        def row(stage: str, n: int, c: float, seconds: float, **extra: Any) -> None:
            gbps = total / seconds / _GB
            rows.append(
                {"stage": stage, "threads": n, "chunk_mib": c, "seconds": seconds, "gbps": gbps, **extra}
            )

        for c in chunks:
            paths, pieces, size, key = _sealed_pieces(sealed[c], kek)
            plain_pieces = _plain_pieces(shards, size)
            for n in threads:
                say(f"CPU stages, {n} threads, {c:g} MiB")
                for stage, ps, ks, src in (
                    ("a decrypt", pieces, key, paths),
                    ("b memcpy", plain_pieces, None, shards),
                ):
                    runs = [
                        _cpu_stage(src, ps, threads=n, chunk=size, key=ks, pinned=cuda)
                        for _ in range(args.repeats + 1)
                    ][1:]  # the first run warms the pinned pool and the maps
                    loop = statistics.median(r[0] for r in runs)
                    row(stage, n, c, loop, unmap_s=statistics.median(r[1] for r in runs))
            if cuda:
                for s in (1, 2, 4):
                    say(f"H2D alone, {s} streams, {c:g} MiB")
                    h2d = partial(_h2d, total, chunk=size, streams=s, device=dev)
                    row("c h2d", 0, c, _median(h2d, args.repeats, sync), streams=s)
            for n in threads:
                say(f"pipelines, {n} threads, {c:g} MiB")
                plain = _median(
                    partial(_load_plain, shards, device=dev, threads=n, chunk_size=size), args.repeats, sync
                )
                secret = _median(
                    partial(_load_sealed, sealed[c], kek, device=dev, threads=n), args.repeats, sync
                )
                row("d plain", n, c, plain)
                row("d sealed", n, c, secret, vs_plain=secret / plain)
        n, c = max(threads), max(chunks)
        size = int(c * _MIB) // 16 * 16
        for label, tuning in (
            ("unmap_early", _Tuning(unmap_early=True)),
            ("copy_streams=2", _Tuning(copy_streams=2)),
            ("slots/thread=4", _Tuning(slots_per_thread=4)),
        ):
            say(f"pipelines with {label}")
            plain = _median(
                partial(_load_plain, shards, device=dev, threads=n, chunk_size=size, tuning=tuning),
                args.repeats,
                sync,
            )
            secret = _median(
                partial(_load_sealed, sealed[c], kek, device=dev, threads=n, tuning=tuning),
                args.repeats,
                sync,
            )
            row(f"d plain {label}", n, c, plain)
            row(f"d sealed {label}", n, c, secret, vs_plain=secret / plain)
    return {
        "size_bytes": total,
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if cuda else "cpu",
        "cpus": len(os.sched_getaffinity(0)),
        "physical_cores": _physical_cores(),
        "cryptography": cryptography.__version__,
        "repeats": args.repeats,
        "rows": rows,
    }


def _physical_cores() -> int:
    """Distinct (package, core) pairs among the usable CPUs (hyper-threads share one)."""
    cores = set()
    for cpu in os.sched_getaffinity(0):
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topo / "physical_package_id").read_text(), (topo / "core_id").read_text()))
        except OSError:
            return len(os.sched_getaffinity(0))
    return len(cores)


def render(report: dict[str, Any]) -> str:
    """The table, one row per measurement, plus a per-setting summary."""
    lines = [
        f"load breakdown: {report['size_bytes'] / 2**30:.2f} GiB → {report['device']} "
        f"({report['device_name']}); {report['cpus']} CPUs, {report['physical_cores']} physical cores; "
        f"cryptography {report['cryptography']}; median of {report['repeats']}",
        "",
        f"{'stage':<28}{'threads':>8}{'chunk MiB':>10}{'streams':>8}{'time s':>9}{'GB/s':>8}"
        f"{'unmap s':>9}{'÷ plain':>9}",
    ]
    for r in report["rows"]:
        lines.append(
            f"{r['stage']:<28}{r['threads'] or '—':>8}{r['chunk_mib']:>10g}{r.get('streams', '—'):>8}"
            f"{r['seconds']:>9.3f}{r['gbps']:>8.2f}"
            + (f"{r['unmap_s']:>9.3f}" if "unmap_s" in r else f"{'':>9}")
            + (f"{r['vs_plain']:>9.3f}" if "vs_plain" in r else "")
        )
    by = {(r["stage"], r["threads"], r["chunk_mib"]): r for r in report["rows"]}
    h2d: dict[float, float] = {}
    for r in report["rows"]:
        if r["stage"] == "c h2d":
            h2d[r["chunk_mib"]] = max(h2d.get(r["chunk_mib"], 0.0), r["gbps"])
    lines += [
        "",
        "per setting (GB/s): decrypt-alone / memcpy-alone / best H2D-alone → plain / sealed pipeline",
    ]
    nan = float("nan")
    for (stage, n, c), r in sorted(by.items(), key=lambda kv: (kv[0][2], kv[0][1])):
        if stage != "d sealed":
            continue
        a, b, p = by.get(("a decrypt", n, c)), by.get(("b memcpy", n, c)), by.get(("d plain", n, c))
        dec = a["gbps"] if a else nan
        cpy = b["gbps"] if b else nan
        dma = h2d.get(c, nan)
        line = f"  {n:>3} thr {c:>4g} MiB: {dec:6.2f} / {cpy:6.2f} / {dma:6.2f} → "
        line += f"{p['gbps'] if p else nan:6.2f} / {r['gbps']:6.2f}"
        ceiling = min(x for x in (dec, dma) if x == x) if (dec == dec or dma == dma) else nan
        if ceiling == ceiling:
            line += f"   (sealed at {r['gbps'] / ceiling:.0%} of min(decrypt, H2D))"
        lines.append(line)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=8.0)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--threads", default="8,12,16")
    parser.add_argument("--chunk-mib", default="16,64")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    report = run(args)
    print(render(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
