"""Per-step results of a verification checklist.

Every verifier in :mod:`ccai.verify` is a numbered checklist. :class:`StepResult` is one row of it:
the step's name, whether it passed, was skipped on purpose, failed or did not run, and a short
detail. A successful verification carries the full tuple (``VerifiedEvidence.steps``); an error
raised by a verifier carries the rows of the steps that ran, the failed one included, in
``Error.steps`` — so a renderer can show chain ✓ signature ✓ nonce ✓ … ✗ even when collateral was
unavailable.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from ccai.errors import Error

__all__ = ["StepResult", "StepStatus", "Steps", "results_from_trace"]

#: ``ok``: the step passed; ``skipped``: deliberately not checked (the detail says why);
#: ``failed``: the step raised; ``not run``: the checklist stopped before it.
StepStatus = Literal["ok", "skipped", "failed", "not run"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StepResult:
    """One step of a verification checklist and its outcome.

    Attributes:
        step: The step's name as the checklist spells it (``"(2) report signature"``).
        status: ``ok``, ``skipped``, ``failed`` or ``not run``.
        detail: What the step established, or for a failed step ``"<ErrorClass>: <message>"``.
    """

    step: str
    status: StepStatus
    detail: str = ""


def _failed(step: str, error: Error) -> StepResult:
    return StepResult(step=step, status="failed", detail=f"{type(error).__name__}: {error.message}")


class Steps:
    """Records a checklist as it runs (for the verifiers' own use).

    ``begin(step)`` names the step now running; ``ok``/``skip`` close it with a detail. When an
    error escapes, :meth:`attach` stores the rows on it: the steps that completed, the running
    step as ``failed``, the rest ``not run``.

    Args:
        all_steps: Every step of the checklist, in order.
    """

    __slots__ = ("_all", "_current", "_done")

    def __init__(self, all_steps: Sequence[str]) -> None:
        self._all = tuple(all_steps)
        self._done: dict[str, StepResult] = {}
        self._current: str | None = None

    @property
    def current(self) -> str | None:
        """The step now running (``None`` before the first one)."""
        return self._current

    def begin(self, step: str) -> None:
        """Mark ``step`` as running."""
        self._current = step

    def ok(self, step: str, detail: str = "") -> None:
        """Record that ``step`` passed (a later call for the same step replaces the detail)."""
        self._done[step] = StepResult(step=step, status="ok", detail=detail)

    def skip(self, step: str, why: str) -> None:
        """Record that ``step`` was deliberately not checked."""
        self._done[step] = StepResult(step=step, status="skipped", detail=why)

    def results(self, error: Error | None = None) -> tuple[StepResult, ...]:
        """One row per step: completed ones as recorded, the failed one with ``error``, the rest
        ``not run``.

        The failed step is the one the error names when it is a step of this checklist (the
        policy step reports a failed measurement rule at ``(9) measurements``), else the running
        step.
        """
        failed = None
        if error is not None:
            failed = error.step if error.step in self._all else self._current
        rows: list[StepResult] = []
        reached_failure = False
        for step in self._all:
            if error is not None and step == failed:
                rows.append(_failed(step, error))
                reached_failure = True
            elif step in self._done and not reached_failure:
                rows.append(self._done[step])
            else:
                rows.append(StepResult(step=step, status="not run"))
        return tuple(rows)

    def attach(self, error: Error) -> Error:
        """Store the rows on ``error`` (and name the running step on it when it names none).

        Returns:
            ``error``, for ``raise steps.attach(exc)``.
        """
        if self._current is not None and error.step is None:
            error.step = self._current
        if self._current is not None:
            error.steps = self.results(error)
        return error


def results_from_trace(
    all_steps: Sequence[str], trace: Iterable[tuple[str, str]], error: Error | None = None
) -> tuple[StepResult, ...]:
    """Rows for a verifier that reports completed steps as ``(step, outcome)`` pairs (TDX, SNP).

    An outcome starting with ``skipped`` is a deliberately skipped step. The failed step is the
    error's own step when it is one of ``all_steps`` (``"parse"`` means the first), else the first
    step that did not complete.

    Args:
        all_steps: Every step of the checklist, in order.
        trace: The completed steps.
        error: What stopped the verification, if anything.

    Returns:
        One row per step.
    """
    done = dict(trace)
    failed: str | None = None
    if error is not None:
        if error.step in all_steps:
            failed = error.step
        elif error.step == "parse":
            failed = all_steps[0]
        else:
            failed = next((s for s in all_steps if s not in done), None)
    rows: list[StepResult] = []
    for step in all_steps:
        if step in done:
            status: StepStatus = "skipped" if done[step].startswith("skipped") else "ok"
            rows.append(StepResult(step=step, status=status, detail=done[step]))
        elif error is not None and step == failed:
            rows.append(_failed(step, error))
        else:
            rows.append(StepResult(step=step, status="not run"))
    return tuple(rows)
