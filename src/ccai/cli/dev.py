"""``ccai dev …``: development servers and tools for working without CC hardware."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["app"]

app = typer.Typer(
    name="dev", help="Development tools: local servers for the virtual CC GPU.", no_args_is_help=True
)


@app.command("collateral-server")
def collateral_server(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8089,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the service URLs as JSON before serving.")
    ] = False,
) -> None:
    """Serve the virtual GPU's RIMs (NVIDIA's RIM service API) and an OCSP responder for its test PKI.

    Point verifiers at it with --rim-service http://HOST:PORT --ocsp-url http://HOST:PORT/ocsp.
    """
    import uvicorn

    from ccai.cli._output import console, print_json
    from ccai.device._virtual import VirtualGpuBackend
    from ccai.service._dev_collateral import create_dev_collateral_app, settings_for_virtual_gpu

    backend = VirtualGpuBackend.open()
    app_ = create_dev_collateral_app(settings_for_virtual_gpu(backend))
    base = f"http://{host}:{port}"
    urls = {"rim_service": base, "ocsp_url": f"{base}/ocsp", "rim_ids": list(backend.rim_ids(0))}
    if json_out:
        print_json(urls)
    else:
        console.print(f"RIM service  {base}/v1/rim/<id>   ({', '.join(urls['rim_ids'])})")
        console.print(f"OCSP         {base}/ocsp  (test PKI; simulated, never trusted by default)")
    uvicorn.run(app_, host=host, port=port, log_level="warning")
