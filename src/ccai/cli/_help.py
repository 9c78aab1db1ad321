"""How ``--help`` and usage lines show parameters, for every command of the ``ccai`` app.

Typer renders a type placeholder after every option, flags included (``--json <bool>`` reads as if
the flag took a value), and wraps required arguments in braces on the usage line
(``ccai seal [OPTIONS] {model_dir}``). ccai's commands and groups use the classes below instead:

* a flag (``--json``, ``--offline``, ``--help``) shows no placeholder;
* an argument is shown by its metavar, or its name in capitals (``MODEL_DIR``, ``BUNDLE``), and on
  the usage line as ``NAME`` when required and ``[NAME]`` when optional, as click and POSIX write it.

Typer has no app-wide default command class, so :func:`use_ccai_help` sets these classes on every
command and group registered under the app (a class a module chose itself is kept).
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption
from typer.models import DefaultPlaceholder

__all__ = ["CcaiCommand", "CcaiGroup", "use_ccai_help"]


def _restyle(param: Any) -> None:
    """Give a flag an empty metavar (no placeholder) and an argument a capitalised one."""
    if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
        param.metavar = ""
    elif isinstance(param, TyperArgument) and param.metavar is None and param.name:
        param.metavar = param.name.upper()


def _usage_pieces(options_metavar: str | None, params: list[Any], ctx: Any) -> list[str]:
    pieces = [options_metavar] if options_metavar else []
    for param in params:
        if isinstance(param, TyperArgument):
            name = param.metavar or (param.name or "").upper()
            piece = name if param.required else f"[{name}]"
            pieces.append(piece + ("..." if param.nargs != 1 else ""))
        else:
            pieces.extend(param.get_usage_pieces(ctx))
    return pieces


class CcaiCommand(TyperCommand):
    """A Typer command whose help shows flags without a placeholder and arguments in capitals."""

    def get_params(self, ctx: Any) -> list[Any]:  # Typer's vendored click Context and Parameter
        """The parameters, ``--help`` included, restyled for help and usage lines."""
        params = super().get_params(ctx)
        for param in params:
            _restyle(param)
        return params

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        """``[OPTIONS] NAME [OPTIONAL]``: required arguments bare, optional ones in brackets."""
        return _usage_pieces(self.options_metavar, self.get_params(ctx), ctx)


class CcaiGroup(TyperGroup):
    """A Typer group whose help shows flags without a placeholder."""

    def get_params(self, ctx: Any) -> list[Any]:  # Typer's vendored click Context and Parameter
        """The parameters, ``--help`` and the completion flags included, restyled for help."""
        params = super().get_params(ctx)
        for param in params:
            _restyle(param)
        return params


def use_ccai_help(app: typer.Typer) -> None:
    """Make every command and group registered under ``app`` a :class:`CcaiCommand` / :class:`CcaiGroup`.

    Call it once, after the last command is registered. A command or group whose module chose a
    class of its own (``cls=``) keeps it; such a class should derive from the ones here.
    """
    for command in app.registered_commands:
        if command.cls in (None, TyperCommand):
            command.cls = CcaiCommand
    for group in app.registered_groups:
        sub = group.typer_instance
        if sub is None:
            continue
        # Typer marks a class nobody chose with a DefaultPlaceholder (its annotations say otherwise).
        chosen: list[Any] = [group.cls, sub.info.cls]
        if all(isinstance(cls, DefaultPlaceholder) for cls in chosen):
            sub.info.cls = CcaiGroup
        use_ccai_help(sub)
