"""Per-request records and the run metrics of sglang's ``bench_serving`` / ``vllm bench serve``.

Definitions (serving-performance.md §5.1), all on the client's monotonic clock:

* **TTFT**: request start → first chunk that carries non-empty text.
* **ITL**: gaps between successive non-empty chunks (a chunk may carry several tokens; chunks
  read from the socket in one read share a timestamp, so their gap is 0).
* **TPOT** per request: ``(latency − TTFT) / (output_tokens − 1)``, only when ``output_tokens > 1``.
* **E2E latency**: request start → end of the response.
* **duration**: wall time of the timed phase; throughputs are totals divided by it;
  ``concurrency`` = Σ latency / duration.

Percentiles are numpy's linear interpolation, as both tools use.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["RequestResult", "RunMetrics", "compute_metrics", "summarize"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestResult:
    """What one request did, as the client saw it.

    Attributes:
        success: Whether a complete response with at least one token arrived.
        start: Send time (``time.perf_counter()`` seconds).
        latency: End-to-end latency in seconds (0 on failure before any byte).
        ttft: Time to the first non-empty chunk, seconds (0 if none).
        itl: Gaps between successive non-empty chunks, seconds.
        prompt_len: Input tokens the client intended to send.
        output_tokens: Generated tokens: the server's ``usage.completion_tokens`` when it reports
            it, else the number of non-empty chunks.
        requested_output_tokens: ``max_tokens`` asked for.
        server_prompt_tokens: ``usage.prompt_tokens`` as reported by the server, if any.
        text: The generated text (kept for the correctness pre-check).
        finish_reason: The last ``finish_reason`` the server sent.
        error_kind: Failure class: ``"http_<status>"``, ``"timeout"``, ``"connect"``, ``"stream_error"``,
            ``"protocol"``, ``"empty"``; ``None`` on success.
        error: A one-line human description of the failure.
    """

    success: bool
    start: float
    latency: float = 0.0
    ttft: float = 0.0
    itl: tuple[float, ...] = ()
    prompt_len: int = 0
    output_tokens: int = 0
    requested_output_tokens: int = 0
    server_prompt_tokens: int | None = None
    text: str = ""
    finish_reason: str | None = None
    error_kind: str | None = None
    error: str | None = None


def _stats(name: str, values_s: Sequence[float], out: dict[str, float]) -> None:
    arr = np.asarray(values_s, dtype=float) * 1000.0
    if arr.size == 0:
        for key in ("mean", "median", "std", "p90", "p95", "p99"):
            out[f"{key}_{name}_ms"] = float("nan")
        return
    out[f"mean_{name}_ms"] = float(arr.mean())
    out[f"median_{name}_ms"] = float(np.median(arr))
    out[f"std_{name}_ms"] = float(arr.std())
    out[f"p90_{name}_ms"] = float(np.percentile(arr, 90))
    out[f"p95_{name}_ms"] = float(np.percentile(arr, 95))
    out[f"p99_{name}_ms"] = float(np.percentile(arr, 99))


@dataclass(frozen=True, slots=True, kw_only=True)
class RunMetrics:
    """The metrics of one timed run, with sglang's field names in :attr:`fields`.

    Attributes:
        fields: ``completed``, ``failed``, ``duration``, ``total_input_tokens``,
            ``total_output_tokens``, ``request_throughput``, ``input_throughput``,
            ``output_throughput``, ``total_throughput``, ``output_throughput_per_gpu``,
            ``concurrency`` and ``mean/median/std/p90/p95/p99`` of ``ttft``, ``tpot``, ``itl``,
            ``e2e_latency`` (``*_ms``), plus ``max_itl_ms``.
        failures: Failure counts by kind.
        failure_examples: One message per failure kind.
        output_shortfall: Successful requests that returned fewer tokens than requested.
    """

    fields: dict[str, float]
    failures: dict[str, int] = field(default_factory=dict)
    failure_examples: dict[str, str] = field(default_factory=dict)
    output_shortfall: int = 0

    def __getitem__(self, key: str) -> float:
        return self.fields[key]


def compute_metrics(results: Sequence[RequestResult], *, duration: float, gpus: int = 1) -> RunMetrics:
    """Aggregate request records into run metrics.

    Args:
        results: Every request of the timed phase, failed ones included.
        duration: Wall time of the timed phase in seconds.
        gpus: GPUs serving the model; ``output_throughput_per_gpu`` divides by it.

    Returns:
        The run's metrics.
    """
    ok = [r for r in results if r.success]
    fields: dict[str, float] = {}
    fields["completed"] = float(len(ok))
    fields["failed"] = float(len(results) - len(ok))
    fields["duration"] = float(duration)
    total_in = sum(r.prompt_len for r in ok)
    total_out = sum(r.output_tokens for r in ok)
    fields["total_input_tokens"] = float(total_in)
    fields["total_output_tokens"] = float(total_out)
    safe = duration if duration > 0 else float("nan")
    fields["request_throughput"] = len(ok) / safe
    fields["input_throughput"] = total_in / safe
    fields["output_throughput"] = total_out / safe
    fields["total_throughput"] = (total_in + total_out) / safe
    fields["output_throughput_per_gpu"] = fields["output_throughput"] / max(gpus, 1)
    fields["concurrency"] = sum(r.latency for r in ok) / safe
    _stats("ttft", [r.ttft for r in ok], fields)
    tpots = [(r.latency - r.ttft) / (r.output_tokens - 1) for r in ok if r.output_tokens > 1]
    _stats("tpot", tpots, fields)
    itls = [gap for r in ok for gap in r.itl]
    _stats("itl", itls, fields)
    fields["max_itl_ms"] = max(itls) * 1000.0 if itls else float("nan")
    _stats("e2e_latency", [r.latency for r in ok], fields)
    kinds = Counter(r.error_kind or "unknown" for r in results if not r.success)
    examples: dict[str, str] = {}
    for r in results:
        if not r.success:
            examples.setdefault(r.error_kind or "unknown", r.error or "")
    shortfall = sum(1 for r in ok if r.output_tokens < r.requested_output_tokens)
    return RunMetrics(
        fields=fields, failures=dict(kinds), failure_examples=examples, output_shortfall=shortfall
    )


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Mean, median, p90 and p99 of a list of numbers (NaN for an empty list).

    Args:
        values: The numbers.

    Returns:
        A dict with ``mean``, ``median``, ``p90``, ``p99``.
    """
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return {k: float("nan") for k in ("mean", "median", "p90", "p99")}
    return {
        "mean": float(arr.mean()),
        "median": float(np.median(arr)),
        "p90": float(np.percentile(arr, 90)),
        "p99": float(np.percentile(arr, 99)),
    }
