"""``ccai bench …``: benchmarks; ``serve`` is the serving sweep between two arms (see docs)."""

from __future__ import annotations

import asyncio
import enum
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ccai.cli._options import AllowSimulatedOpt, gateway_trust
from ccai.cli._output import console, err_console, print_attestation, print_json
from ccai.errors import UsageError

if TYPE_CHECKING:
    from ccai.bench import ArmRun, Cell, SweepResult
    from ccai.client import GatewayAttestation

__all__ = ["app", "serve"]

app = typer.Typer(
    name="bench",
    help="Benchmarks: the serving sweep (Δ% between two arms) and the sealed-model load speed.",
    no_args_is_help=True,
)


class ApiChoice(enum.StrEnum):
    """Which OpenAI endpoint to load."""

    COMPLETIONS = "completions"
    CHAT = "chat"


class OutputControlChoice(enum.StrEnum):
    """How to force the output length."""

    AUTO = "auto"
    IGNORE_EOS = "ignore_eos"
    GENERATION_CONFIG = "generation_config"
    NONE = "none"


class _Bars:
    """rich progress bars behind the library's :class:`~ccai.bench.SweepProgress` protocol."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task = progress.add_task("starting", total=1)

    def start(self, description: str, total: int) -> None:
        self._progress.reset(self._task, total=total, description=description)

    def advance(self) -> None:
        self._progress.advance(self._task)


@app.command("serve")
def serve(
    *,
    url: Annotated[str, typer.Option("--url", help="Arm A: the server under test (base URL).")],
    model: Annotated[
        str, typer.Option("--model", help="The request 'model' field (transformers serve: its path).")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Results directory.")],
    baseline_url: Annotated[
        str | None, typer.Option("--baseline-url", help="Arm B: the baseline. Same as --url for an A/A run.")
    ] = None,
    baseline_model: Annotated[str | None, typer.Option("--baseline-model", help="'model' for arm B.")] = None,
    tokenizer: Annotated[
        str | None,
        typer.Option("--tokenizer", help="Local tokenizer directory (default: --model if a directory)."),
    ] = None,
    concurrency: Annotated[
        str, typer.Option("--concurrency", help="Rows: in-flight caps.")
    ] = "4,8,16,32,64,128,256",
    io_lengths: Annotated[
        str, typer.Option("--io", help="Column groups: input/output tokens.")
    ] = "1024/1024,8192/1024",
    repeats: Annotated[int, typer.Option("--repeats", help="Timed runs per arm and cell.")] = 3,
    num_prompts: Annotated[
        int | None,
        typer.Option("--num-prompts", help="Requests per run (default: per-concurrency × concurrency, ≥ 8)."),
    ] = None,
    prompts_per_concurrency: Annotated[
        float, typer.Option("--prompts-per-concurrency", help="Requests per run per unit of concurrency.")
    ] = 4.0,
    warmup_requests: Annotated[
        int | None,
        typer.Option("--warmup-requests", help="Untimed requests per arm and cell (default: concurrency)."),
    ] = None,
    gpus: Annotated[int, typer.Option("--gpus", help="GPUs per arm, for throughput per GPU.")] = 1,
    api: Annotated[ApiChoice, typer.Option("--api", help="Endpoint to load.")] = ApiChoice.COMPLETIONS,
    request_rate: Annotated[
        float | None, typer.Option("--request-rate", help="Open loop: Poisson arrivals at this rate (req/s).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of prompts and arrivals.")] = 0,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per request.")] = 600.0,
    prompt_ids: Annotated[
        bool, typer.Option("--prompt-ids", help="Send token-id prompts (vLLM, SGLang).")
    ] = False,
    vocab_size: Annotated[
        int | None, typer.Option("--vocab-size", help="For --prompt-ids without a tokenizer.")
    ] = None,
    output_control: Annotated[
        OutputControlChoice, typer.Option("--output-control", help="Force the output length (auto = probe).")
    ] = OutputControlChoice.AUTO,
    check_prompts: Annotated[
        int, typer.Option("--check-prompts", help="Greedy correctness prompts (0 = skip).")
    ] = 4,
    allow_mismatch: Annotated[
        bool, typer.Option("--allow-mismatch", help="Time the arms even if their greedy outputs differ.")
    ] = False,
    max_duration: Annotated[
        float | None,
        typer.Option(
            "--max-duration",
            help="Time budget (s): start no run estimated to end past it; unreached cells show 'not run'.",
        ),
    ] = None,
    plots: Annotated[
        bool, typer.Option("--plots/--no-plots", help="Write PNG plots (needs matplotlib).")
    ] = True,
    ehbp: Annotated[
        bool,
        typer.Option(
            "--ehbp",
            help="Arm A is a confidential gateway: attest it, then encrypt every request to its key.",
        ),
    ] = False,
    baseline_ehbp: Annotated[
        bool, typer.Option("--baseline-ehbp", help="The same for arm B (--baseline-url).")
    ] = False,
    policy: Annotated[
        Path | None,
        typer.Option("--policy", help="With --ehbp: policy JSON the gateway's evidence must satisfy."),
    ] = None,
    allow_simulated: AllowSimulatedOpt = False,
    home: Annotated[
        Path | None,
        typer.Option("--home", help="Virtual hardware state for --allow-simulated (default $CCAI_HOME)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Sweep concurrency × input/output length against one or two OpenAI-compatible servers.

    Prints the NVIDIA-layout Δ% table (throughput/GPU, median TPOT, median TTFT, 95 % CIs) and
    writes JSON, CSV, plots and a manifest to the results directory. The files are rewritten after
    every timed run, and one progress line per run goes to stdout (stderr with --json), so a sweep
    stopped by SIGTERM or SIGINT still leaves every finished run (and exits non-zero).

    --ehbp / --baseline-ehbp drive an arm through the verifying client: the gateway is attested
    first (the summary is printed; a refusal exits 1 before any prompt is sent), then every request
    is encrypted to the attested key, inside the measured time.
    """
    from ccai.bench import (
        GatewayTrust,
        SweepConfig,
        cell_record,
        collect_manifest,
        delta_table,
        gpu_state,
        load_tokenizer,
        parse_int_list,
        parse_io,
        run_sweep,
        value_table,
        write_results,
    )

    config = SweepConfig(
        url=url,
        model=model,
        baseline_url=baseline_url,
        baseline_model=baseline_model,
        api=api.value,
        concurrencies=parse_int_list(concurrency),
        ios=parse_io(io_lengths),
        repeats=repeats,
        num_prompts=num_prompts,
        prompts_per_concurrency=prompts_per_concurrency,
        warmup_requests=warmup_requests,
        gpus=gpus,
        seed=seed,
        request_rate=request_rate,
        timeout=timeout,
        prompt_ids=prompt_ids,
        vocab_size=vocab_size,
        output_control=output_control.value,
        check_prompts=check_prompts,
        allow_mismatch=allow_mismatch,
        max_duration=max_duration,
        ehbp=ehbp,
        baseline_ehbp=baseline_ehbp,
    )
    if baseline_ehbp and baseline_url is None:
        raise UsageError("--baseline-ehbp needs --baseline-url")
    if (policy is not None or allow_simulated or home is not None) and not (ehbp or baseline_ehbp):
        raise UsageError(
            "--policy, --allow-simulated and --home verify a gateway: give --ehbp or --baseline-ehbp"
        )
    trust = None
    if ehbp or baseline_ehbp:
        anchors, rules = gateway_trust(policy, allow_simulated=allow_simulated, home=home)
        trust = GatewayTrust(anchors=anchors, policy=rules, allow_simulated=allow_simulated)
    tok_path = tokenizer or (model if Path(model).is_dir() else None)
    tok = load_tokenizer(tok_path) if tok_path else None
    gpu = gpu_state()
    latest: list[SweepResult] = []
    line_out = sys.stderr if as_json else sys.stdout

    def on_run(snapshot: SweepResult, cell: Cell, run: ArmRun) -> None:
        latest[:] = [snapshot]
        m = run.metrics
        print(
            f"run {cell.io.label} c={cell.concurrency} arm {run.arm} "
            f"repeat {run.repeat + 1}/{config.repeats}: {m['duration']:.1f} s, "
            f"{m['request_throughput']:.2f} req/s, {m['output_throughput']:.1f} tok/s, "
            f"median TPOT {m['median_tpot_ms']:.1f} ms, median TTFT {m['median_ttft_ms']:.0f} ms, "
            f"failed {int(m['failed'])}",
            file=line_out,
            flush=True,
        )
        write_results(
            snapshot, output, manifest=collect_manifest(snapshot, argv=sys.argv, gpu=gpu), plots=False
        )

    def on_attested(arm: str, attestation: GatewayAttestation) -> None:
        if not as_json:
            err_console.print(f"[bold]arm {arm}[/]: gateway attestation verified", highlight=False)
            print_attestation(attestation.summary())
            err_console.print(f"[bold green]verified[/]: arm {arm} encrypts to the attested key")

    async def main() -> SweepResult:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        handled = []
        if task is not None:
            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    loop.add_signal_handler(sig, task.cancel)
                    handled.append(sig)
                except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
                    pass
        try:
            return await run_sweep(
                config,
                tokenizer=tok,
                progress=_Bars(progress),
                on_run=on_run,
                trust=trust,
                on_attested=on_attested,
            )
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=as_json,
    ) as progress:
        try:
            result = asyncio.run(main())
        except (asyncio.CancelledError, KeyboardInterrupt):
            _interrupted(latest, output, argv=sys.argv, gpu=gpu)
    manifest = collect_manifest(result, argv=sys.argv, gpu=gpu)
    written, note = write_results(result, output, manifest=manifest, plots=plots)
    if as_json:
        print_json(
            {
                "mode": config.mode,
                "output": str(output),
                "correctness_check": manifest["correctness_check"],
                "attestations": {
                    arm: doc["attestation"] for arm, doc in manifest["arms"].items() if doc["ehbp"]
                },
                "cells": [cell_record(result, cell) for cell in result.cells],
                "warnings": list(result.warnings) + ([note] if note else []),
            }
        )
        return
    if result.check is not None and result.check.outputs_b:
        ok = result.check.ok
        console.print(
            f"correctness pre-check: greedy outputs {'[green]match' if ok else '[bold red]DIFFER'}[/] "
            f"({result.check.matches}/{len(result.check.prompts)} prompts)"
        )
    if config.baseline_url is not None:
        console.print(delta_table(result))
    console.print(value_table(result))
    for warning in [*result.warnings, *([note] if note else [])]:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}")
    console.print(f"{len(written)} files written to {escape(str(output))}")


def _interrupted(
    latest: list[SweepResult], output: Path, *, argv: list[str], gpu: dict[str, Any]
) -> NoReturn:
    """Write what an interrupted sweep finished, say so in one line, and exit 1 (docs/serving-benchmark.md).

    Not an :class:`~ccai.errors.Error`: nothing failed, the sweep was stopped, and the line already
    says what was kept (an error would repeat it, as ``error: Error: the sweep was interrupted …``).
    """
    from dataclasses import replace

    from ccai.bench import collect_manifest, write_results

    if latest:
        done = replace(latest[0], stopped="interrupted (SIGTERM/SIGINT) during the run after this snapshot")
        write_results(done, output, manifest=collect_manifest(done, argv=argv, gpu=gpu), plots=False)
        runs = sum(len(c.runs) for c in done.cells)
        kept = f"{runs} finished runs are in {output}"
    else:
        kept = "no timed run had finished; nothing was written"
    print(
        f"ccai bench serve: interrupted — {kept} (--max-duration stops a sweep cleanly within a budget)",
        file=sys.stderr,
        flush=True,
    )
    raise typer.Exit(1)


from ccai.cli import bench_load  # noqa: E402

app.command("load")(bench_load.load)
