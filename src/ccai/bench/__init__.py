"""bench stage of ccai: the serving sweep between two arms (docs/serving-benchmark.md).

An asyncio + httpx load generator for OpenAI-compatible servers (streaming SSE, closed or open
loop, exact-length prompts, fixed output length), the metrics of sglang's ``bench_serving`` and
``vllm bench serve``, sweeps over concurrency and input/output lengths with interleaved arms and
paired Δ% confidence intervals, NVIDIA-layout tables, JSON/CSV/PNG output and a run manifest; plus
``ccai dev engine`` (transformers serve on the embedded or a random model) and a deliberately
buffering proxy that shows what buffering does to TTFT and ITL.
"""

from ccai.bench._client import (
    Endpoint,
    EngineInfo,
    LoadResult,
    OutputControl,
    ProbeResult,
    probe_endpoint,
    request_body,
    run_load,
    send_request,
)
from ccai.bench._manifest import collect_manifest, gpu_state, openssl_versions
from ccai.bench._metrics import RequestResult, RunMetrics, compute_metrics, summarize
from ccai.bench._prompts import Api, Prompt, Tokenizer, build_prompts, load_tokenizer
from ccai.bench._report import delta_table, format_delta, render_text, value_table, write_results
from ccai.bench._sse import SseEvent, SseParser
from ccai.bench._stats import Delta, mean_interval, paired_delta, t_quantile
from ccai.bench._sweep import (
    DELTA_METRICS,
    ArmRun,
    Cell,
    CorrectnessCheck,
    IoLength,
    SweepConfig,
    SweepProgress,
    SweepResult,
    estimate_run_seconds,
    parse_int_list,
    parse_io,
    run_sweep,
)

__all__ = [
    "DELTA_METRICS",
    "Api",
    "ArmRun",
    "Cell",
    "CorrectnessCheck",
    "Delta",
    "Endpoint",
    "EngineInfo",
    "IoLength",
    "LoadResult",
    "OutputControl",
    "ProbeResult",
    "Prompt",
    "RequestResult",
    "RunMetrics",
    "SseEvent",
    "SseParser",
    "SweepConfig",
    "SweepProgress",
    "SweepResult",
    "Tokenizer",
    "build_prompts",
    "collect_manifest",
    "compute_metrics",
    "delta_table",
    "estimate_run_seconds",
    "format_delta",
    "gpu_state",
    "load_tokenizer",
    "mean_interval",
    "openssl_versions",
    "paired_delta",
    "parse_int_list",
    "parse_io",
    "probe_endpoint",
    "render_text",
    "request_body",
    "run_load",
    "run_sweep",
    "send_request",
    "summarize",
    "t_quantile",
    "value_table",
    "write_results",
]
