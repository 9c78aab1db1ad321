"""The fuzzing runner behind ``scripts/fuzz`` (documented in docs/fuzzing.md).

Usage::

    scripts/fuzz [--seconds N] [--jobs N] [--engine auto|atheris|builtin] [--runs N] [--seed N] [TARGET...]

Each target runs in its own process for ``--seconds`` (``--jobs`` of them at a time). With atheris
installed the run is coverage-guided (``atheris.Setup`` / ``atheris.Fuzz`` with
``-max_total_time``); otherwise a built-in mutation loop (bit flips, byte sets, inserts, deletes,
duplications, splices of corpus entries, boundary integers and numeric text, from a seeded
``random.Random``) runs for the same time. Either way an input that raises anything but
``ccai.errors.Error`` is a crash: it is written to ``tests/fuzz/crashes/<target>/<sha256>`` (one
file per distinct exception type and location), where ``tests/fuzz/test_regressions.py`` replays
it. The last lines printed are ``target executions crashes``, one per target, and the exit status
is 1 when any target crashed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
CRASH_DIR = HERE / "crashes"
_MAX_INPUT = 1 << 16
_POOL_SIZE = 256
_INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0x30, 0x2D, 0x22, 0x5C)
_INTERESTING_INTS = (0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF)
_NUMBER_TEXT = (
    b"1e999",
    b"-1",
    b"0",
    b"99999999999999999999999",
    b"NaN",
    b"-0",
    b"1.5",
    b"\xc3\xa9",
    b"\\u0000",
)


@dataclass(slots=True)
class Result:
    """What one target's run found."""

    target: str
    executions: int = 0
    crashes: list[str] = field(default_factory=list)  # files written (or that already existed)
    signatures: set[str] = field(default_factory=set)


def crash_signature(exc: BaseException) -> str:
    """Exception type plus the innermost frame inside ccai (or the innermost frame at all)."""
    frames = traceback.extract_tb(exc.__traceback__)
    inside = [f for f in frames if "/ccai/" in f.filename.replace(os.sep, "/")]
    frame = (inside or frames or [None])[-1]
    where = f"{Path(frame.filename).name}:{frame.lineno}" if frame is not None else "?"
    return f"{type(exc).__name__}@{where}"


def is_crash(exc: BaseException) -> bool:
    """Anything but a ccai error, except the interpreter being asked to stop."""
    from ccai.errors import Error

    return not isinstance(exc, Error | KeyboardInterrupt | SystemExit)


def save_crash(target: str, data: bytes, exc: BaseException, crash_dir: Path, result: Result) -> None:
    """Record a crash; keep one input file per distinct signature."""
    signature = crash_signature(exc)
    if signature in result.signatures:
        return
    result.signatures.add(signature)
    digest = hashlib.sha256(data).hexdigest()
    path = crash_dir / target / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    result.crashes.append(str(path))
    print(f"[{target}] crash {signature} -> {path}", file=sys.stderr)
    traceback.print_exception(exc, file=sys.stderr)


