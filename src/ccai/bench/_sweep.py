"""The serving sweep: cells of (input/output length × concurrency), two arms, repeats, Δ% with intervals.

Order of work (docs/serving-benchmark.md):

1. Probe both servers (reachable, model accepted, how to force the output length, engine facts).
2. Correctness pre-check: both arms answer the same greedy prompts one at a time; the texts must
   match (a fast arm that computes garbage must not look good) unless ``allow_mismatch``.
3. For each I/O length, build the prompts once (seeded, exact input length); for each concurrency:
   warm both arms up, then run ``repeats`` pairs with the arm order alternating (AB, BA, AB, …) so
   drift and order effects hit both arms alike; compute each run's metrics and the paired Δ%.

After every timed run the caller's ``on_run`` callback gets a snapshot of everything finished so far
(the CLI rewrites its result files from it, so a sweep killed from outside still leaves every
finished run). With ``max_duration`` the sweep stops starting runs that its estimate says would end
past the budget; the cells it did not reach are listed as not run.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol

import httpx

from ccai._time import utcnow
from ccai.bench._client import (
    Endpoint,
    EngineInfo,
    new_client,
    probe_endpoint,
    run_load,
    send_request,
)
from ccai.bench._ehbp import EhbpArm, GatewayTrust
from ccai.bench._metrics import RequestResult, RunMetrics, compute_metrics
from ccai.bench._prompts import Prompt, Tokenizer, build_prompts
from ccai.bench._stats import Delta, paired_delta
from ccai.errors import UsageError, VerificationError
from ccai.openai_protocol import Api, OutputControl

if TYPE_CHECKING:
    from ccai.client import GatewayAttestation

__all__ = [
    "DELTA_METRICS",
    "ArmRun",
    "Cell",
    "CorrectnessCheck",
    "IoLength",
    "SweepConfig",
    "SweepProgress",
    "SweepResult",
    "estimate_run_seconds",
    "parse_int_list",
    "parse_io",
    "run_sweep",
]

#: Metrics that get a Δ% per cell (sglang field names).
DELTA_METRICS = (
    "output_throughput_per_gpu",
    "median_tpot_ms",
    "median_ttft_ms",
    "median_itl_ms",
    "median_e2e_latency_ms",
    "request_throughput",
)

#: Client CPU share (of one core) above which the run is flagged: an asyncio client is one thread.
CPU_SHARE_WARN = 0.7

CHECK_PROMPTS = (
    "The capital of France is",
    "def fibonacci(n):",
    "Water boils at a temperature of",
    "List three primary colours:",
    "Once upon a time, in a small village,",
    "The square root of 144 is",
    "import numpy as np\n",
    "Translate to French: good morning",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class IoLength:
    """Input and output length of one column group, in tokens."""

    input_len: int
    output_len: int

    @property
    def label(self) -> str:
        """``"1024/1024"`` style label."""
        return f"{self.input_len}/{self.output_len}"


def parse_io(text: str) -> tuple[IoLength, ...]:
    """Parse ``"1024/1024,8192/1024"``.

    Args:
        text: Comma-separated ``input/output`` pairs.

    Returns:
        The lengths, in the given order.

    Raises:
        UsageError: malformed or non-positive.
    """
    out = []
    for part in text.split(","):
        a, sep, b = part.strip().partition("/")
        if not sep or not a.strip().isdigit() or not b.strip().isdigit() or int(a) < 1 or int(b) < 1:
            raise UsageError(
                f"bad input/output length {part.strip()!r}", hint="use e.g. --io 1024/1024,8192/1024"
            )
        out.append(IoLength(input_len=int(a), output_len=int(b)))
    return tuple(out)


def parse_int_list(text: str, *, what: str = "concurrency") -> tuple[int, ...]:
    """Parse ``"4,8,16"`` into positive integers.

    Args:
        text: Comma-separated integers.
        what: Name for the error message.

    Returns:
        The integers, in the given order.

    Raises:
        UsageError: malformed or non-positive.
    """
    try:
        values = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise UsageError(f"bad {what} list {text!r}", hint="use e.g. 4,8,16") from None
    if not values or any(v < 1 for v in values):
        raise UsageError(f"bad {what} list {text!r}: give positive integers")
    return values


def _norm(url: str) -> str:
    return url.rstrip("/").removesuffix("/v1").rstrip("/")


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepConfig:
    """Everything that defines a sweep (recorded in the run manifest).

    Attributes:
        url: Arm A (the candidate, e.g. CC on or through the gateway).
        model: ``model`` field for arm A.
        baseline_url: Arm B (the baseline); ``None`` for a single-arm sweep; equal to ``url`` for A/A.
        baseline_model: ``model`` for arm B (default: ``model``).
        api: ``"completions"`` or ``"chat"``.
        concurrencies: Rows of the table.
        ios: Column groups of the table.
        repeats: Timed runs per arm and cell.
        num_prompts: Requests per timed run; ``None`` = ``prompts_per_concurrency`` × concurrency, at least 8.
        prompts_per_concurrency: Requests per timed run per unit of concurrency when ``num_prompts`` is unset.
        warmup_requests: Untimed short requests per arm and cell; ``None`` = the concurrency.
        gpus: GPUs behind each arm (throughput per GPU divides by it).
        seed: Seed of prompts and arrivals.
        request_rate: Open-loop request rate (requests/s) capped by the concurrency; ``None`` = closed loop.
        timeout: Seconds per request.
        prompt_ids: Send token-id prompts.
        vocab_size: Vocabulary size for id prompts without a tokenizer.
        output_control: ``"auto"`` (probe) or a fixed :data:`~ccai.openai_protocol.OutputControl`.
        check_prompts: Greedy prompts in the correctness pre-check (0 skips it).
        check_tokens: Output tokens per pre-check prompt.
        allow_mismatch: Time the arms even when their greedy outputs differ.
        max_duration: Budget in seconds from the start of the sweep; no run (or pair) is started that
            is estimated to end past it. ``None`` = no budget.
        ehbp: Arm A is a confidential gateway: attest it before anything else and encrypt every
            request to the attested key (:class:`~ccai.bench.EhbpArm`).
        baseline_ehbp: The same for arm B.
    """

    url: str
    model: str
    baseline_url: str | None = None
    baseline_model: str | None = None
    api: Api = "completions"
    concurrencies: tuple[int, ...] = (4, 8, 16, 32, 64, 128, 256)
    ios: tuple[IoLength, ...] = (
        IoLength(input_len=1024, output_len=1024),
        IoLength(input_len=8192, output_len=1024),
    )
    repeats: int = 3
    num_prompts: int | None = None
    prompts_per_concurrency: float = 4.0
    warmup_requests: int | None = None
    gpus: int = 1
    seed: int = 0
    request_rate: float | None = None
    timeout: float = 600.0
    prompt_ids: bool = False
    vocab_size: int | None = None
    output_control: OutputControl | Literal["auto"] = "auto"
    check_prompts: int = 4
    check_tokens: int = 24
    allow_mismatch: bool = False
    max_duration: float | None = None
    ehbp: bool = False
    baseline_ehbp: bool = False

    def arm_ehbp(self, arm: str) -> bool:
        """Whether ``arm`` (``"A"`` or ``"B"``) is driven through EHBP after an attestation."""
        return self.ehbp if arm == "A" else self.baseline_ehbp

    @property
    def mode(self) -> str:
        """``"single"``, ``"A/A"`` (same server twice: the noise floor) or ``"A/B"``."""
        if self.baseline_url is None:
            return "single"
        return "A/A" if _norm(self.baseline_url) == _norm(self.url) else "A/B"

    def prompts_for(self, concurrency: int) -> int:
        """Requests per timed run at ``concurrency``.

        Args:
            concurrency: The cell's concurrency.

        Returns:
            ``num_prompts``, else ``prompts_per_concurrency`` × concurrency (at least 8).
        """
        return self.num_prompts or max(8, math.ceil(self.prompts_per_concurrency * concurrency))


@dataclass(frozen=True, slots=True, kw_only=True)
class ArmRun:
    """One timed run of one arm.

    Attributes:
        arm: ``"A"`` or ``"B"``.
        repeat: Repeat index (runs with the same index form a pair).
        position: Position of this run inside its pair (0 = first).
        metrics: The run's metrics.
        client_cpu_share: Client CPU seconds per wall second during the run.
        loop_lag_p99_ms: 99th percentile event-loop lag during the run.
        mean_server_input_len: Mean ``usage.prompt_tokens`` reported by the server, if reported.
    """

    arm: str
    repeat: int
    position: int
    metrics: RunMetrics
    client_cpu_share: float
    loop_lag_p99_ms: float
    mean_server_input_len: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Cell:
    """One table cell: an I/O length at one concurrency, all runs of both arms.

    Attributes:
        io: Input/output lengths.
        concurrency: In-flight cap.
        num_prompts: Requests per timed run.
        runs: Every timed run.
        deltas: Δ% of arm A against arm B per metric in :data:`DELTA_METRICS` (empty for one arm).
    """

    io: IoLength
    concurrency: int
    num_prompts: int
    runs: tuple[ArmRun, ...]
    deltas: dict[str, Delta | None] = field(default_factory=dict)

    def values(self, arm: str, metric: str) -> list[float]:
        """A metric of one arm, one value per repeat in repeat order.

        Args:
            arm: ``"A"`` or ``"B"``.
            metric: A field name of :class:`RunMetrics`.

        Returns:
            The values.
        """
        runs = sorted((r for r in self.runs if r.arm == arm), key=lambda r: r.repeat)
        return [r.metrics.fields.get(metric, math.nan) for r in runs]


@dataclass(frozen=True, slots=True, kw_only=True)
class CorrectnessCheck:
    """Greedy outputs of both arms for the same prompts.

    Attributes:
        prompts: The prompts.
        outputs_a: Arm A's texts.
        outputs_b: Arm B's texts (empty for a single-arm sweep).
    """

    prompts: tuple[str, ...]
    outputs_a: tuple[str, ...]
    outputs_b: tuple[str, ...]

    @property
    def matches(self) -> int:
        """Prompts whose two outputs are identical."""
        return sum(1 for a, b in zip(self.outputs_a, self.outputs_b, strict=False) if a == b)

    @property
    def ok(self) -> bool:
        """Whether every output matches (vacuously true for one arm)."""
        return not self.outputs_b or self.matches == len(self.prompts)


@dataclass(frozen=True, slots=True, kw_only=True)
class SweepResult:
    """A finished sweep.

    Attributes:
        config: The configuration.
        cells: Every cell, in (I/O, concurrency) order.
        check: The correctness pre-check, if it ran.
        engines: Engine facts per arm.
        output_controls: The output-length control used per arm.
        warnings: Things the reader must know (saturated client, failures, shortfalls).
        started_at: Start time (UTC).
        finished_at: End time (UTC); for a snapshot, the time of the snapshot.
        stopped: Why the sweep ended before its last planned run (the budget, an interruption);
            ``None`` when it ran everything (or, for a snapshot, is still running).
        attestations: Per EHBP arm, the gateway's latest verified attestation.
        reattestations: Per EHBP arm, how often the gateway was attested again (its key changed).
    """

    config: SweepConfig
    cells: tuple[Cell, ...]
    check: CorrectnessCheck | None
    engines: dict[str, EngineInfo]
    output_controls: dict[str, str]
    warnings: tuple[str, ...]
    started_at: datetime
    finished_at: datetime
    stopped: str | None = None
    attestations: dict[str, GatewayAttestation] = field(default_factory=dict)
    reattestations: dict[str, int] = field(default_factory=dict)

    @property
    def not_run(self) -> tuple[tuple[IoLength, int], ...]:
        """Planned cells (I/O length, concurrency) without a single timed run."""
        done = {(c.io, c.concurrency) for c in self.cells if c.runs}
        return tuple(
            (io, c) for io in self.config.ios for c in self.config.concurrencies if (io, c) not in done
        )

    @property
    def incomplete(self) -> tuple[Cell, ...]:
        """Cells with fewer timed runs than planned (``repeats`` per arm)."""
        arms = 1 if self.config.baseline_url is None else 2
        return tuple(c for c in self.cells if 0 < len(c.runs) < arms * self.config.repeats)


def estimate_run_seconds(
    previous: Sequence[tuple[int, int, float]], *, num_prompts: int, concurrency: int
) -> float:
    """Estimated duration of a timed run, from earlier runs of the same I/O length.

    A closed-loop run of N requests at concurrency C takes about ⌈N/C⌉ "waves"; the estimate
    scales the latest earlier run by the ratio of waves (it ignores that a wave gets slower as the
    batch grows, so it errs short).

    Args:
        previous: Earlier runs as (num_prompts, concurrency, seconds), oldest first.
        num_prompts: Requests of the run to estimate.
        concurrency: Its concurrency.

    Returns:
        Seconds; 0.0 when there is nothing to go by.
    """
    if not previous:
        return 0.0
    n, c, seconds = previous[-1]
    return seconds * math.ceil(num_prompts / concurrency) / math.ceil(n / c)


#: Called after every timed run with a snapshot of the sweep so far, the run's cell and the run.
RunCallback = Callable[["SweepResult", "Cell", "ArmRun"], None]


@dataclass(slots=True, kw_only=True)
class _Budget:
    """The time budget of a sweep (monotonic seconds)."""

    deadline: float | None
    clock: Callable[[], float]
    stopped: str | None = None

    def exhausted(self) -> bool:
        return self.stopped is not None

    def allows(self, seconds: float, what: str) -> bool:
        if self.stopped is not None:
            return False
        if self.deadline is None:
            return True
        left = self.deadline - self.clock()
        if left > 0 and seconds <= left:
            return True
        self.stopped = (
            f"time budget: {what} was not started ({max(left, 0.0):.0f} s of the budget left, "
            f"estimated {seconds:.0f} s needed)"
        )
        return False


class SweepProgress(Protocol):
    """Progress sink (the CLI draws rich progress bars; the library stays silent without one)."""

    def start(self, description: str, total: int) -> None:
        """A new phase of ``total`` requests begins."""
        ...

    def advance(self) -> None:
        """One request of the current phase finished."""
        ...


async def _check(
    endpoints: dict[str, Endpoint],
    config: SweepConfig,
    progress: SweepProgress | None,
    clients: dict[str, httpx.AsyncClient],
) -> CorrectnessCheck:
    prompts = [CHECK_PROMPTS[i % len(CHECK_PROMPTS)] for i in range(config.check_prompts)]
    outputs: dict[str, list[str]] = {arm: [] for arm in endpoints}
    if progress:
        progress.start("correctness pre-check", len(prompts) * len(endpoints))
    for text in prompts:
        prompt = Prompt(text=text, token_ids=None, input_len=0)
        for arm, ep in endpoints.items():
            res = await send_request(
                clients[arm], ep, prompt, config.check_tokens, timeout=config.timeout, fixed_length=False
            )
            # An empty answer is an answer (a model may stop at once); anything else is a failure.
            if not res.success and res.error_kind != "empty":
                raise UsageError(f"arm {arm} failed the correctness pre-check: {res.error}")
            outputs[arm].append(res.text)
            if progress:
                progress.advance()
    return CorrectnessCheck(
        prompts=tuple(prompts), outputs_a=tuple(outputs["A"]), outputs_b=tuple(outputs.get("B", ()))
    )


async def run_sweep(
    config: SweepConfig,
    *,
    tokenizer: Tokenizer | None = None,
    progress: SweepProgress | None = None,
    on_run: RunCallback | None = None,
    trust: GatewayTrust | None = None,
    on_attested: Callable[[str, GatewayAttestation], None] | None = None,
    clock: Callable[[], datetime] = utcnow,
    monotonic: Callable[[], float] = time.monotonic,
) -> SweepResult:
    """Run a sweep.

    Args:
        config: What to run.
        tokenizer: The served model's tokenizer (text prompts need it).
        progress: Optional progress sink.
        on_run: Called after every timed run with a snapshot of the sweep so far (finished cells, the
            current cell's runs with Δs over its complete pairs), the current cell and the run.
        trust: How the gateways of EHBP arms (``config.ehbp``, ``config.baseline_ehbp``) are
            verified (default: the pinned vendor roots, no policy, no simulated hardware).
        on_attested: Called with the arm and its verified attestation, before any request of the sweep.
        clock: Wall clock for the start and end stamps.
        monotonic: Clock of the time budget (``config.max_duration``) and the run estimates.

    Returns:
        The result; ``stopped`` says why it ended early (budget), ``not_run`` lists skipped cells.

    Raises:
        UsageError: a server is unreachable, rejects the model, or fails the pre-check requests.
        VerificationError: the arms' greedy outputs differ and ``allow_mismatch`` is False.
        Error: an EHBP arm's gateway failed its attestation (nothing but the nonce was sent to it).
    """
    if config.repeats < 1 or config.gpus < 1:
        raise UsageError("--repeats and --gpus must be positive")
    if config.max_duration is not None and config.max_duration <= 0:
        raise UsageError("--max-duration must be positive")
    started = clock()
    t0 = monotonic()
    budget = _Budget(
        deadline=None if config.max_duration is None else t0 + config.max_duration, clock=monotonic
    )
    arms = {"A": Endpoint(url=config.url, model=config.model, api=config.api)}
    if config.baseline_url is not None:
        arms["B"] = Endpoint(
            url=config.baseline_url, model=config.baseline_model or config.model, api=config.api
        )
    # EHBP arms: attest each gateway before anything but a nonce reaches it (a refusal raises here).
    gateways: dict[str, EhbpArm] = {}
    for arm, ep in arms.items():
        if config.arm_ehbp(arm):
            gateways[arm] = await EhbpArm.attest(ep.url, trust or GatewayTrust())
            if on_attested is not None:
                on_attested(arm, gateways[arm].attestation)
    max_c = max(config.concurrencies)

    def client_for(arm: str) -> httpx.AsyncClient:
        if arm in gateways:
            return gateways[arm].client(connections=max_c, timeout=config.timeout)
        return new_client(connections=max_c, timeout=config.timeout)

    clients = {arm: client_for(arm) for arm in arms}
    try:
        return await _sweep(
            config,
            arms=arms,
            clients=clients,
            gateways=gateways,
            tokenizer=tokenizer,
            progress=progress,
            on_run=on_run,
            started=started,
            budget=budget,
            clock=clock,
        )
    finally:
        for http in clients.values():
            await http.aclose()


async def _sweep(
    config: SweepConfig,
    *,
    arms: dict[str, Endpoint],
    clients: dict[str, httpx.AsyncClient],
    gateways: dict[str, EhbpArm],
    tokenizer: Tokenizer | None,
    progress: SweepProgress | None,
    on_run: RunCallback | None,
    started: datetime,
    budget: _Budget,
    clock: Callable[[], datetime],
) -> SweepResult:
    engines: dict[str, EngineInfo] = {}
    for arm, ep in list(arms.items()):
        probe = await probe_endpoint(ep, timeout=config.timeout, client=clients[arm])
        engines[arm] = probe.engine
        control = probe.output_control if config.output_control == "auto" else config.output_control
        arms[arm] = replace(ep, output_control=control)
    warnings: list[str] = []
    for arm, ep in arms.items():
        if ep.output_control == "none":
            warnings.append(
                f"arm {arm}: the server accepts neither ignore_eos nor min_new_tokens; "
                "output shortfalls are reported"
            )

    check = None
    if config.check_prompts > 0:
        check = await _check(arms, config, progress, clients)
        if not check.ok and not config.allow_mismatch:
            raise VerificationError(
                f"the arms' greedy outputs differ ({check.matches}/{len(check.prompts)} prompts match)",
                step="correctness pre-check",
                expected=check.outputs_b[0][:80] if check.outputs_b else None,
                actual=check.outputs_a[0][:80],
                hint="both arms must serve the same model; --allow-mismatch times them anyway",
            )
        if not check.ok:
            warnings.append(f"greedy outputs differ: {check.matches}/{len(check.prompts)} prompts match")

    cells: list[Cell] = []

    def snapshot(current: Cell | None) -> SweepResult:
        return SweepResult(
            config=config,
            cells=(*cells, current) if current is not None else tuple(cells),
            check=check,
            engines=engines,
            output_controls={arm: ep.output_control for arm, ep in arms.items()},
            warnings=tuple(warnings),
            started_at=started,
            finished_at=clock(),
            stopped=budget.stopped,
            attestations={arm: gw.attestation for arm, gw in gateways.items()},
            reattestations={arm: gw.reattestations for arm, gw in gateways.items()},
        )

    def run_done(cell: Cell, run: ArmRun) -> None:
        if on_run is not None:
            on_run(snapshot(cell), cell, run)

    for io_index, io in enumerate(config.ios):
        if budget.exhausted():
            break
        count = max(config.prompts_for(c) for c in config.concurrencies)
        prompts = await asyncio.to_thread(
            build_prompts,
            count=count,
            input_len=io.input_len,
            seed=config.seed + io_index,
            api=config.api,
            tokenizer=tokenizer,
            token_ids=config.prompt_ids,
            vocab_size=config.vocab_size,
        )
        # ("warm" | "run", requests, concurrency, seconds) of this I/O length, for the budget's estimates
        history: list[tuple[str, int, int, float]] = []
        for c in config.concurrencies:
            cell = await _cell(
                config,
                arms=arms,
                clients=clients,
                io=io,
                concurrency=c,
                prompts=prompts,
                progress=progress,
                warnings=warnings,
                budget=budget,
                history=history,
                run_done=run_done,
            )
            if cell.runs:
                cells.append(cell)
            if budget.exhausted():
                break
    result = snapshot(None)
    if result.stopped is not None:
        skipped = ", ".join(f"{io.label} c={c}" for io, c in result.not_run)
        partial = ", ".join(f"{c.io.label} c={c.concurrency}" for c in result.incomplete)
        note = f"sweep stopped early — {result.stopped}"
        note += f"; not run: {skipped}" if skipped else ""
        note += f"; incomplete: {partial}" if partial else ""
        result = replace(result, warnings=(*result.warnings, note))
    return result


def _cell_deltas(cell: Cell, arms: Sequence[str]) -> dict[str, Delta | None]:
    """Δ% per metric over the repeats in which both arms ran (complete pairs only)."""
    if "B" not in arms:
        return {}
    repeats = {r.repeat for r in cell.runs if r.arm == "A"} & {r.repeat for r in cell.runs if r.arm == "B"}
    paired = replace(cell, runs=tuple(r for r in cell.runs if r.repeat in repeats))
    return {m: paired_delta(paired.values("A", m), paired.values("B", m)) for m in DELTA_METRICS}


async def _cell(
    config: SweepConfig,
    *,
    arms: dict[str, Endpoint],
    clients: dict[str, httpx.AsyncClient],
    io: IoLength,
    concurrency: int,
    prompts: Sequence[Prompt],
    progress: SweepProgress | None,
    warnings: list[str],
    budget: _Budget,
    history: list[tuple[str, int, int, float]],
    run_done: Callable[[Cell, ArmRun], None],
) -> Cell:
    n = config.prompts_for(concurrency)
    cell_prompts = list(prompts[:n])
    where = f"{io.label} c={concurrency}"
    names = list(arms)
    cell = Cell(io=io, concurrency=concurrency, num_prompts=n, runs=())

    def on_done(_: RequestResult) -> None:
        if progress:
            progress.advance()

    warm = config.warmup_requests if config.warmup_requests is not None else concurrency
    runs_seen = [h[1:] for h in history if h[0] == "run"]
    warms_seen = [h[1:] for h in history if h[0] == "warm"]
    pair_estimate = len(names) * estimate_run_seconds(runs_seen, num_prompts=n, concurrency=concurrency)
    warm_estimate = (
        estimate_run_seconds(warms_seen, num_prompts=warm, concurrency=concurrency) if warm else 0.0
    )
    if not budget.allows(warm_estimate + pair_estimate, f"cell {where}"):
        return cell
    if warm > 0:
        began = budget.clock()
        for arm, ep in arms.items():
            if progress:
                progress.start(f"{where} warm-up {arm}", warm)
            await run_load(
                ep,
                [cell_prompts[i % len(cell_prompts)] for i in range(warm)],
                max_tokens=min(16, io.output_len),
                concurrency=concurrency,
                timeout=config.timeout,
                client=clients[arm],
                on_done=on_done,
            )
        history.append(("warm", warm, concurrency, budget.clock() - began))
    runs: list[ArmRun] = []
    for repeat in range(config.repeats):
        if repeat > 0:
            own = [h[1:] for h in history[len(history) - len(runs) :]]
            pair_estimate = len(names) * estimate_run_seconds(own, num_prompts=n, concurrency=concurrency)
            if not budget.allows(pair_estimate, f"{where} pair {repeat + 1}/{config.repeats}"):
                break
        order = names if repeat % 2 == 0 else names[::-1]
        for position, arm in enumerate(order):
            if progress:
                progress.start(f"{where} run {repeat + 1}/{config.repeats} arm {arm}", n)
            http = clients[arm]
            began = budget.clock()
            load = await run_load(
                arms[arm],
                cell_prompts,
                max_tokens=io.output_len,
                concurrency=concurrency,
                request_rate=config.request_rate,
                seed=config.seed + repeat,
                timeout=config.timeout,
                client=http,
                on_done=on_done,
            )
            metrics = compute_metrics(load.results, duration=load.duration, gpus=config.gpus)
            server_in = [r.server_prompt_tokens for r in load.results if r.server_prompt_tokens is not None]
            run = ArmRun(
                arm=arm,
                repeat=repeat,
                position=position,
                metrics=metrics,
                client_cpu_share=load.client_cpu_share,
                loop_lag_p99_ms=load.loop_lag_p99_ms,
                mean_server_input_len=sum(server_in) / len(server_in) if server_in else None,
            )
            runs.append(run)
            history.append(("run", n, concurrency, budget.clock() - began))
            tag = f"{where} arm {arm} run {repeat + 1}"
            if metrics.failures:
                detail = "; ".join(
                    f"{k}×{v} ({metrics.failure_examples.get(k, '')})" for k, v in metrics.failures.items()
                )
                warnings.append(f"{tag}: {int(metrics['failed'])} failed requests: {detail}")
            if metrics.output_shortfall:
                warnings.append(
                    f"{tag}: {metrics.output_shortfall} requests returned fewer than {io.output_len} tokens"
                )
            if load.client_cpu_share > CPU_SHARE_WARN:
                warnings.append(
                    f"{tag}: the client used {100 * load.client_cpu_share:.0f} % of a core "
                    f"(event-loop lag p99 {load.loop_lag_p99_ms:.1f} ms) — the client may be the bottleneck"
                )
            if server_in and abs(sum(server_in) / len(server_in) - io.input_len) >= 1:
                warnings.append(
                    f"{tag}: the server counted {sum(server_in) / len(server_in):.1f} input tokens "
                    "on average, "
                    f"not {io.input_len} (tokenizer differs from the served model's?)"
                )
            cell = replace(cell, runs=tuple(runs))
            cell = replace(cell, deltas=_cell_deltas(cell, names))
            run_done(cell, run)
    return cell
