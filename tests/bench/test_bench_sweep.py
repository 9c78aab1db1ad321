"""Sweeps, reports, the CLI and the buffering proxy, against the real fake server on loopback."""

from __future__ import annotations

import asyncio
import csv
import importlib.util
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ccai.bench import (
    Endpoint,
    IoLength,
    SweepConfig,
    build_proxy_app,
    collect_manifest,
    parse_int_list,
    parse_io,
    render_text,
    run_load,
    run_sweep,
    write_results,
)
from ccai.cli.app import app
from ccai.errors import UsageError, VerificationError


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
        "gpus": 2,
    }
    base.update(kw)
    return SweepConfig(**base)


def test_parsers() -> None:
    assert parse_io("1024/1024, 8192/128") == (
        IoLength(input_len=1024, output_len=1024),
        IoLength(input_len=8192, output_len=128),
    )
    assert parse_int_list("4,8,16") == (4, 8, 16)
    for bad in ("1024", "a/b", "0/5"):
        with pytest.raises(UsageError):
            parse_io(bad)
    for bad in ("", "4,x", "0"):
        with pytest.raises(UsageError):
            parse_int_list(bad)


async def test_aa_sweep_and_outputs(fake_server: Any, word_tokenizer: Any, tmp_path: Path) -> None:
    config = _config(fake_server.url)
    assert config.mode == "A/A"
    result = await run_sweep(config, tokenizer=word_tokenizer)
    assert result.check is not None and result.check.ok and result.check.matches == 2
    assert [(c.io.label, c.concurrency) for c in result.cells] == [("8/4", 1), ("8/4", 2)]
    cell = result.cells[1]
    assert len(cell.runs) == 4
    # Pairs alternate their order: repeat 0 runs A first, repeat 1 runs B first.
    assert [(r.repeat, r.arm, r.position) for r in cell.runs] == [
        (0, "A", 0),
        (0, "B", 1),
        (1, "B", 0),
        (1, "A", 1),
    ]
    delta = cell.deltas["output_throughput_per_gpu"]
    assert delta is not None and delta.pairs == 2 and delta.low is not None
    for run in cell.runs:
        assert run.metrics["completed"] == 4 and run.metrics["total_output_tokens"] == 16
        assert run.mean_server_input_len == 8
    assert not [w for w in result.warnings if "failed" in w or "fewer" in w]
    # Probe + check (2) per arm, warm-up 1 per arm and cell, timed 4 × 2 repeats × 2 arms × 2 cells.
    assert len(fake_server.requests) == 2 + 2 * 2 + 2 * 2 + 4 * 2 * 2 * 2

    manifest = collect_manifest(result, argv=["ccai", "bench", "serve"])
    assert manifest["mode"] == "A/A" and manifest["arms"]["A"]["engine"]["version"] == "9.9.9"
    assert manifest["gpu"]["available"] in (True, False)
    assert manifest["openssl"]["python_ssl"].startswith("OpenSSL")
    written, note = write_results(result, tmp_path, manifest=manifest, plots=True)
    names = {p.relative_to(tmp_path).as_posix() for p in written}
    assert {
        "manifest.json",
        "table.txt",
        "runs.jsonl",
        "runs.csv",
        "deltas.csv",
        "cells/8x4_c1.json",
    } <= names, (names, note)
    if importlib.util.find_spec("matplotlib") is not None:
        assert "plots/8x4.png" in names, (names, note)
    else:  # the [plot] extra is missing: the tables are written and the note says why there is no plot
        assert note is not None and "ccai[plot]" in note and not any(n.startswith("plots/") for n in names)
    record = json.loads((tmp_path / "cells" / "8x4_c2.json").read_text())
    assert record["max_concurrency"] == 2 and record["random_input_len"] == 8
    assert record["runs"][0]["output_throughput_per_gpu"] == pytest.approx(
        record["runs"][0]["output_throughput"] / 2
    )
    assert set(record["delta_pct"]) >= {"output_throughput_per_gpu", "median_tpot_ms", "median_ttft_ms"}
    rows = list(csv.DictReader((tmp_path / "deltas.csv").open()))
    assert len(rows) == 12 and rows[0]["metric"] == "output_throughput_per_gpu"
    lines = (tmp_path / "runs.jsonl").read_text().splitlines()
    assert len(lines) == 8 and "median_ttft_ms" in json.loads(lines[0])
    text = render_text(result)
    assert "8/4" in text and "Tput/GPU Δ" in text and "greedy outputs match (2/2)" in text
    assert "mean" in text


