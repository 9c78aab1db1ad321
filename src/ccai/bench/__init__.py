"""bench stage of ccai: the serving sweep between two arms (docs/serving-benchmark.md).

An asyncio + httpx load generator for OpenAI-compatible servers (streaming SSE, closed or open
loop, exact-length prompts, fixed output length), the metrics of sglang's ``bench_serving`` and
``vllm bench serve``, sweeps over concurrency and input/output lengths with interleaved arms and
paired Δ% confidence intervals (an arm may be a confidential gateway, attested first and driven
through encrypted bodies: :class:`EhbpArm`), NVIDIA-layout tables, JSON/CSV/PNG output and a run
manifest; plus
the sealed-model load benchmark (:func:`run_load_benchmark`, ``ccai bench load``) and
a deliberately buffering proxy (:func:`serve_proxy`, ``ccai dev buffering-proxy``) that shows what
a buffering gateway does to TTFT and ITL. The protocol pieces it shares with the gateway and the
client (SSE, request bodies, chunk readers, the development engine) live in
:mod:`ccai.openai_protocol`.
"""

from ccai.bench._client import (
    Endpoint,
    EngineInfo,
    LoadResult,
    ProbeResult,
    probe_endpoint,
    request_body,
    run_load,
    send_request,
)
from ccai.bench._ehbp import EhbpArm, GatewayTrust
from ccai.bench._load import LoadMeasurement, LoadReport, run_load_benchmark, write_synthetic_model
from ccai.bench._manifest import collect_manifest, gpu_state, openssl_versions
from ccai.bench._metrics import RequestResult, RunMetrics, compute_metrics, summarize
from ccai.bench._prompts import Prompt, Tokenizer, build_prompts, load_tokenizer
from ccai.bench._proxy import ProxyMode, build_proxy_app, serve_proxy
from ccai.bench._report import cell_record, delta_table, format_delta, render_text, value_table, write_results
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
    "ArmRun",
    "Cell",
    "CorrectnessCheck",
    "Delta",
    "EhbpArm",
    "Endpoint",
    "EngineInfo",
    "GatewayTrust",
    "IoLength",
    "LoadMeasurement",
    "LoadReport",
    "LoadResult",
    "ProbeResult",
    "Prompt",
    "ProxyMode",
    "RequestResult",
    "RunMetrics",
    "SweepConfig",
    "SweepProgress",
    "SweepResult",
    "Tokenizer",
    "build_prompts",
    "build_proxy_app",
    "cell_record",
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
    "run_load_benchmark",
    "run_sweep",
    "send_request",
    "serve_proxy",
    "summarize",
    "t_quantile",
    "value_table",
    "write_results",
    "write_synthetic_model",
]
