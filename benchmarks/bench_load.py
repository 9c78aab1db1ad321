"""Sealed-model load benchmark: stock safetensors vs ccai's pipeline without and with decryption.

    python benchmarks/bench_load.py --size-gib 8 --device cuda --threads 8,16,24,32 --chunk-mib 16,64
    python benchmarks/bench_load.py --size-gib 0.5 --device cpu --threads 1,2 --chunk-mib 4,16

Prints a table (GB/s = 10⁹ B/s; "÷ plain" = sealed time over plaintext-pipeline time at the same
threads and chunk size; "× stock" = speed-up over safetensors.load_file) and, with --json FILE,
writes the full report. Same code as ``ccai bench load``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ccai.bench import run_load_benchmark


def _list(text: str, kind: type) -> list:
    return [kind(x) for x in text.split(",") if x.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=8.0, help="synthetic model size (GiB)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--threads", default="8,16,24,32", help="comma-separated thread counts")
    parser.add_argument("--chunk-mib", default="16,64", help="comma-separated chunk sizes (MiB)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write the report as JSON here")
    args = parser.parse_args()
    report = run_load_benchmark(
        size_bytes=int(args.size_gib * 2**30),
        device=args.device,
        threads=_list(args.threads, int),
        chunk_mib=_list(args.chunk_mib, float),
        repeats=args.repeats,
        workdir=args.workdir,
        log=lambda msg: print(f"… {msg}", file=sys.stderr, flush=True),
    )
    print(report.render())
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")


if __name__ == "__main__":
    main()
