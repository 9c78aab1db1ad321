"""Entry point of the ``ccai`` command: runs the app and maps errors to exit codes (``_errors``)."""

from __future__ import annotations

import os
import sys

from rich.markup import escape

from ccai.cli._errors import ExitCode, exit_code_for, missing_extra
from ccai.cli._output import err_console
from ccai.errors import Error

__all__ = ["main"]


def main() -> None:
    """Run ``ccai``; every ccai error becomes a message on stderr and its exit code, never a traceback.

    Error lines are never wrapped at the terminal width: one failure is one line (plus its
    ``step``/``expected``/``actual`` lines), whole hex values stay copyable, and scripts can grep them.
    """
    from ccai.cli.app import app

    try:
        app()
    except Error as exc:
        err_console.print(f"[bold red]error:[/] {escape(exc.diagnostics())}", highlight=False, soft_wrap=True)
        sys.exit(int(exit_code_for(exc)))
    except OSError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(int(ExitCode.USAGE))
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("CCAI_DEBUG"):
            raise
        needed = missing_extra(exc)
        if needed is not None:
            # An optional extra (pyproject.toml) is not installed: a one-line hint, not a traceback.
            module, extra = needed
            hint = f"this command needs {module} (the [{extra}] extra): pip install 'ccai[{extra}]'"
            err_console.print(f"[bold red]error:[/] {escape(hint)}", highlight=False, soft_wrap=True)
            sys.exit(int(ExitCode.USAGE))
        err_console.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))}\n"
            "This is a bug in ccai. Rerun with CCAI_DEBUG=1 for the traceback.",
            highlight=False,
        )
        sys.exit(int(ExitCode.INTERNAL))


if __name__ == "__main__":
    main()
