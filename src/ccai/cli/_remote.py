"""``--service URL``: ask an attestation service to verify, then check its token here.

``ccai verify gpu … --service URL`` and ``ccai verify BUNDLE --service URL`` send the evidence to
the service (``ccai.token.AttestationServiceClient``), verify the detached EAT it returns against
the service's JWKS (``ccai.token.verify_token``: ES384 signature, development-key rule, nonce,
expiry, submodule digests), and render the steps the *signed* token records (``x-ccai-steps``,
``x-ccai-error``, ``x-ccai-reason``, ``x-ccai-failed-step``) exactly like a local verification.
Nothing in the unsigned part of the answer decides the verdict.

Verdict: a token with ``x-ccai-error`` failed with that reason; otherwise it passed when
``x-nvidia-overall-att-result`` is true, or — for ccai's tokens, which record their steps — when no
step failed (a pass whose revocation was not checked says so, as locally). A ``--policy`` is then
applied to the token's claims with the one policy model (``Appraisal.from_claims``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ccai._time import utcnow
from ccai.cli._output import print_json
from ccai.cli._steps import outcome_document, print_pass, print_step_table
from ccai.errors import Error, EvidenceError, UsageError, VerificationError

if TYPE_CHECKING:
    from ccai.token import AttestationServiceClient, ServiceAnswer, VerifiedToken
    from ccai.verify import Policy

__all__ = ["check_service_options", "report_service_answer", "service_client"]

_OVERALL_FALSE = "x-nvidia-overall-att-result: false"
_STATUSES = ("ok", "skipped", "failed", "not run")


def check_service_options(**conflicting: object) -> None:
    """Refuse options that choose local collateral or time together with ``--service``.

    Raises:
        UsageError: one of ``conflicting`` is set (not None/False/empty).
    """
    given = [name for name, value in conflicting.items() if value not in (None, False, "", [])]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise UsageError(
            f"--service verifies on the service, with its collateral and clock: drop {flags}",
        )


def service_client(url: str, api_key: str | None) -> AttestationServiceClient:
    """The client of the service at ``url`` with the CLI's collateral HTTP limits.

    Raises:
        UsageError: ``url`` is not an http(s) URL, or bad limits in the environment.
    """
    from ccai.cli._options import collateral_http_limits
    from ccai.token import AttestationServiceClient

    return AttestationServiceClient(url, api_key=api_key, limits=collateral_http_limits())


def _rows(overall: Mapping[str, Any]) -> list[dict[str, str]]:
    """The ``x-ccai-steps`` of a verified token as table rows (malformed entries are left out)."""
    steps = overall.get("x-ccai-steps")
    rows: list[dict[str, str]] = []
    if isinstance(steps, list):
        for entry in steps:
            if (
                isinstance(entry, Mapping)
                and isinstance(entry.get("step"), str)
                and entry.get("status") in _STATUSES
                and isinstance(entry.get("detail", ""), str)
            ):
                rows.append(
                    {"step": entry["step"], "status": entry["status"], "detail": entry.get("detail", "")}
                )
    return rows


def _error_from_claims(overall: Mapping[str, Any]) -> Error:
    """The verifier's error as the signed claims name it (a class of the evidence or verification
    branch; anything else becomes a plain :class:`VerificationError` naming the class)."""
    from ccai import errors

    name = str(overall.get("x-ccai-error", ""))
    reason = str(overall.get("x-ccai-reason", "the service's appraisal failed"))
    step = overall.get("x-ccai-failed-step")
    step = step if isinstance(step, str) else None
    found = getattr(errors, name, None) if name.isidentifier() else None
    if isinstance(found, type) and issubclass(found, EvidenceError | VerificationError):
        return found(reason, step=step)
    return VerificationError(f"{name}: {reason}" if name else reason, step=step)


def _verdict(token: VerifiedToken, rows: list[dict[str, str]]) -> tuple[Error | None, list[str]]:
    """The service's verdict from the token's claims, and the caveats of a pass."""
    overall = token.overall
    if "x-ccai-error" in overall:
        return _error_from_claims(overall), []
    result = overall.get("x-nvidia-overall-att-result")
    if result is True:
        return None, []
    if rows and not any(r["status"] == "failed" for r in rows):
        # ccai's pass whose NVIDIA overall result is false (revocation not checked offline).
        return None, [_OVERALL_FALSE]
    return VerificationError("the service's overall attestation result is false", step="service"), []


def report_service_answer(
    client: AttestationServiceClient,
    answer: ServiceAnswer,
    *,
    nonce: bytes,
    allow_simulated: bool,
    policy: Policy | None,
    as_json: bool,
    title: str,
) -> VerifiedToken:
    """Verify the service's token, apply ``policy`` to its claims, render, and raise on failure.

    Raises:
        TokenError, SimulatedEvidenceRejected: the token does not verify (after rendering).
        CollateralUnavailable: the service's keys cannot be fetched.
        Error: the appraisal the token records failed, or ``policy`` rejects its claims.
    """
    from ccai.token import unverified_header, verify_token
    from ccai.verify import Appraisal, appraise

    kid = unverified_header(answer.eat.overall).get("kid")
    token_step = "service token"  # noqa: S105 - a step name, not a secret
    try:
        token = verify_token(
            answer.eat, jwks=client.jwks, nonce=nonce, now=utcnow(), allow_simulated=allow_simulated
        )
    except (VerificationError, EvidenceError) as exc:
        row = {"step": token_step, "status": "failed", "detail": f"{type(exc).__name__}: {exc.message}"}
        _render([row], exc, token=None, answer=answer, client=client, as_json=as_json, title=title)
        raise
    rows = [
        {
            "step": token_step,
            "status": "ok",
            "detail": f"ES384 by {kid} ({client.jwks.url}); nonce, expiry, {len(token.submods)} submodule(s)",
        },
        *_rows(token.overall),
    ]
    error, caveats = _verdict(token, rows[1:])
    if error is None and policy is not None:
        gpus = {name: claims for name, claims in token.submods.items() if name.startswith("GPU-")}
        try:
            appraise(
                policy,
                Appraisal.from_claims(
                    overall=token.overall,
                    gpus=gpus,
                    cpu=token.submods.get("CPU-0"),
                    allow_simulated=allow_simulated,
                ),
            )
            rows.append({"step": "policy (here)", "status": "ok", "detail": policy.describe()})
        except Error as exc:
            rows.append(
                {
                    "step": "policy (here)",
                    "status": "failed",
                    "detail": f"{type(exc).__name__}: {exc.message}",
                }
            )
            error = exc
    _render(
        rows, error, token=token, answer=answer, client=client, as_json=as_json, title=title, caveats=caveats
    )
    if error is not None:
        raise error
    return token


def _render(
    rows: list[dict[str, str]],
    error: Error | None,
    *,
    token: VerifiedToken | None,
    answer: ServiceAnswer,
    client: AttestationServiceClient,
    as_json: bool,
    title: str,
    caveats: list[str] | None = None,
) -> None:
    if as_json:
        claims = None
        if token is not None:
            claims = {"overall": dict(token.overall), **{k: dict(v) for k, v in token.submods.items()}}
        extra: dict[str, Any] = {"service": client.url, "detached_eat": answer.eat.to_json()}
        if token is not None:
            extra["simulated"] = token.simulated
        print_json(outcome_document(rows, error, claims=claims, **extra, warnings=caveats or []))
        return
    print_step_table(f"{title} (verified by {client.url})", rows)
    if error is None and token is not None:
        print_pass(simulated="virtual hardware, test PKI" if token.simulated else None, caveats=caveats or ())
