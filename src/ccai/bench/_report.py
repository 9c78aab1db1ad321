"""Sweep output: the NVIDIA-layout Δ table, absolute tables, per-cell JSON, CSV, PNG plots.

File layout under the results directory::

    manifest.json          run manifest (config, engines, GPU CC state, OpenSSL, host, warnings)
    table.txt              the terminal tables as plain text
    cells/<in>x<out>_c<C>.json   one file per cell: every run's metrics (sglang field names) and the Δs
    runs.jsonl             one sglang-style record per timed run
    runs.csv, deltas.csv   the same as flat tables
    plots/<in>x<out>.png   throughput/GPU, median TPOT and median TTFT vs concurrency, both arms, 95 % CIs
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ccai._files import atomic_write
from ccai.bench._stats import Delta, mean_interval
from ccai.bench._sweep import DELTA_METRICS, Cell, SweepResult

__all__ = [
    "NOT_RUN",
    "TABLE_METRICS",
    "cell_record",
    "delta_table",
    "format_delta",
    "render_text",
    "value_table",
    "write_results",
]

#: What a table shows for a planned cell that has no timed run (budget exhausted, interrupted).
NOT_RUN = "not run"

#: The three metrics of the NVIDIA table (plus TTFT, which NVIDIA collected but did not publish).
TABLE_METRICS = (
    ("output_throughput_per_gpu", "Tput/GPU Δ"),
    ("median_tpot_ms", "Med TPOT Δ"),
    ("median_ttft_ms", "Med TTFT Δ"),
)

_RUN_FIELDS = (
    "completed",
    "failed",
    "duration",
    "output_throughput",
    "output_throughput_per_gpu",
    "request_throughput",
    "median_ttft_ms",
    "p99_ttft_ms",
    "median_tpot_ms",
    "p99_tpot_ms",
    "median_itl_ms",
    "p99_itl_ms",
    "median_e2e_latency_ms",
    "concurrency",
)


def format_delta(delta: Delta | None) -> str:
    """``"-2.0 % [-3.1, -0.9]"``; ``"n/a"`` without a value, no brackets without an interval.

    Args:
        delta: The delta.

    Returns:
        The text.
    """
    if delta is None:
        return "n/a"
    if delta.low is None or delta.high is None:
        return f"{delta.pct:+.1f} %"
    return f"{delta.pct:+.1f} % [{delta.low:+.1f}, {delta.high:+.1f}]"


def _cells_by(result: SweepResult) -> dict[tuple[str, int], Cell]:
    return {(c.io.label, c.concurrency): c for c in result.cells if c.runs}


def delta_table(result: SweepResult) -> Table:
    """The NVIDIA-layout table: rows = concurrency, column groups = I/O lengths, Δ% (95 % CI).

    Args:
        result: A two-arm sweep.

    Returns:
        The rich table (a mean row at the bottom, as in NVIDIA's table).
    """
    cfg = result.config
    table = Table(
        title=f"Δ% arm A ({cfg.url}) vs baseline B ({cfg.baseline_url}) — {cfg.mode}, "
        f"{cfg.repeats} pairs, 95 % CI; latency Δ > 0 = slower",
        title_justify="left",
    )
    table.add_column("Concurrency", justify="right")
    for io_len in cfg.ios:
        for _, name in TABLE_METRICS:
            table.add_column(f"{io_len.label}\n{name}", justify="right")
    by = _cells_by(result)
    for c in cfg.concurrencies:
        row = [str(c)]
        for io_len in cfg.ios:
            cell = by.get((io_len.label, c))
            for metric, _ in TABLE_METRICS:
                row.append(format_delta(cell.deltas.get(metric)) if cell else NOT_RUN)
        table.add_row(*row)
    means = ["mean"]
    for io_len in cfg.ios:
        for metric, _ in TABLE_METRICS:
            pcts = [
                d.pct
                for c in cfg.concurrencies
                if (cell := by.get((io_len.label, c))) and (d := cell.deltas.get(metric)) is not None
            ]
            means.append(f"{sum(pcts) / len(pcts):+.1f} %" if pcts else "n/a")
    table.add_row(*means, style="bold")
    return table


def _fmt(value: float, digits: int = 1) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:,.{digits}f}"


def value_table(result: SweepResult) -> Table:
    """Absolute values per arm: mean over repeats of throughput/GPU, median TPOT, median TTFT, client CPU.

    Args:
        result: The sweep.

    Returns:
        The rich table.
    """
    cfg = result.config
    arms = ["A", "B"] if cfg.baseline_url is not None else ["A"]
    table = Table(
        title=f"Absolute values (mean of {cfg.repeats} runs; tok/s per GPU with --gpus {cfg.gpus}; ms)",
        title_justify="left",
    )
    table.add_column("Concurrency", justify="right")
    for io_len in cfg.ios:
        for arm in arms:
            table.add_column(f"{io_len.label} {arm}\ntok/s/GPU", justify="right")
            table.add_column(f"{io_len.label} {arm}\nTPOT", justify="right")
            table.add_column(f"{io_len.label} {arm}\nTTFT", justify="right")
        table.add_column(f"{io_len.label}\nclient CPU", justify="right")
    by = _cells_by(result)
    for c in cfg.concurrencies:
        row = [str(c)]
        for io_len in cfg.ios:
            cell = by.get((io_len.label, c))
            if cell is None:
                row.extend([NOT_RUN] * (3 * len(arms) + 1))
                continue
            for arm in arms:
                for metric, digits in (
                    ("output_throughput_per_gpu", 1),
                    ("median_tpot_ms", 1),
                    ("median_ttft_ms", 0),
                ):
                    row.append(_fmt(mean_interval(cell.values(arm, metric))[0], digits))
            share = max((r.client_cpu_share for r in cell.runs), default=math.nan)
            row.append("n/a" if not math.isfinite(share) else f"{100 * share:.0f} %")
        table.add_row(*row)
    return table


def render_text(result: SweepResult, *, width: int = 220) -> str:
    """All tables, the correctness check and the warnings as plain text (``table.txt``).

    Args:
        result: The sweep.
        width: Console width.

    Returns:
        The text.
    """
    console = Console(record=True, width=width, file=io.StringIO(), highlight=False, color_system=None)
    if result.stopped is not None:
        console.print(f"SWEEP STOPPED EARLY: {result.stopped}")
    if result.not_run:
        console.print(f"not run: {', '.join(f'{io_len.label} c={c}' for io_len, c in result.not_run)}")
    if result.check is not None and result.check.outputs_b:
        check = result.check
        verdict = "match" if check.ok else "DIFFER"
        console.print(
            f"correctness pre-check: greedy outputs {verdict} ({check.matches}/{len(check.prompts)})"
        )
    if result.config.baseline_url is not None:
        console.print(delta_table(result))
    console.print(value_table(result))
    for warning in result.warnings:
        console.print(f"warning: {warning}")
    return console.export_text()


def _delta_json(delta: Delta | None) -> dict[str, Any] | None:
    if delta is None:
        return None
    return {"pct": delta.pct, "ci95_low": delta.low, "ci95_high": delta.high, "pairs": delta.pairs}


def _clean(value: float) -> float | None:
    return value if math.isfinite(value) else None


def cell_record(result: SweepResult, cell: Cell) -> dict[str, Any]:
    """One cell as JSON: settings, every run's metrics (sglang names) and the Δs.

    Args:
        result: The sweep (for the settings).
        cell: The cell.

    Returns:
        A JSON-friendly dict (NaN becomes ``null``).
    """
    cfg = result.config
    return {
        "random_input_len": cell.io.input_len,
        "random_output_len": cell.io.output_len,
        "max_concurrency": cell.concurrency,
        "request_rate": cfg.request_rate if cfg.request_rate is not None else "inf",
        "num_prompts": cell.num_prompts,
        "gpus": cfg.gpus,
        "mode": cfg.mode,
        "runs": [
            {
                "arm": r.arm,
                "url": cfg.url if r.arm == "A" else cfg.baseline_url,
                "repeat": r.repeat,
                "position_in_pair": r.position,
                **{k: _clean(v) for k, v in r.metrics.fields.items()},
                "failures": r.metrics.failures,
                "failure_examples": r.metrics.failure_examples,
                "output_shortfall": r.metrics.output_shortfall,
                "client_cpu_share": r.client_cpu_share,
                "loop_lag_p99_ms": r.loop_lag_p99_ms,
                "mean_server_input_len": r.mean_server_input_len,
            }
            for r in cell.runs
        ],
        "delta_pct": {metric: _delta_json(cell.deltas.get(metric)) for metric in DELTA_METRICS}
        if cell.deltas
        else {},
    }


def _plot(result: SweepResult, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = result.config
    arms = ["A", "B"] if cfg.baseline_url is not None else ["A"]
    labels = {"A": f"A {cfg.url}", "B": f"B {cfg.baseline_url}"}
    written = []
    by = _cells_by(result)
    for io_len in cfg.ios:
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
        for ax, (metric, title) in zip(
            axes,
            (
                ("output_throughput_per_gpu", "output tok/s per GPU"),
                ("median_tpot_ms", "median TPOT (ms)"),
                ("median_ttft_ms", "median TTFT (ms)"),
            ),
            strict=True,
        ):
            for arm in arms:
                xs, ys, es = [], [], []
                for c in cfg.concurrencies:
                    cell = by.get((io_len.label, c))
                    if cell is None:
                        continue
                    mean, half = mean_interval(cell.values(arm, metric))
                    if math.isfinite(mean):
                        xs.append(c)
                        ys.append(mean)
                        es.append(half)
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=labels[arm])
            ax.set_xscale("log", base=2)
            ax.set_ylim(bottom=0)
            ax.set_xticks(list(cfg.concurrencies), [str(c) for c in cfg.concurrencies])
            ax.set_xlabel("concurrency")
            ax.set_title(title)
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.suptitle(f"{io_len.label} input/output tokens — mean of {cfg.repeats} runs, 95 % CI")
        fig.tight_layout()
        path = out / f"{io_len.input_len}x{io_len.output_len}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write_results(
    result: SweepResult, out_dir: Path, *, manifest: dict[str, Any], plots: bool = True
) -> tuple[list[Path], str | None]:
    """Write every output file under ``out_dir``.

    Each file is written to a temporary name and renamed into place, so the files stay whole when the
    process is killed between two calls (the CLI calls this after every timed run).

    Args:
        result: The sweep.
        out_dir: Results directory (created).
        manifest: The run manifest (:func:`ccai.bench.collect_manifest`).
        plots: Draw PNG plots (needs matplotlib, the ``plot`` extra).

    Returns:
        The files written, and a note when plots were skipped (``None`` otherwise).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cells").mkdir(exist_ok=True)
    written: list[Path] = []

    def put(path: Path, text: str) -> None:
        atomic_write(path, text.encode("utf-8"), mode=0o644)
        written.append(path)

    put(out_dir / "manifest.json", json.dumps(manifest, indent=2, default=str) + "\n")
    put(out_dir / "table.txt", render_text(result))
    lines = []
    run_rows: list[dict[str, Any]] = []
    delta_rows: list[dict[str, Any]] = []
    for cell in result.cells:
        if not cell.runs:
            continue
        record = cell_record(result, cell)
        put(
            out_dir / "cells" / f"{cell.io.input_len}x{cell.io.output_len}_c{cell.concurrency}.json",
            json.dumps(record, indent=2) + "\n",
        )
        for run in record["runs"]:
            flat = {k: v for k, v in run.items() if not isinstance(v, dict)}
            lines.append(
                json.dumps(
                    {
                        **{
                            k: record[k]
                            for k in (
                                "random_input_len",
                                "random_output_len",
                                "max_concurrency",
                                "request_rate",
                            )
                        },
                        **flat,
                    }
                )
            )
            run_rows.append(
                {
                    "io": cell.io.label,
                    "max_concurrency": cell.concurrency,
                    "arm": run["arm"],
                    "repeat": run["repeat"],
                    "position_in_pair": run["position_in_pair"],
                    **{f: run.get(f) for f in _RUN_FIELDS},
                    "client_cpu_share": run["client_cpu_share"],
                }
            )
        for metric, delta in cell.deltas.items():
            delta_rows.append(
                {
                    "io": cell.io.label,
                    "concurrency": cell.concurrency,
                    "metric": metric,
                    "delta_pct": None if delta is None else delta.pct,
                    "ci95_low": None if delta is None else delta.low,
                    "ci95_high": None if delta is None else delta.high,
                    "pairs": 0 if delta is None else delta.pairs,
                }
            )
    put(out_dir / "runs.jsonl", "".join(line + "\n" for line in lines))
    for name, rows in (("runs.csv", run_rows), ("deltas.csv", delta_rows)):
        buf = io.StringIO()
        if rows:
            writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        put(out_dir / name, buf.getvalue())
    note = None
    if plots:
        try:
            (out_dir / "plots").mkdir(exist_ok=True)
            written.extend(_plot(result, out_dir / "plots"))
        except ImportError:
            note = "plots skipped: matplotlib is not installed (pip install 'ccai[plot]')"
    return written, note