class Mutator:
    """A small, seeded, structure-agnostic mutator (the built-in engine's and the CI run's)."""

    def __init__(self, corpus: Sequence[bytes], rng: random.Random) -> None:
        self.rng = rng
        self.corpus = [bytes(c) for c in corpus] or [b""]
        self.pool = list(self.corpus)

    def _position(self, data: bytes, *, end: bool = False) -> int:
        return self.rng.randrange(len(data) + (1 if end else 0)) if data or end else 0

    def _one(self, data: bytearray) -> bytearray:
        rng = self.rng
        op = rng.randrange(11)
        if not data and op < 9:
            op = 9
        if op == 0:  # flip one bit
            i = self._position(data)
            data[i] ^= 1 << rng.randrange(8)
        elif op == 1:  # random byte
            data[self._position(data)] = rng.randrange(256)
        elif op == 2:  # interesting byte
            data[self._position(data)] = rng.choice(_INTERESTING_BYTES)
        elif op == 3:  # add a small delta to a byte (what the hypothesis tests do)
            i = self._position(data)
            data[i] = (data[i] + rng.randrange(1, 256)) % 256
        elif op == 4:  # delete a range
            i = self._position(data)
            del data[i : i + rng.randrange(1, 33)]
        elif op == 5:  # duplicate a range
            i = self._position(data)
            chunk = data[i : i + rng.randrange(1, 65)]
            j = self._position(data, end=True)
            data[j:j] = chunk
        elif op == 6:  # boundary integer, little or big endian
            width = rng.choice((1, 2, 4))
            value = rng.choice(_INTERESTING_INTS) & ((1 << (8 * width)) - 1)
            i = self._position(data)
            data[i : i + width] = value.to_bytes(width, rng.choice(("little", "big")))
        elif op == 7:  # replace a run of digits (JSON/XML numbers) with numeric trouble
            digits = [i for i, b in enumerate(data) if 0x30 <= b <= 0x39]
            if digits:
                i = rng.choice(digits)
                j = i
                while j < len(data) and 0x30 <= data[j] <= 0x39:
                    j += 1
                data[i:j] = rng.choice(_NUMBER_TEXT)
        elif op == 8:  # truncate
            del data[self._position(data) :]
        elif op == 9:  # insert random bytes
            j = self._position(data, end=True)
            data[j:j] = rng.randbytes(rng.randrange(1, 17))
        else:  # splice with another corpus entry
            other = rng.choice(self.corpus)
            if other:
                i = self._position(data, end=True)
                a = rng.randrange(len(other))
                data[i:] = other[a : a + rng.randrange(1, len(other) - a + 1)] + data[i:]
        return data

    def next(self) -> bytes:
        """A new input: one to four mutations of a pool entry (seeds, plus some earlier mutants)."""
        data = bytearray(self.rng.choice(self.pool))
        for _ in range(self.rng.randrange(1, 5)):
            data = self._one(data)
        out = bytes(data[:_MAX_INPUT])
        if self.rng.random() < 0.05:
            if len(self.pool) >= _POOL_SIZE:
                self.pool[self.rng.randrange(len(self.corpus), _POOL_SIZE)] = out
            else:
                self.pool.append(out)
        return out


def run_builtin(
    name: str,
    *,
    seconds: float | None = None,
    runs: int | None = None,
    seed: int = 0,
    crash_dir: Path = CRASH_DIR,
    on_progress: Callable[[Result], None] | None = None,
) -> Result:
    """Run the built-in mutation loop on one target, for ``seconds`` or ``runs`` inputs."""
    from fuzz_targets import TARGETS

    target = TARGETS[name]
    corpus = target.corpus()
    result = Result(target=name)
    rng = random.Random(f"{seed}:{name}")
    mutator = Mutator(corpus, rng)
    deadline = time.monotonic() + seconds if seconds is not None else None
    inputs: list[bytes] = list(corpus)  # the seeds themselves first
    last_report = time.monotonic()
    while True:
        if runs is not None and result.executions >= runs:
            break
        if deadline is not None and time.monotonic() >= deadline:
            break
        data = inputs.pop() if inputs else mutator.next()
        result.executions += 1
        try:
            target.run(data)
        except BaseException as exc:
            if not is_crash(exc):
                raise
            save_crash(name, data, exc, crash_dir, result)
        if on_progress is not None and time.monotonic() - last_report > 1.0:
            last_report = time.monotonic()
            on_progress(result)
    return result


def run_atheris(name: str, *, seconds: int, crash_dir: Path, stats_file: Path) -> None:
    """Coverage-guided run with atheris/libFuzzer; writes its counts to ``stats_file``. Never returns."""
    import atheris  # type: ignore[import-not-found]
    from fuzz_targets import TARGETS

    target = TARGETS[name]
    # Instrument ccai only (not cryptography, lxml, pydantic …): fast to start, and the coverage
    # feedback is about ccai's branches. Targets import lazily, so running the seeds inside the
    # block imports — and instruments — every ccai module the target reaches.
    with atheris.instrument_imports(include=["ccai"]):
        seeds = target.corpus()
        for seed in seeds:
            try:
                target.run(seed)
            except BaseException as exc:
                if not is_crash(exc):
                    raise
    result = Result(target=name)
    corpus_dir = Path(tempfile.mkdtemp(prefix=f"ccai-fuzz-{name}-"))
    for seed in seeds:
        (corpus_dir / hashlib.sha256(seed).hexdigest()).write_bytes(seed)
    deadline = time.monotonic() + seconds
    last_write = 0.0

    def write_stats() -> None:
        stats_file.write_text(json.dumps({"executions": result.executions, "crashes": result.crashes}))

    def test_one_input(data: bytes) -> None:
        nonlocal last_write
        result.executions += 1
        try:
            target.run(data)
        except BaseException as exc:
            if not is_crash(exc):
                raise
            save_crash(name, data, exc, crash_dir, result)
            write_stats()
        now = time.monotonic()
        if now - last_write > 1.0:
            last_write = now
            write_stats()
        if now >= deadline:
            write_stats()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)

    write_stats()
    argv = [sys.argv[0], str(corpus_dir), f"-max_total_time={seconds}", f"-max_len={_MAX_INPUT}"]
    argv += [f"-artifact_prefix={crash_dir / name}/libfuzzer-", "-timeout=30", "-print_final_stats=1"]
    (crash_dir / name).mkdir(parents=True, exist_ok=True)
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


