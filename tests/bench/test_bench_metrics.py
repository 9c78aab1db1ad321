"""Metric math against hand-computed cases (sglang/vllm definitions)."""

from __future__ import annotations

import math

import pytest

from ccai.bench._metrics import RequestResult, compute_metrics, summarize


def _ok(
    start: float, latency: float, ttft: float, itl: tuple[float, ...], out: int, prompt: int = 10
) -> RequestResult:
    return RequestResult(
        success=True,
        start=start,
        latency=latency,
        ttft=ttft,
        itl=itl,
        prompt_len=prompt,
        output_tokens=out,
        requested_output_tokens=out,
    )


def test_hand_computed_two_requests() -> None:
    # Request 1: TTFT 0.1 s, 5 tokens, latency 0.5 s -> TPOT (0.5-0.1)/4 = 0.1 s.
    # Request 2: TTFT 0.3 s, 3 tokens, latency 0.9 s -> TPOT (0.9-0.3)/2 = 0.3 s.
    r1 = _ok(0.0, 0.5, 0.1, (0.1, 0.1, 0.1, 0.1), 5)
    r2 = _ok(0.0, 0.9, 0.3, (0.2, 0.4), 3, prompt=20)
    failed = RequestResult(success=False, start=0.0, error_kind="http_500", error="HTTP 500: boom")
    m = compute_metrics([r1, r2, failed], duration=2.0, gpus=2)
    assert m["completed"] == 2 and m["failed"] == 1
    assert m["total_input_tokens"] == 30 and m["total_output_tokens"] == 8
    assert m["request_throughput"] == pytest.approx(1.0)
    assert m["output_throughput"] == pytest.approx(4.0)
    assert m["output_throughput_per_gpu"] == pytest.approx(2.0)
    assert m["input_throughput"] == pytest.approx(15.0)
    assert m["total_throughput"] == pytest.approx(19.0)
    assert m["concurrency"] == pytest.approx(0.7)
    assert m["mean_ttft_ms"] == pytest.approx(200.0)
    assert m["median_ttft_ms"] == pytest.approx(200.0)
    assert m["mean_tpot_ms"] == pytest.approx(200.0)
    assert m["p90_tpot_ms"] == pytest.approx(100.0 + 0.9 * 200.0)
    # ITL pooled over requests: [0.1]*4 + [0.2, 0.4] -> median 0.1, mean 1.0/6.
    assert m["median_itl_ms"] == pytest.approx(100.0)
    assert m["mean_itl_ms"] == pytest.approx(1000.0 / 6)
    assert m["max_itl_ms"] == pytest.approx(400.0)
    assert m["median_e2e_latency_ms"] == pytest.approx(700.0)
    assert m["p99_e2e_latency_ms"] == pytest.approx(500.0 + 0.99 * 400.0)
    assert m.failures == {"http_500": 1}
    assert m.failure_examples == {"http_500": "HTTP 500: boom"}
    assert m.output_shortfall == 0


def test_single_token_requests_have_no_tpot_and_shortfall_is_counted() -> None:
    r = RequestResult(
        success=True, start=0, latency=0.2, ttft=0.2, output_tokens=1, requested_output_tokens=4
    )
    m = compute_metrics([r], duration=1.0)
    assert math.isnan(m["median_tpot_ms"])
    assert math.isnan(m["max_itl_ms"])
    assert m.output_shortfall == 1


def test_no_success() -> None:
    m = compute_metrics([RequestResult(success=False, start=0, error_kind="connect")], duration=0.0)
    assert m["completed"] == 0 and math.isnan(m["output_throughput"])
    assert m.failures == {"connect": 1}


def test_summarize() -> None:
    s = summarize([1.0, 2.0, 3.0, 4.0])
    assert s == {"mean": 2.5, "median": 2.5, "p90": pytest.approx(3.7), "p99": pytest.approx(3.97)}
    assert all(math.isnan(v) for v in summarize([]).values())
