"""Incremental results, the time budget and interruption of a sweep, against the loopback fake server."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ccai.bench import (
    ArmRun,
    Cell,
    IoLength,
    SweepConfig,
    SweepResult,
    collect_manifest,
    estimate_run_seconds,
    render_text,
    run_sweep,
    write_results,
)


class FakeClock:
    """A monotonic clock that advances one second per finished request (driven by the progress sink)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def start(self, description: str, total: int) -> None:
        """A phase begins (nothing to do)."""

    def advance(self) -> None:
        """One request finished: one second passes."""
        self.now += 1.0


def _config(url: str, **kw: Any) -> SweepConfig:
    base: dict[str, Any] = {
        "url": url,
        "model": "ok",
        "baseline_url": url,
        "concurrencies": (1, 2),
        "ios": (IoLength(input_len=8, output_len=4),),
        "repeats": 2,
        "num_prompts": 4,
        "warmup_requests": 1,
        "check_prompts": 2,
    }
    base.update(kw)
    return SweepConfig(**base)


def test_estimate_scales_by_waves() -> None:
    assert estimate_run_seconds([], num_prompts=8, concurrency=4) == 0.0
    # 16 requests at c=4 took 8 s (4 waves): 16 at c=8 is 2 waves, 4 s; 9 at c=4 is 3 waves, 6 s.
    assert estimate_run_seconds([(16, 4, 8.0)], num_prompts=16, concurrency=8) == 4.0
    assert estimate_run_seconds([(1, 1, 9.0), (16, 4, 8.0)], num_prompts=9, concurrency=4) == 6.0


async def test_budget_stops_starting_runs(fake_server: Any, word_tokenizer: Any, tmp_path: Path) -> None:
    clock = FakeClock()
    seen: list[tuple[str, int, str, int, int]] = []

    def on_run(snapshot: SweepResult, cell: Cell, run: ArmRun) -> None:
        seen.append((cell.io.label, cell.concurrency, run.arm, run.repeat, len(snapshot.cells)))
        write_results(snapshot, tmp_path, manifest=collect_manifest(snapshot, gpu={}), plots=False)
        rows = list(csv.DictReader((tmp_path / "runs.csv").open()))
        assert len(rows) == len(seen)  # every finished run is on disk before the next one starts

    # Check: 2 prompts × 2 arms = 4 s; c=1: warm-up 2 s, pair 1 = 8 s (t = 14); pair 2 is estimated
    # at 8 s but only 6 s of the 20 s budget are left, so the sweep stops; c=2 is never started.
    config = _config(fake_server.url, max_duration=20.0)
    result = await run_sweep(config, tokenizer=word_tokenizer, progress=clock, on_run=on_run, monotonic=clock)
    assert seen == [("8/4", 1, "A", 0, 1), ("8/4", 1, "B", 0, 1)]
    assert result.stopped is not None and "8/4 c=1 pair 2/2" in result.stopped
    assert [(c.io.label, c.concurrency, len(c.runs)) for c in result.cells] == [("8/4", 1, 2)]
    assert result.not_run == ((IoLength(input_len=8, output_len=4), 2),)
    assert result.incomplete == (result.cells[0],)
    delta = result.cells[0].deltas["output_throughput_per_gpu"]
    assert delta is not None and delta.pairs == 1
    assert any("not run: 8/4 c=2" in w and "incomplete: 8/4 c=1" in w for w in result.warnings)
    text = render_text(result)
    assert "SWEEP STOPPED EARLY" in text and "not run" in text
    manifest = collect_manifest(result, gpu={})
    assert manifest["not_run"] == ["8/4 c=2"] and manifest["stopped"] == result.stopped

    # A budget that fits everything runs everything.
    clock.now = 0.0
    full = await run_sweep(
        _config(fake_server.url, max_duration=1000.0),
        tokenizer=word_tokenizer,
        progress=clock,
        monotonic=clock,
    )
    assert full.stopped is None and not full.not_run and not full.incomplete
    assert [len(c.runs) for c in full.cells] == [4, 4]


async def test_budget_skips_a_cell_estimated_too_long(fake_server: Any, word_tokenizer: Any) -> None:
    clock = FakeClock()
    # c=1 runs whole (t = 4 + 2 + 16 = 22). c=2 is estimated from c=1's runs (4 s at 4 waves → 2 waves,
    # 2 s per run, 4 s per pair) plus its warm-up (2 s): 6 s > the 5 s left of 27, so it is not started.
    config = _config(fake_server.url, max_duration=27.0)
    result = await run_sweep(config, tokenizer=word_tokenizer, progress=clock, monotonic=clock)
    assert [(c.concurrency, len(c.runs)) for c in result.cells] == [(1, 4)]
    assert result.stopped is not None and "cell 8/4 c=2" in result.stopped
    assert not result.incomplete and len(result.not_run) == 1


def test_sigterm_keeps_finished_runs(fake_server: Any, tmp_path: Path) -> None:
    out = tmp_path / "res"
    cmd = [
        sys.executable,
        "-m",
        "ccai.cli",
        "bench",
        "serve",
        "--url",
        fake_server.url,
        "--baseline-url",
        fake_server.url,
        "--model",
        "ok",
        "--prompt-ids",
        "--vocab-size",
        "600",
        "--concurrency",
        ",".join(str(c) for c in range(1, 13)),
        "--io",
        "8/20",
        "--repeats",
        "2",
        "--num-prompts",
        "4",
        "--check-prompts",
        "0",
        "--no-plots",
        "-o",
        str(out),
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # one flushed line per finished run
        assert first.startswith("run 8/20 c=1 arm A repeat 1/2:") and "tok/s" in first, first
        while not (out / "runs.csv").is_file():
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, (stdout, stderr)
    assert "interrupted" in stderr and "finished runs are in" in stderr
    # Regression: the interruption was also reported as "error: Error: the sweep was interrupted …".
    assert "Error" not in stderr and stderr.count("finished runs are in") == 1
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert rows and all(float(r["completed"]) == 4 and r["max_concurrency"] == "1" for r in rows[:4])
    assert len(rows) == 1 + stdout.count("\nrun ")  # every announced run is in the CSV
    table = (out / "table.txt").read_text()
    assert "SWEEP STOPPED EARLY: interrupted" in table and "not run" in table
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stopped"].startswith("interrupted")
