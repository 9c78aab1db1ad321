"""The load generator: asyncio + httpx against an OpenAI-compatible server, streaming SSE.

Each request is timed on ``time.perf_counter()``: the start just before the POST, and every SSE
event stamped with the time of the socket read that completed it (events that arrive in the same
read share a timestamp — a buffering proxy therefore shows up as near-zero inter-token gaps).
Arrivals are closed-loop (a semaphore holds ``concurrency`` requests in flight, sglang's
``--max-concurrency``) or open-loop (gamma inter-arrival times with shape ``burstiness``; 1.0 is
Poisson) from a seeded generator. The client measures its own CPU time and event-loop lag over the
run so that a saturated client is reported instead of being mistaken for a slow server.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from ccai.bench._metrics import RequestResult
from ccai.bench._prompts import Prompt
from ccai.errors import EhbpError, Error, UsageError
from ccai.openai_protocol import (
    STREAM_DONE,
    Api,
    OutputControl,
    SseParser,
    api_path,
    chat_completion_request,
    choice_text,
    completion_request,
    read_usage,
    v1_url,
)

__all__ = [
    "Endpoint",
    "EngineInfo",
    "LoadResult",
    "ProbeResult",
    "probe_endpoint",
    "request_body",
    "run_load",
    "send_request",
]

_HEADERS = {"accept": "text/event-stream", "accept-encoding": "identity"}
_LAG_TICK = 0.01


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """Where and how to send requests.

    Attributes:
        url: Base URL of the server (``http://host:port`` or ``…/v1``).
        model: The ``model`` field of each request.
        api: ``"completions"`` or ``"chat"``.
        output_control: How to force the output length (see :data:`ccai.openai_protocol.OutputControl`).
    """

    url: str
    model: str
    api: Api = "completions"
    output_control: OutputControl = "ignore_eos"

    def path(self, what: str) -> str:
        """Absolute URL of an API path such as ``"completions"`` or ``"models"``.

        Args:
            what: The path below ``/v1``.

        Returns:
            The URL.
        """
        return v1_url(self.url, what)


def request_body(
    endpoint: Endpoint,
    prompt: Prompt,
    max_tokens: int,
    *,
    stream: bool = True,
    fixed_length: bool = True,
    seed: int | None = None,
) -> dict[str, Any]:
    """The JSON body of one greedy request.

    Args:
        endpoint: Target and API flavour.
        prompt: The input.
        max_tokens: Output tokens to ask for.
        stream: Ask for an SSE stream.
        fixed_length: Force exactly ``max_tokens`` output tokens with the endpoint's output control.
        seed: Request seed (greedy decoding does not need it; sent when given).

    Returns:
        The body.
    """
    control: OutputControl = endpoint.output_control if fixed_length else "none"
    if endpoint.api == "chat":
        return chat_completion_request(
            model=endpoint.model,
            messages=[{"role": "user", "content": prompt.text or ""}],
            max_tokens=max_tokens,
            temperature=0.0,
            stream=stream,
            seed=seed,
            output_control=control,
        )
    return completion_request(
        model=endpoint.model,
        prompt=prompt.token_ids if prompt.token_ids is not None else (prompt.text or ""),
        max_tokens=max_tokens,
        temperature=0.0,
        stream=stream,
        seed=seed,
        output_control=control,
    )


def _failure(kind: str, message: str, start: float, prompt: Prompt, max_tokens: int) -> RequestResult:
    return RequestResult(
        success=False,
        start=start,
        latency=time.perf_counter() - start,
        prompt_len=prompt.input_len,
        requested_output_tokens=max_tokens,
        error_kind=kind,
        error=message[:300],
    )


async def send_request(
    client: httpx.AsyncClient,
    endpoint: Endpoint,
    prompt: Prompt,
    max_tokens: int,
    *,
    timeout: float,
    fixed_length: bool = True,
) -> RequestResult:
    """Send one streaming request and time it. Never raises for server or network trouble.

    Args:
        client: The shared HTTP client.
        endpoint: Target and API flavour.
        prompt: The input.
        max_tokens: Output tokens to ask for.
        timeout: Seconds for the whole request, first byte to last.
        fixed_length: Force the output length (see :func:`request_body`).

    Returns:
        The request's record; failures carry ``error_kind`` and ``error``.
    """
    body = request_body(endpoint, prompt, max_tokens, fixed_length=fixed_length)
    url = endpoint.path(api_path(endpoint.api))
    start = time.perf_counter()
    first: float | None = None
    last = 0.0
    itl: list[float] = []
    parts: list[str] = []
    chunks = 0
    usage_out: int | None = None
    usage_in: int | None = None
    finish: str | None = None
    try:
        async with asyncio.timeout(timeout):
            async with client.stream("POST", url, json=body, headers=_HEADERS) as resp:
                if resp.status_code >= 400:
                    raw = await resp.aread()
                    return _failure(
                        f"http_{resp.status_code}",
                        f"HTTP {resp.status_code}: {raw.decode('utf-8', 'replace').strip()}",
                        start,
                        prompt,
                        max_tokens,
                    )
                parser = SseParser()
                async for block in resp.aiter_raw():
                    now = time.perf_counter()
                    for event in parser.feed(block):
                        if event.data.strip() == STREAM_DONE:
                            continue
                        try:
                            # Not load_json: a server may send -Infinity logprobs, which it refuses.
                            # A 100 000-deep event is a protocol failure, not a crash of the run.
                            obj = json.loads(event.data)
                        except (ValueError, RecursionError):
                            obj = None
                        if not isinstance(obj, dict):
                            why = f"event is not a JSON object: {event.data[:80]!r}"
                            return _failure("protocol", why, start, prompt, max_tokens)
                        if "error" in obj:
                            why = f"server error: {obj['error']}"
                            return _failure("stream_error", why, start, prompt, max_tokens)
                        text, reason = choice_text(obj, endpoint.api)
                        finish = reason or finish
                        usage = read_usage(obj)
                        if usage is not None:
                            if usage.completion_tokens is not None:
                                usage_out = usage.completion_tokens
                            if usage.prompt_tokens is not None:
                                usage_in = usage.prompt_tokens
                        if text:
                            if first is None:
                                first = now
                            else:
                                itl.append(now - last)
                            last = now
                            chunks += 1
                            parts.append(text)
                parser.close()
    except TimeoutError:
        return _failure("timeout", f"no complete response within {timeout:g} s", start, prompt, max_tokens)
    except httpx.ConnectError as exc:
        return _failure("connect", f"cannot connect to {url}: {exc}", start, prompt, max_tokens)
    except httpx.TimeoutException as exc:
        return _failure("timeout", f"{type(exc).__name__}: {exc}", start, prompt, max_tokens)
    except httpx.HTTPError as exc:
        return _failure("transport", f"{type(exc).__name__}: {exc}", start, prompt, max_tokens)
    except EhbpError as exc:
        return _failure("ehbp", f"{type(exc).__name__}: {exc.message}", start, prompt, max_tokens)
    except Error as exc:  # a re-attestation after the gateway's key changed was refused
        return _failure("attestation", f"{type(exc).__name__}: {exc.message}", start, prompt, max_tokens)
    end = time.perf_counter()
    if first is None:
        return _failure("empty", "the response carried no generated text", start, prompt, max_tokens)
    output = int(usage_out) if isinstance(usage_out, int) and usage_out > 0 else chunks
    return RequestResult(
        success=True,
        start=start,
        latency=end - start,
        ttft=first - start,
        itl=tuple(itl),
        prompt_len=prompt.input_len,
        output_tokens=output,
        requested_output_tokens=max_tokens,
        server_prompt_tokens=int(usage_in) if isinstance(usage_in, int) else None,
        text="".join(parts),
        finish_reason=finish,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadResult:
    """One timed run.

    Attributes:
        results: Every request's record, in completion order.
        duration: Wall time from the first send to the last completion, seconds.
        client_cpu_s: CPU seconds this process used during the run (``time.process_time``).
        loop_lag_p99_ms: 99th percentile of event-loop lag (how late a 10 ms timer fired).
        loop_lag_max_ms: Largest event-loop lag.
    """

    results: tuple[RequestResult, ...]
    duration: float
    client_cpu_s: float
    loop_lag_p99_ms: float
    loop_lag_max_ms: float

    @property
    def client_cpu_share(self) -> float:
        """Client CPU time over wall time: 1.0 means one core fully busy (the client is the bottleneck)."""
        return self.client_cpu_s / self.duration if self.duration > 0 else 0.0


async def _lag_monitor(lags: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        await asyncio.sleep(_LAG_TICK)
        lags.append(max(0.0, time.perf_counter() - t0 - _LAG_TICK))


def new_client(
    *,
    connections: int,
    timeout: float,
    wrap: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] | None = None,
) -> httpx.AsyncClient:
    """An HTTP client for benchmarking: no proxies from the environment, enough pooled connections.

    Args:
        connections: Maximum simultaneous connections.
        timeout: Per-operation timeout in seconds (connect is capped at 10 s).
        wrap: Wraps the connection-pooling transport in another one (the EHBP transport of an
            attested gateway arm); the wrapper's work then falls inside each request's timing.

    Returns:
        The client (close it with ``aclose``).
    """
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    pool = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    return httpx.AsyncClient(
        transport=wrap(pool) if wrap is not None else pool,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        trust_env=False,
    )


async def run_load(
    endpoint: Endpoint,
    prompts: Sequence[Prompt],
    *,
    max_tokens: int,
    concurrency: int | None = None,
    request_rate: float | None = None,
    burstiness: float = 1.0,
    seed: int = 0,
    timeout: float = 600.0,
    fixed_length: bool = True,
    client: httpx.AsyncClient | None = None,
    on_done: Callable[[RequestResult], None] | None = None,
) -> LoadResult:
    """Send every prompt once and time the run.

    Args:
        endpoint: Target and API flavour.
        prompts: One request per prompt.
        max_tokens: Output tokens per request.
        concurrency: In-flight cap (closed loop when ``request_rate`` is ``None``).
        request_rate: Requests per second for an open loop; ``None`` sends as fast as the cap allows.
        burstiness: Gamma shape of inter-arrival times (1.0 = Poisson).
        seed: Seed of the arrival process.
        timeout: Seconds per request.
        fixed_length: Force the output length.
        client: A client to reuse (keeps connections warm); a new one is made otherwise.
        on_done: Called after each request (progress bars).

    Returns:
        The records and the client's own resource use.

    Raises:
        UsageError: neither ``concurrency`` nor ``request_rate`` is given, or they are not positive.
    """
    if concurrency is None and request_rate is None:
        raise UsageError("give a concurrency or a request rate")
    if (concurrency is not None and concurrency < 1) or (request_rate is not None and request_rate <= 0):
        raise UsageError("concurrency and request rate must be positive")
    own = client is None
    http = client or new_client(connections=concurrency or 1024, timeout=timeout)
    sem = asyncio.Semaphore(concurrency) if concurrency else None
    rng = random.Random(seed)  # noqa: S311 - a seeded arrival process, not a secret
    results: list[RequestResult] = []

    async def one(prompt: Prompt) -> None:
        if sem is not None:
            async with sem:
                res = await send_request(
                    http, endpoint, prompt, max_tokens, timeout=timeout, fixed_length=fixed_length
                )
        else:
            res = await send_request(
                http, endpoint, prompt, max_tokens, timeout=timeout, fixed_length=fixed_length
            )
        results.append(res)
        if on_done is not None:
            on_done(res)

    lags: list[float] = []
    stop = asyncio.Event()
    monitor = asyncio.create_task(_lag_monitor(lags, stop))
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    try:
        tasks = []
        for i, prompt in enumerate(prompts):
            if request_rate is not None and i > 0:
                await asyncio.sleep(rng.gammavariate(burstiness, 1.0 / (request_rate * burstiness)))
            tasks.append(asyncio.create_task(one(prompt)))
        await asyncio.gather(*tasks)
    finally:
        duration = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        stop.set()
        await monitor
        if own:
            await http.aclose()
    lags_ms = sorted(x * 1000.0 for x in lags) or [0.0]
    p99 = lags_ms[min(len(lags_ms) - 1, int(0.99 * len(lags_ms)))]
    return LoadResult(
        results=tuple(results),
        duration=duration,
        client_cpu_s=cpu,
        loop_lag_p99_ms=p99,
        loop_lag_max_ms=lags_ms[-1],
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineInfo:
    """What the server says about itself (best effort; every field may be ``None``).

    Attributes:
        name: Engine name (``vllm``, ``sglang``, ``transformers``, …).
        version: Engine version string.
        server_header: The HTTP ``server`` response header.
        models: Model ids listed by ``/v1/models``.
    """

    name: str | None
    version: str | None
    server_header: str | None
    models: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeResult:
    """The outcome of :func:`probe_endpoint`.

    Attributes:
        output_control: The output-length control this server accepts.
        engine: What the server says about itself.
    """

    output_control: OutputControl
    engine: EngineInfo


async def _engine_info(http: httpx.AsyncClient, endpoint: Endpoint) -> EngineInfo:
    name = version = server = None
    models: list[str] = []
    resp = await http.get(endpoint.path("models"))
    server = resp.headers.get("server")
    if resp.status_code == 200:
        try:
            data = resp.json().get("data") or []
        except (ValueError, AttributeError, RecursionError):
            data = []
        for item in data:
            if isinstance(item, dict):
                models.append(str(item.get("id")))
                name = name or item.get("owned_by")
    root = endpoint.url.rstrip("/").removesuffix("/v1")
    for path, key in (("/version", "version"), ("/get_server_info", "version"), ("/server_info", "version")):
        try:
            r = await http.get(root + path)
        except httpx.HTTPError:
            continue
        if r.status_code == 200:
            try:
                obj = r.json()
            except (ValueError, RecursionError):
                continue
            if isinstance(obj, dict) and obj.get(key):
                version = str(obj[key])
                if path != "/version":
                    name = name or "sglang"
                break
    return EngineInfo(name=name, version=version, server_header=server, models=tuple(models))


async def probe_endpoint(
    endpoint: Endpoint, *, timeout: float = 120.0, client: httpx.AsyncClient | None = None
) -> ProbeResult:
    """Check that the server answers, learn how to force the output length, and read engine facts.

    Tries ``ignore_eos`` (vLLM, SGLang), then a transformers ``generation_config`` with
    ``min_new_tokens``; a server that rejects both gets plain ``max_tokens`` and the run reports
    any shortfall.

    Args:
        endpoint: Target (its ``output_control`` is ignored).
        timeout: Seconds per probe request.
        client: The client to probe with (an EHBP arm's encrypting client); a new one otherwise.

    Returns:
        The output control to use and the engine facts.

    Raises:
        UsageError: the server cannot be reached, rejects the model name, or fails every probe.
    """
    prompt = Prompt(text="Hello", token_ids=None, input_len=1)
    if client is not None:
        return await _probe(client, endpoint, prompt)
    async with new_client(connections=2, timeout=timeout) as http:
        return await _probe(http, endpoint, prompt)


async def _probe(http: httpx.AsyncClient, endpoint: Endpoint, prompt: Prompt) -> ProbeResult:
    from dataclasses import replace

    try:
        engine = await _engine_info(http, endpoint)
    except httpx.ConnectError as exc:
        raise UsageError(
            f"cannot reach the server at {endpoint.url}: {exc}",
            hint="start one with `ccai dev engine`, or check --url / --baseline-url",
        ) from None
    except httpx.HTTPError as exc:
        why = f"{type(exc).__name__}: {exc}"
        raise UsageError(f"the server at {endpoint.url} does not answer: {why}") from None
    url = endpoint.path(api_path(endpoint.api))
    last = ""
    controls: tuple[OutputControl, ...] = ("ignore_eos", "generation_config", "none")
    for control in controls:
        candidate = replace(endpoint, output_control=control)
        body = request_body(candidate, prompt, 2, stream=False)
        try:
            resp = await http.post(url, json=body)
        except httpx.HTTPError as exc:
            raise UsageError(f"the server at {endpoint.url} failed a probe request: {exc}") from None
        if resp.status_code == 200:
            return ProbeResult(output_control=candidate.output_control, engine=engine)
        last = f"HTTP {resp.status_code}: {resp.text.strip()[:300]}"
        low = resp.text.lower()
        if "pinned" in low or ("model" in low and "not found" in low):
            raise UsageError(
                f"the server at {endpoint.url} rejects model {endpoint.model!r}: {last}",
                hint="pass --model exactly as the server serves it (transformers serve: the model path)",
            )
        if resp.status_code >= 500:
            break
    raise UsageError(f"the server at {endpoint.url} rejects every probe request: {last}")