async def test_mismatching_arms_are_refused(fake_server: Any, word_tokenizer: Any) -> None:
    config = _config(fake_server.url, baseline_model="other")
    assert config.mode == "A/A"
    with pytest.raises(VerificationError, match="greedy outputs differ"):
        await run_sweep(config, tokenizer=word_tokenizer)
    result = await run_sweep(
        _config(fake_server.url, baseline_model="other", allow_mismatch=True, concurrencies=(1,), repeats=1),
        tokenizer=word_tokenizer,
    )
    assert result.check is not None and not result.check.ok
    assert any("greedy outputs differ" in w for w in result.warnings)


async def test_single_arm_sweep_with_failures_warns(fake_server: Any, word_tokenizer: Any) -> None:
    config = _config(
        fake_server.url, model="short", baseline_url=None, concurrencies=(2,), repeats=1, check_prompts=0
    )
    assert config.mode == "single"
    result = await run_sweep(config, tokenizer=word_tokenizer)
    assert result.cells[0].deltas == {}
    assert any("fewer than 4 tokens" in w for w in result.warnings)
    assert "Tput/GPU Δ" not in render_text(result)


async def test_refused_arm_is_a_usage_error(fake_server: Any, word_tokenizer: Any, free_port: int) -> None:
    config = _config(fake_server.url, baseline_url=f"http://127.0.0.1:{free_port}")
    assert config.mode == "A/B"
    with pytest.raises(UsageError, match="cannot reach"):
        await run_sweep(config, tokenizer=word_tokenizer)


def test_cli_json(
    fake_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, word_tokenizer: Any
) -> None:
    monkeypatch.setattr("ccai.bench.load_tokenizer", lambda _path: word_tokenizer)
    out = tmp_path / "res"
    args = [
        "bench",
        "serve",
        "--url",
        fake_server.url,
        "--baseline-url",
        fake_server.url,
        "--model",
        "ok",
        "--tokenizer",
        "word",
        "--concurrency",
        "1,2",
        "--io",
        "8/3",
        "--repeats",
        "2",
        "--num-prompts",
        "3",
        "--check-prompts",
        "1",
        "--no-plots",
        "-o",
        str(out),
        "--json",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)  # progress lines go to stderr with --json
    assert summary["mode"] == "A/A" and len(summary["cells"]) == 2
    assert summary["correctness_check"]["ok"] is True
    assert (out / "manifest.json").is_file() and not (out / "plots").exists()
    res = CliRunner().invoke(app, [*args[:8], "--model", "nope", *args[10:]])
    assert res.exit_code != 0 and isinstance(res.exception, UsageError)


@pytest.fixture
def buffering_proxy(fake_server: Any) -> Iterator[str]:
    """The buffering proxy in front of the fake server, under uvicorn on loopback."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(build_proxy_app(fake_server.url, mode="buffer"), log_level="warning")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.mark.extra("service")
async def test_buffering_proxy_collapses_the_stream(
    fake_server: Any, buffering_proxy: str, word_tokenizer: Any
) -> None:
    from ccai.bench import build_prompts

    prompts = build_prompts(count=2, input_len=8, seed=0, tokenizer=word_tokenizer)
    tokens = 10
    load = await run_load(
        Endpoint(url=buffering_proxy, model="ok"), prompts, max_tokens=tokens, concurrency=1
    )
    for r in load.results:
        assert r.success and r.output_tokens == tokens
        # Nothing arrives before the upstream finished generating every token (the server sleeps per token).
        assert r.ttft >= tokens * fake_server.token_delay
        # The whole stream came in one burst: every token shares the first token's read.
        assert r.itl == (0.0,) * (tokens - 1)
    await asyncio.sleep(0)
