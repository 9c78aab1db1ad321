"""The ``ccai`` Typer application: the command groups, registered in data-flow order.

Each group lives in its own module and keeps heavy imports (pynvml, torch, transformers) inside
the commands that need them, so ``ccai --help`` stays fast.
"""

from __future__ import annotations

import typer

__all__ = ["app"]

app = typer.Typer(
    name="ccai",
    help="Confidential AI inference on NVIDIA GPUs: CC control, attestation, verification, sealed models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """ccai: confidential AI inference on NVIDIA GPUs."""


# Command groups, one module each (add new groups here, in data-flow order).
from ccai.cli import gpu  # noqa: E402

app.add_typer(gpu.app, name="gpu")
from ccai.cli import evidence  # noqa: E402

app.add_typer(evidence.app, name="evidence")
from ccai.cli import demo  # noqa: E402

app.command("demo")(demo.demo)
from ccai.cli import bench  # noqa: E402

app.add_typer(bench.app, name="bench")
from ccai.cli import attest  # noqa: E402

app.add_typer(attest.app, name="attest")
from ccai.cli import verify  # noqa: E402

app.add_typer(verify.app, name="verify")
from ccai.cli import collateral  # noqa: E402

app.add_typer(collateral.app, name="collateral")
from ccai.cli import dev  # noqa: E402

app.add_typer(dev.app, name="dev")
from ccai.cli import seal  # noqa: E402

app.command("seal")(seal.seal_cmd)
app.command("unseal")(seal.unseal_cmd)
app.add_typer(seal.keys_app, name="keys")
app.add_typer(seal.sealed_app, name="sealed")
from ccai.cli import serve  # noqa: E402

app.add_typer(serve.app, name="serve")
from ccai.cli import attestation  # noqa: E402

app.add_typer(attestation.app, name="attestation")
