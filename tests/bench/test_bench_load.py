"""The load generator against a real server on loopback: timing records, errors, timeouts, refusals."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from ccai.bench import (
    Endpoint,
    Prompt,
    build_prompts,
    compute_metrics,
    probe_endpoint,
    request_body,
    run_load,
)
from ccai.errors import UsageError


def _prompts(n: int, tok: Any, length: int = 12) -> list[Prompt]:
    return build_prompts(count=n, input_len=length, seed=1, tokenizer=tok)


async def test_closed_loop_records_every_token(fake_server: Any, word_tokenizer: Any) -> None:
    ep = Endpoint(url=fake_server.url, model="ok")
    load = await run_load(ep, _prompts(6, word_tokenizer), max_tokens=5, concurrency=2)
    assert len(load.results) == 6
    assert fake_server.max_in_flight == 2  # the semaphore is the concurrency cap
    for r in load.results:
        assert r.success, r.error
        assert r.output_tokens == 5 and r.finish_reason == "length"
        assert r.prompt_len == 12 and r.server_prompt_tokens == 12
        assert len(r.itl) == 4  # 5 non-empty chunks -> 4 gaps
        assert r.ttft >= fake_server.token_delay  # the server sleeps before the first token
        assert r.latency >= r.ttft + sum(r.itl) - 1e-9
        assert r.text == "ab ab ab ab ab"
    m = compute_metrics(load.results, duration=load.duration)
    assert m["completed"] == 6 and m["total_output_tokens"] == 30 and m.output_shortfall == 0
    assert load.client_cpu_s >= 0 and load.duration > 0
    sent = fake_server.requests[0]
    assert sent["stream"] is True and sent["ignore_eos"] is True and sent["temperature"] == 0.0
    assert sent["stream_options"] == {"include_usage": True}


async def test_open_loop_and_chat(fake_server: Any, word_tokenizer: Any) -> None:
    ep = Endpoint(url=fake_server.url + "/v1/", model="ok", api="chat")
    prompts = build_prompts(count=4, input_len=20, seed=2, tokenizer=word_tokenizer, api="chat")
    load = await run_load(ep, prompts, max_tokens=3, concurrency=4, request_rate=200.0, seed=3)
    assert [r.success for r in load.results] == [True] * 4
    assert all(r.server_prompt_tokens == 20 for r in load.results)
    assert "messages" in fake_server.requests[0]


async def test_http_500_is_a_counted_failure(fake_server: Any, word_tokenizer: Any) -> None:
    load = await run_load(
        Endpoint(url=fake_server.url, model="http500"),
        _prompts(3, word_tokenizer),
        max_tokens=4,
        concurrency=2,
    )
    m = compute_metrics(load.results, duration=load.duration)
    assert m.failures == {"http_500": 3} and m["completed"] == 0
    assert "engine exploded" in m.failure_examples["http_500"]


async def test_timeout_does_not_hang(fake_server: Any, word_tokenizer: Any) -> None:
    load = await run_load(
        Endpoint(url=fake_server.url, model="hang"),
        _prompts(2, word_tokenizer),
        max_tokens=4,
        concurrency=2,
        timeout=0.3,
    )
    assert [r.error_kind for r in load.results] == ["timeout", "timeout"]
    assert "0.3 s" in (load.results[0].error or "")


async def test_refused_connection(free_port: int, word_tokenizer: Any) -> None:
    ep = Endpoint(url=f"http://127.0.0.1:{free_port}", model="ok")
    load = await run_load(ep, _prompts(2, word_tokenizer), max_tokens=4, concurrency=2, timeout=5)
    assert {r.error_kind for r in load.results} == {"connect"}
    with pytest.raises(UsageError, match="cannot reach the server"):
        await probe_endpoint(ep, timeout=5)


@pytest.mark.parametrize(("model", "kind"), [("stream-error", "stream_error"), ("bad-json", "protocol")])
async def test_broken_streams(fake_server: Any, word_tokenizer: Any, model: str, kind: str) -> None:
    load = await run_load(
        Endpoint(url=fake_server.url, model=model), _prompts(1, word_tokenizer), max_tokens=4, concurrency=1
    )
    assert load.results[0].error_kind == kind


async def test_shortfall_is_reported(fake_server: Any, word_tokenizer: Any) -> None:
    load = await run_load(
        Endpoint(url=fake_server.url, model="short"), _prompts(2, word_tokenizer), max_tokens=6, concurrency=2
    )
    m = compute_metrics(load.results, duration=load.duration)
    assert m["completed"] == 2 and m.output_shortfall == 2


async def test_probe_learns_output_control_and_engine(fake_server: Any) -> None:
    probe = await probe_endpoint(Endpoint(url=fake_server.url, model="ok"))
    assert probe.output_control == "ignore_eos"
    assert (
        probe.engine.name == "fake-engine"
        and probe.engine.version == "9.9.9"
        and probe.engine.models == ("ok",)
    )
    probe = await probe_endpoint(Endpoint(url=fake_server.url, model="hf"))
    assert probe.output_control == "generation_config"
    with pytest.raises(UsageError, match="rejects model"):
        await probe_endpoint(Endpoint(url=fake_server.url, model="nope"))


def test_request_body_variants() -> None:
    prompt = Prompt(text=None, token_ids=(5, 6), input_len=2)
    body = request_body(Endpoint(url="http://x", model="m", output_control="generation_config"), prompt, 7)
    assert body["prompt"] == [5, 6]
    assert json.loads(body["generation_config"])["min_new_tokens"] == 7
    body = request_body(Endpoint(url="http://x", model="m", output_control="none"), prompt, 7, stream=False)
    assert "ignore_eos" not in body and "generation_config" not in body and "stream" not in body
    assert Endpoint(url="http://h:1/v1/", model="m").path("models") == "http://h:1/v1/models"


async def test_hf_generation_config_fixes_length(fake_server: Any, word_tokenizer: Any) -> None:
    ep = Endpoint(url=fake_server.url, model="hf", output_control="generation_config")
    load = await run_load(ep, _prompts(1, word_tokenizer), max_tokens=9, concurrency=1)
    assert load.results[0].output_tokens == 9


async def test_shared_client_is_reused(fake_server: Any, word_tokenizer: Any) -> None:
    async with httpx.AsyncClient(trust_env=False) as client:
        load = await run_load(
            Endpoint(url=fake_server.url, model="ok"),
            _prompts(2, word_tokenizer),
            max_tokens=2,
            concurrency=1,
            client=client,
        )
        assert not client.is_closed
    assert all(r.success for r in load.results)
