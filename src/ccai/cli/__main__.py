"""Entry point of the ``ccai`` command: runs the app and maps errors to exit codes (``_errors``).

This is the one place a failure becomes what scripts see:

* a one-line ``error: …`` message on stderr (plus its ``step``/``expected``/``actual``/``hint``
  lines), never a traceback;
* the exit code of :func:`ccai.cli._errors.exit_code_for` (usage errors that click detects while
  parsing the command line — unknown option, missing argument, bad value — are exit 2);
* with ``--json`` on the command line, exactly one JSON document on stdout: the command's own, or
  else :func:`ccai.cli._errors.error_document` (README, "Exit codes").

The app runs with click's ``standalone_mode=False`` so that click's usage errors reach this module
instead of being printed (as a usage box, with nothing on stdout) and turned into exit 2 by click.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from rich.markup import escape
from typer._click.exceptions import ClickException, NoArgsIsHelpError
from typer._click.exceptions import UsageError as ClickUsageError
from typer.exceptions import Abort

from ccai.cli._errors import ExitCode, error_document, exit_code_for, missing_extra
from ccai.cli._output import documents_printed, err_console, json_requested, print_json, reset_documents
from ccai.errors import Error, UsageError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``ccai`` and exit with its exit code; every error becomes a message on stderr, never a traceback.

    Error lines are never wrapped at the terminal width: one failure is one line (plus its
    ``step``/``expected``/``actual`` lines), whole hex values stay copyable, and scripts can grep them.

    Args:
        argv: The arguments after the program name (default ``sys.argv[1:]``).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    sys.exit(_run(args, as_json=json_requested(args)))


def _run(args: list[str], *, as_json: bool) -> int:
    from ccai.cli.app import app

    reset_documents()
    try:
        result = app(args=args, standalone_mode=False)
    except NoArgsIsHelpError as exc:
        return exc.exit_code  # the group printed its help (``ccai``, ``ccai verify`` alone)
    except ClickUsageError as exc:
        # Unknown option, missing argument, bad value: click's message, our format and exit 2.
        hint = f"{exc.ctx.command_path} --help" if exc.ctx is not None else None
        return _error(UsageError(exc.format_message(), hint=hint), as_json=as_json)
    except ClickException as exc:
        return _fail(exc, exc.format_message(), exc.exit_code, as_json=as_json)
    except Abort as exc:
        return _fail(exc, "aborted", int(ExitCode.FAILED), as_json=as_json)
    except Error as exc:
        return _error(exc, as_json=as_json)
    except OSError as exc:
        return _fail(exc, str(exc), int(ExitCode.USAGE), as_json=as_json)
    except KeyboardInterrupt as exc:
        err_console.print("interrupted")
        _document(exc, "interrupted", 130, as_json=as_json)
        return 130
    except Exception as exc:
        if os.environ.get("CCAI_DEBUG"):
            raise
        needed = missing_extra(exc)
        if needed is not None:
            # An optional extra (pyproject.toml) is not installed: a one-line hint, not a traceback.
            module, extra = needed
            hint = f"this command needs {module} (the [{extra}] extra): pip install 'ccai[{extra}]'"
            return _fail(exc, hint, int(ExitCode.USAGE), as_json=as_json)
        err_console.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))}\n"
            "This is a bug in ccai. Rerun with CCAI_DEBUG=1 for the traceback.",
            highlight=False,
        )
        _document(
            exc, f"{exc} (a bug in ccai; rerun with CCAI_DEBUG=1)", int(ExitCode.INTERNAL), as_json=as_json
        )
        return int(ExitCode.INTERNAL)
    # Without standalone mode click returns the code of a ``typer.Exit`` (130 for Ctrl-C while a
    # command runs), or the command's return value, which is None for every ccai command.
    code = result if isinstance(result, int) and not isinstance(result, bool) else 0
    if code != 0:
        _document(
            SystemExit(code), "interrupted" if code == 130 else f"exit status {code}", code, as_json=as_json
        )
    return code


def _error(exc: Error, *, as_json: bool) -> int:
    """Report a ccai error: its diagnostics on stderr, the JSON document, its exit code."""
    err_console.print(f"[bold red]error:[/] {escape(exc.diagnostics())}", highlight=False, soft_wrap=True)
    code = int(exit_code_for(exc))
    _document(exc, exc.message, code, as_json=as_json)
    return code


def _fail(exc: BaseException, message: str, code: int, *, as_json: bool) -> int:
    """Report an error that is not a ccai error as one ``error:`` line, the JSON document and ``code``."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    _document(exc, message, code, as_json=as_json)
    return code


def _document(exc: BaseException, message: str, code: int, *, as_json: bool) -> None:
    """Print the error document, unless ``--json`` is off or the command printed its document."""
    if as_json and documents_printed() == 0:
        print_json(error_document(exc, exit_code=code, message=message))


if __name__ == "__main__":
    main()
