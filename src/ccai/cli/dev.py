"""``ccai dev …``: development servers and tools for working without CC hardware."""

from __future__ import annotations

import enum
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from ccai.errors import UsageError

__all__ = ["app"]

app = typer.Typer(
    name="dev",
    help="Development tools: local servers for the virtual CC GPU, a local engine, a buffering proxy.",
    no_args_is_help=True,
)


def _report_ready(info: dict[str, Any], *, label: str, settings_file: Path | None, json_out: bool) -> None:
    """Print (and optionally save) what a client needs to reach a ready engine."""
    import json

    from ccai.cli._output import console, print_json, write_output

    if settings_file is not None:
        write_output(settings_file, (json.dumps(info, indent=2) + "\n").encode())
    if json_out:
        print_json(info)
        return
    url, model = info["url"], info["model"]
    console.print(f"engine ready after {info['ready_after_s']:.1f} s: {label}, pid {info['pid']}")
    console.print(f"  URL    {url}")
    console.print(f"  model  {model}   (requests must send exactly this 'model')")
    console.print(f"  settings {json.dumps(info['settings'])}")
    if info["random_weights"]:
        console.print(
            "  random weights: same shapes and compute as trained weights — valid for speed, meaningless text"
        )
    console.print(f"  bench  ccai bench serve --url {url} --model {model} -o results/")


class EngineChoice(enum.StrEnum):
    """Which engine ``ccai dev engine`` runs."""

    TRANSFORMERS_SERVE = "transformers-serve"
    INPROCESS = "inprocess"


def _serve_inprocess(
    path: Path,
    *,
    host: str,
    port: int,
    device: str,
    dtype: str,
    cpu_threads: int,
    random_weights: bool,
    settings_file: Path | None,
    json_out: bool,
) -> None:
    """Load ``path`` with transformers in this process and serve it with ccai's in-process engine."""
    import time

    import torch
    import uvicorn
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ccai._net import listen_socket
    from ccai.openai_protocol import TransformersEngine, create_engine_app

    if not (path / "config.json").is_file():
        raise UsageError(f"not a model directory (no config.json): {path}")
    sock = listen_socket(host, port)  # a busy port is a usage error before the model loads
    start = time.monotonic()
    if device == "cpu" and cpu_threads:
        # Torch's intra-op threads spin while the event loop needs the same cores (see engine_command).
        torch.set_num_threads(cpu_threads)
    model: Any = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    model.to(device)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    name = str(path.resolve())
    engine_ = TransformersEngine(model, tokenizer, model_name=name)
    sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    took = time.monotonic() - start
    settings = {
        "engine": "ccai in-process (transformers generate, one request at a time)",
        "device": device,
        "dtype": str(model.dtype).removeprefix("torch."),
        "torch_threads": torch.get_num_threads(),
    }
    info = {
        "url": url,
        "model": name,
        "pid": os.getpid(),
        "random_weights": random_weights,
        "ready_after_s": round(took, 1),
        "settings": settings,
    }
    _report_ready(info, label="ccai in-process engine", settings_file=settings_file, json_out=json_out)
    try:
        config = uvicorn.Config(create_engine_app(engine_), log_level="warning", access_log=False)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


@app.command("collateral-server")
def collateral_server(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8089,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the service URLs as JSON before serving.")
    ] = False,
    tee: Annotated[
        str | None,
        typer.Option(
            "--tee",
            help="Also serve the virtual VM's CPU collateral: tdx (Intel-PCS-like) or snp (AMD-KDS-like).",
        ),
    ] = None,
) -> None:
    """Serve the virtual GPU's RIMs (NVIDIA's RIM service API) and an OCSP responder for its test PKI.

    Point verifiers at it with --rim-service-url http://HOST:PORT --ocsp-url http://HOST:PORT/ocsp
    (and, with --tee, --pcs-url / --kds-url http://HOST:PORT).
    """
    import uvicorn

    from ccai._net import listen_socket
    from ccai.cli._output import console, print_json
    from ccai.virtual import (
        VirtualGpuBackend,
        create_dev_collateral_app,
        open_virtual_vm,
        settings_for_virtual_gpu,
    )

    if tee is not None and tee not in ("tdx", "snp"):
        raise UsageError("--tee takes tdx or snp", actual=tee)
    cpu = None
    if tee is not None:
        cpu, backend = open_virtual_vm(tee=tee)
    else:
        backend = VirtualGpuBackend.open()
    app_ = create_dev_collateral_app(settings_for_virtual_gpu(backend, tee=cpu))
    # Bound before the URLs are printed: a busy port is a usage error (exit 2), not a server crash.
    sock = listen_socket(host, port)
    base = f"http://{host}:{port}"
    urls: dict[str, object] = {
        "rim_service": base,
        "ocsp_url": f"{base}/ocsp",
        "rim_ids": list(backend.rim_ids(0)),
    }
    if tee is not None:
        urls["pcs_url" if tee == "tdx" else "kds_url"] = base
    if json_out:
        print_json(urls)
    else:
        console.print(f"RIM service  {base}/v1/rim/<id>   ({', '.join(backend.rim_ids(0))})")
        console.print(f"OCSP         {base}/ocsp  (test PKI; simulated, never trusted by default)")
        if tee is not None:
            console.print(f"{'Intel PCS' if tee == 'tdx' else 'AMD KDS':<12} {base}  (virtual {tee} guest)")
    try:
        uvicorn.Server(uvicorn.Config(app_, log_level="warning")).run(sockets=[sock])
    finally:
        sock.close()


