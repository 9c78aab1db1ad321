"""The ``ccai`` Typer application: the command groups, registered in data-flow order.

Each group lives in its own module and keeps heavy imports (pynvml, torch, transformers) inside
the commands that need them, so ``ccai --help`` stays fast. The root takes ``--version`` and
Typer's shell completion (``--install-completion``, ``--show-completion``); ``_help`` sets how
every command's ``--help`` shows its parameters.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ccai.cli._help import CcaiGroup, use_ccai_help
from ccai.errors import UsageError

__all__ = ["app", "version"]

app = typer.Typer(
    name="ccai",
    help="Confidential AI inference on NVIDIA GPUs: CC control, attestation, verification, sealed models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    cls=CcaiGroup,
)


def version() -> str:
    """The installed ccai version (package metadata; the source tree's when ccai is not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version("ccai")
    except PackageNotFoundError:
        from ccai import __version__

        return __version__


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    show_version: Annotated[bool, typer.Option("--version", help="Print the ccai version and exit.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --version: print it as JSON.")] = False,
) -> None:
    """ccai: confidential AI inference on NVIDIA GPUs."""
    if show_version:
        from ccai.cli._output import console, print_json

        if as_json:
            print_json({"ccai": version()})
        else:
            console.print(f"ccai {version()}")
        raise typer.Exit
    if as_json:
        # `ccai --json verify …` would print people's output: --json belongs to the command.
        raise UsageError("--json goes after the command: ccai COMMAND … --json")
    if ctx.invoked_subcommand is None:
        raise UsageError("missing command", hint="ccai --help")


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
from ccai.cli import kbs  # noqa: E402

app.add_typer(kbs.app, name="kbs")
from ccai.cli import attestation  # noqa: E402

app.add_typer(attestation.app, name="attestation")
from ccai.cli import chat  # noqa: E402

app.command("chat")(chat.chat)

# Flags without a <bool> placeholder, arguments in capitals (``_help``): after the last command.
use_ccai_help(app)
