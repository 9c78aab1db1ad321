"""End to end: `transformers serve` on the embedded SmolLM2 model, a small A/A sweep over a real socket."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ccai.bench import IoLength, SweepConfig, load_tokenizer, render_text, run_sweep

pytestmark = [pytest.mark.slow, pytest.mark.torch]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """transformers serve on the embedded model, on a free loopback port."""
    import socket

    pytest.importorskip("transformers", reason="needs the [torch] extra: pip install 'ccai[torch]'")
    from ccai._embedded_model import embedded_model_dir
    from ccai.openai_protocol import engine_command, wait_healthy

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = engine_command(
        embedded_model_dir(), port=port, dtype="float32", hf_cache=tmp_path_factory.mktemp("hf-hub")
    )
    proc = subprocess.Popen(cmd.argv, env={**os.environ, **cmd.env})
    try:
        wait_healthy(cmd.url, process=proc, timeout=180)
        yield cmd.url, cmd.model
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


async def test_aa_sweep_against_transformers_serve(engine: tuple[str, str], tmp_path: Path) -> None:
    url, model = engine
    config = SweepConfig(
        url=url,
        model=model,
        baseline_url=url,
        concurrencies=(1, 2),
        ios=(IoLength(input_len=32, output_len=6),),
        repeats=2,
        num_prompts=2,
        warmup_requests=1,
        check_prompts=2,
        check_tokens=8,
        timeout=120,
    )
    result = await run_sweep(config, tokenizer=load_tokenizer(model))
    # transformers serve rejects ignore_eos; the probe falls back to generation_config min_new_tokens.
    assert result.output_controls == {"A": "generation_config", "B": "generation_config"}
    assert result.check is not None and result.check.ok
    assert "Paris" in result.check.outputs_a[0]
    for cell in result.cells:
        for run in cell.runs:
            assert run.metrics["completed"] == 2 and run.metrics["failed"] == 0
            assert run.metrics.output_shortfall == 0
            assert run.mean_server_input_len == 32  # exact input length, as the server counts it
        assert cell.deltas["output_throughput_per_gpu"] is not None
    assert "32/6" in render_text(result)