def have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def _worker(args: argparse.Namespace) -> int:
    name = args.worker
    stats_file = Path(args.stats_file)
    crash_dir = Path(args.crash_dir)
    if args.engine == "atheris":
        run_atheris(name, seconds=int(args.seconds), crash_dir=crash_dir, stats_file=stats_file)
        return 0

    def progress(result: Result) -> None:
        stats_file.write_text(json.dumps({"executions": result.executions, "crashes": result.crashes}))

    result = run_builtin(
        name, seconds=args.seconds, runs=args.runs, seed=args.seed, crash_dir=crash_dir, on_progress=progress
    )
    progress(result)
    return 0


def _run_one(name: str, args: argparse.Namespace, engine: str, log_dir: Path) -> tuple[str, int, int, int]:
    stats_file = log_dir / f"{name}.json"
    log_file = log_dir / f"{name}.log"
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--engine", engine]
    command += ["--seconds", str(args.seconds), "--seed", str(args.seed), "--crash-dir", str(args.crash_dir)]
    command += ["--stats-file", str(stats_file)]
    if args.runs is not None:
        command += ["--runs", str(args.runs)]
    with log_file.open("wb") as log:
        # Generous wall-clock limit: the worker stops itself; this only catches a hung input.
        limit = None if args.runs is not None else args.seconds * 2 + 120
        try:
            rc = subprocess.run(
                command, stdout=log, stderr=subprocess.STDOUT, timeout=limit, check=False
            ).returncode
        except subprocess.TimeoutExpired:
            rc = -1
    try:
        stats = json.loads(stats_file.read_text())
    except (OSError, ValueError):
        stats = {"executions": 0, "crashes": []}
    return name, rc, int(stats["executions"]), len(stats["crashes"])


def main(argv: Sequence[str] | None = None) -> int:
    sys.path.insert(0, str(HERE))
    parser = argparse.ArgumentParser(prog="scripts/fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", metavar="TARGET", help="targets to run (default: all)")
    parser.add_argument("--seconds", type=float, default=60, help="time budget per target (default 60)")
    parser.add_argument("--jobs", type=int, default=1, help="targets run in parallel processes (default 1)")
    parser.add_argument("--engine", choices=("auto", "atheris", "builtin"), default="auto")
    parser.add_argument("--runs", type=int, default=None, help="built-in engine: stop after N inputs")
    parser.add_argument("--seed", type=int, default=0, help="built-in engine: random seed")
    parser.add_argument("--crash-dir", default=str(CRASH_DIR), help="where crash inputs go")
    parser.add_argument("--log-dir", default=None, help="per-target logs and stats (default: a temp dir)")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--stats-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args)

    from fuzz_targets import TARGETS

    if args.list:
        for target in TARGETS.values():
            print(f"{target.name:24} {target.description}")
        return 0
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown targets {unknown}; see --list")
    names = args.targets or list(TARGETS)
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if have_atheris() and args.runs is None else "builtin"
    if engine == "atheris" and not have_atheris():
        parser.error("atheris is not installed (pip install atheris), use --engine builtin")
    log_dir = Path(args.log_dir or tempfile.mkdtemp(prefix="ccai-fuzz-logs-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"fuzzing {len(names)} targets with {engine}, {args.seconds:g} s each, {args.jobs} at a time")
    print(f"logs and stats in {log_dir}")
    sys.stdout.flush()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(lambda n: _run_one(n, args, engine, log_dir), names))
    print(f"{'target':24} {'executions':>12} {'crashes':>8}")
    failed = False
    for name, rc, executions, crashes in results:
        note = "" if rc == 0 else f"  (worker exit {rc}, see {log_dir / (name + '.log')})"
        print(f"{name:24} {executions:>12} {crashes:>8}{note}")
        failed = failed or crashes > 0 or rc != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
