"""``ccai bench load``: sealed-model load speed against stock safetensors and the plaintext pipeline.

The command is mounted on the ``ccai bench`` group (``app.command("load")(bench_load.load)`` in
``ccai.cli.bench``); the measurement lives in :func:`ccai.bench.run_load_benchmark`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ccai.cli._output import console, err_console, print_json
from ccai.errors import UsageError

__all__ = ["load"]


def _numbers(text: str, what: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--{what} takes comma-separated numbers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise UsageError(f"--{what} needs positive numbers")
    return values


def load(
    *,
    size_gib: Annotated[float, typer.Option("--size", help="Synthetic model size in GiB.", min=0.001)] = 8.0,
    device: Annotated[str, typer.Option("--device", help="'cuda', 'cuda:N' or 'cpu'.")] = "cuda",
    threads: Annotated[
        str, typer.Option("--threads", help="Thread counts to sweep, e.g. 4,8,16.")
    ] = "4,8,16",
    chunk_mib: Annotated[str, typer.Option("--chunk-mib", help="Chunk sizes (MiB) to sweep.")] = "4,16,64",
    repeats: Annotated[int, typer.Option("--repeats", min=1, help="Timed repetitions (median).")] = 3,
    workdir: Annotated[Path | None, typer.Option("--workdir", help="Scratch directory.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")] = False,
) -> None:
    """Measure stock safetensors, ccai's pipeline without decryption, and ccai's sealed load (GB/s)."""
    from ccai.bench import run_load_benchmark

    report = run_load_benchmark(
        size_bytes=int(size_gib * 2**30),
        device=device,
        threads=[int(t) for t in _numbers(threads, "threads")],
        chunk_mib=_numbers(chunk_mib, "chunk-mib"),
        repeats=repeats,
        workdir=workdir,
        log=None if json_out else lambda msg: err_console.print(f"[dim]… {msg}[/]"),
    )
    if json_out:
        print_json(report.to_dict())
    else:
        console.print(report.render(), highlight=False, soft_wrap=True)