@app.command("engine")
def engine(
    model_dir: Annotated[
        str | None,
        typer.Argument(help="Local model directory (default: the embedded SmolLM2-135M-Instruct)."),
    ] = None,
    *,
    engine_kind: Annotated[
        EngineChoice,
        typer.Option(
            "--engine",
            help="transformers-serve (a `transformers serve` process) or inprocess (ccai's in-process "
            "engine, the one the confidential gateway runs).",
        ),
    ] = EngineChoice.TRANSFORMERS_SERVE,
    random_spec: Annotated[
        str | None,
        typer.Option("--random", help="Serve a randomly initialised ARCH:SIZE model instead, e.g. llama:1b."),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:0, …")] = "cpu",
    dtype: Annotated[str, typer.Option("--dtype", help="auto, float32, bfloat16, …")] = "auto",
    continuous_batching: Annotated[
        bool,
        typer.Option("--continuous-batching/--no-continuous-batching", help="Paged continuous batching."),
    ] = True,
    attn_implementation: Annotated[
        str,
        typer.Option(
            "--attn-implementation",
            help="auto (flash attention on CUDA when installed, else sdpa), default, sdpa, paged|eager, …",
        ),
    ] = "auto",
    cuda_graphs: Annotated[
        bool | None,
        typer.Option(
            "--cuda-graphs/--no-cuda-graphs", help="Force CUDA graphs (default: transformers decides)."
        ),
    ] = None,
    max_batch_tokens: Annotated[
        int | None, typer.Option("--max-batch-tokens", help="Tokens per batching step (default 8192).")
    ] = None,
    cpu_threads: Annotated[
        int, typer.Option("--cpu-threads", help="OMP_NUM_THREADS of a CPU engine (0 = torch default).")
    ] = 1,
    settings_file: Annotated[
        Path | None, typer.Option("--settings-file", help="Also write the engine settings as JSON here.")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print URL, model and settings as JSON once healthy.")
    ] = False,
) -> None:
    """Serve a local model with the OpenAI API until interrupted; prints URL and model name.

    The default engine is `transformers serve` in a child process; --engine inprocess loads the model
    in this process and serves it with ccai's in-process engine (the batching options do not apply).
    The engine's own log goes to stderr: stdout carries only what ccai prints (with --json, only the
    JSON document).
    """
    import subprocess

    from ccai._embedded_model import ccai_cache, embedded_model_dir
    from ccai._net import listen_socket
    from ccai.cli._output import err_console
    from ccai.openai_protocol import engine_command, random_model_dir, wait_healthy

    if model_dir and random_spec:
        raise UsageError("give a model directory or --random, not both")
    # A busy port is a usage error here, before minutes of model loading end in the engine's exit.
    listen_socket(host, port).close()
    if random_spec:
        err_console.print(
            f"creating random {random_spec} weights (cached under {ccai_cache()}/random-models) …"
        )
        path = random_model_dir(
            random_spec, cache=ccai_cache(), dtype="bfloat16" if dtype == "auto" else dtype
        )
    else:
        path = Path(model_dir) if model_dir else embedded_model_dir()
    if engine_kind == EngineChoice.INPROCESS:
        _serve_inprocess(
            path,
            host=host,
            port=port,
            device=device,
            dtype=dtype,
            cpu_threads=cpu_threads,
            random_weights=bool(random_spec),
            settings_file=settings_file,
            json_out=json_out,
        )
        return
    cmd = engine_command(
        path,
        host=host,
        port=port,
        device=device,
        dtype=dtype,
        hf_cache=ccai_cache() / "hf-hub",
        continuous_batching=continuous_batching,
        attn_implementation=None if attn_implementation == "default" else attn_implementation,
        cuda_graphs=cuda_graphs,
        max_batch_tokens=max_batch_tokens,
        cpu_threads=cpu_threads or None,
    )
    import signal
    import sys

    # SIGTERM (from a script's trap) must still stop the server: turn it into SystemExit so `finally` runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # The engine logs to stdout; send that to stderr (fd 2) so stdout stays ccai's (--json: parseable).
    proc = subprocess.Popen(cmd.argv, env={**os.environ, **cmd.env}, stdout=2)  # noqa: S603 - fixed argv, no shell
    try:
        took = wait_healthy(cmd.url, process=proc)
        info = {
            "url": cmd.url,
            "model": cmd.model,
            "pid": proc.pid,
            "random_weights": bool(random_spec),
            "ready_after_s": round(took, 1),
            "settings": cmd.settings,
            "argv": list(cmd.argv),
        }
        _report_ready(info, label="transformers serve", settings_file=settings_file, json_out=json_out)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


class ProxyModeChoice(enum.StrEnum):
    """What the proxy does with a response."""

    BUFFER = "buffer"
    STREAM = "stream"


@app.command("buffering-proxy")
def buffering_proxy(
    upstream: Annotated[str, typer.Option("--upstream", help="Base URL of the real server.")],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8001,
    mode: Annotated[
        ProxyModeChoice,
        typer.Option("--mode", help="buffer: hold whole responses; stream: pass chunks through."),
    ] = ProxyModeChoice.BUFFER,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the proxy URL as JSON before serving.")
    ] = False,
) -> None:
    """A reverse proxy that buffers whole responses (like nginx proxy_buffering), to show TTFT/ITL damage."""
    from ccai._net import listen_socket
    from ccai.bench import serve_proxy
    from ccai.cli._output import console, print_json

    listen_socket(host, port).close()  # a busy port is reported before the URL is printed
    url = f"http://{host}:{port}"
    if json_out:
        print_json({"url": url, "upstream": upstream, "mode": mode.value})
    else:
        console.print(f"{mode.value} proxy {url} → {upstream}")
    serve_proxy(upstream, host=host, port=port, mode=mode.value)
