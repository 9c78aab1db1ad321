"""The per-step outcome of a verification, as the ``verify``/``attest`` commands print it.

A verifier's checklist becomes rows ``{"step", "status", "detail"}`` with status ``ok``,
``skipped``, ``failed`` or ``not run``; people get them as a ✓/✗ table, scripts as the ``steps``
list of a JSON document whose ``result`` is ``pass``, or ``error`` with the ``error`` member every
failed ``--json`` command prints (``ccai.cli._errors.error_object``: its ``exit_code`` tells a
failed check, 1, from unavailable collateral, 3).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rich.markup import escape
from rich.table import Table

from ccai.cli._errors import error_object
from ccai.cli._output import console
from ccai.errors import Error

__all__ = ["failed_row", "outcome_document", "print_pass", "print_step_table", "rows_from_trace"]

_MARKS = {
    "ok": "[green]✓[/]",
    "skipped": "[yellow]–[/]",
    "failed": "[bold red]✗[/]",
    "not run": "[dim]·[/]",
}


def failed_row(step: str, error: Error) -> dict[str, str]:
    """The row of the step that raised ``error``."""
    return {"step": step, "status": "failed", "detail": f"{type(error).__name__}: {error.message}"}


def rows_from_trace(
    steps: Sequence[str], trace: Iterable[tuple[str, str]], error: Error | None, *, failed: str | None
) -> list[dict[str, str]]:
    """Rows for a verifier that reports its completed steps as ``(step, outcome)`` pairs.

    Args:
        steps: Every step of the checklist, in order.
        trace: The ``(step, outcome)`` pairs of the steps that completed; an outcome that starts
            with ``skipped`` marks a step that was deliberately not checked.
        error: What stopped the verification, if anything.
        failed: The step ``error`` belongs to (a step not in ``steps`` marks no row as failed).

    Returns:
        One row per step.
    """
    done = dict(trace)
    rows: list[dict[str, str]] = []
    for step in steps:
        if step in done:
            status = "skipped" if done[step].startswith("skipped") else "ok"
            rows.append({"step": step, "status": status, "detail": done[step]})
        elif error is not None and step == failed:
            rows.append(failed_row(step, error))
        else:
            rows.append({"step": step, "status": "not run", "detail": ""})
    return rows


def outcome_document(
    rows: list[dict[str, str]], error: Error | None, *, claims: Any, **extra: Any
) -> dict[str, Any]:
    """The ``--json`` document: ``result``, ``steps``, ``claims``, then ``extra``, then ``error``.

    ``result`` is ``pass``, or ``error`` when ``error`` is given: the steps that ran and the error
    object (``class``, ``message``, ``exit_code``, …) are in this one document.
    """
    return {
        "result": "pass" if error is None else "error",
        "steps": rows,
        "claims": claims,
        **extra,
        "error": error_object(error) if error is not None else None,
    }


def print_step_table(title: str, rows: Iterable[dict[str, str]]) -> None:
    """Print ``rows`` as a ✓/✗ table for people."""
    table = Table(title=title)
    table.add_column("", width=1)
    table.add_column("step")
    table.add_column("detail")
    for row in rows:
        table.add_row(_MARKS[row["status"]], row["step"], escape(row["detail"]))
    console.print(table)


def print_pass(*, simulated: str | None = None, caveats: Sequence[str] = ()) -> None:
    """Print the verdict of a passed verification, after the ``simulated`` banner when given.

    Args:
        simulated: What was simulated (a banner before the verdict).
        caveats: What the pass does not cover (a check deliberately not made), printed next to
            PASS so that a pass is never read as more than it is.
    """
    if simulated is not None:
        console.print(f"[bold yellow]SIMULATED — {simulated}; not evidence of real hardware[/]")
    if caveats:
        console.print(f"[bold green]PASS[/] [bold yellow]({escape('; '.join(caveats))})[/]", soft_wrap=True)
    else:
        console.print("[bold green]PASS[/]")
