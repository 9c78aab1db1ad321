"""Appraisal policies: frozen rule objects evaluated over the claims the verifier produced.

A policy never sees evidence, only claims: per-GPU claims (NVIDIA's claims-3.0 or 2.0 names),
overall claims, and CPU TEE claims (TDX/SNP spec field names), plus ``x-ccai-*``. The same policy
object therefore judges a fresh verification (:meth:`Appraisal.from_verified`) and the claims of a
verified token (:meth:`Appraisal.from_claims`) in exactly the same way; :func:`appraise` raises
the first failure's error.

* Combinators: :class:`AllOf` (an **empty AllOf fails**: a policy that checks nothing is a bug,
  not a pass) and :class:`AnyOf` (an empty AnyOf fails too).
* Claim rules (scope ``gpu``, ``overall`` or ``cpu``): :class:`ClaimEquals`, :class:`ClaimIn`,
  :class:`MinVersion`.
* GPU rules: :class:`MeasurementIndexAllowList` (which indices may mismatch),
  :class:`RevocationGood`, :class:`CcModeOn`, :class:`DevToolsOff`.
* Composite rules: :class:`GpuCount`, :class:`MinGpus`, :class:`DistinctGpus`, :class:`CpuOnly`,
  :class:`NotSimulated`. CPU rules live in :mod:`ccai.verify._cpu_policy`.
* :func:`default_policy`: revocation good, every measurement matching, CC on, DevTools off, not
  simulated.
* :class:`UnsafeAcceptAnything`: accepts every claim set and logs a warning each time. Named
  loudly on purpose.

Each failure carries the error class the verifier raises for it (a revoked certificate is a
:class:`~ccai.errors.CertificateRevoked`, mismatching measurements a
:class:`~ccai.errors.MeasurementMismatch`, missing revocation data a
:class:`~ccai.errors.CollateralUnavailable`, anything else a :class:`~ccai.errors.PolicyViolation`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from ccai.errors import (
    CertificateRevoked,
    ChainError,
    CollateralUnavailable,
    Error,
    MeasurementMismatch,
    PolicyViolation,
    SimulatedEvidenceRejected,
    UsageError,
)
from ccai.verify._result import VerifiedEvidence

__all__ = [
    "CHAIN_CLAIMS",
    "AllOf",
    "AnyOf",
    "Appraisal",
    "CcModeOn",
    "ClaimEquals",
    "ClaimIn",
    "CpuOnly",
    "DevToolsOff",
    "DistinctGpus",
    "GpuCount",
    "MeasurementIndexAllowList",
    "MinGpus",
    "MinVersion",
    "NotSimulated",
    "Policy",
    "PolicyFailure",
    "RevocationGood",
    "UnsafeAcceptAnything",
    "accepts_anything",
    "appraise",
    "claim_value",
    "default_policy",
]

#: Where a claim rule looks: every GPU's claims, the overall claims, or the CPU TEE's claims.
Scope = Literal["gpu", "overall", "cpu"]
ClaimPath = str | tuple[str, ...]

#: The three certificate-chain objects of claims 3.0.
CHAIN_CLAIMS = (
    "x-nvidia-gpu-attestation-report-cert-chain",
    "x-nvidia-gpu-driver-rim-cert-chain",
    "x-nvidia-gpu-vbios-rim-cert-chain",
)
_MISSING = object()
_POLICY_STEP = "(12) policy"
_SIMULATED = "x-ccai-simulated"
_GPU_KEY = re.compile(r"GPU-(0|[1-9][0-9]*)")

#: The logger that reports policies which accept anything.
logger = logging.getLogger("ccai.verify.policy")


@dataclass(frozen=True, slots=True, kw_only=True)
class Appraisal:
    """The claims a policy judges.

    Build it with :meth:`from_verified` (a fresh verification result) or :meth:`from_claims`
    (claims taken from a verified token); a policy evaluates both the same way.

    Attributes:
        overall: Claims about the whole evidence set (``x-nvidia-overall-att-result``, ``eat_nonce`` …).
        gpus: Per-GPU claims, in evidence order.
        cpu: The CPU TEE's claims (TDX/SNP spec field names), or None without CPU evidence.
        allow_simulated: The caller accepts evidence from virtual hardware
            (``x-ccai-simulated: true``) by name; only :class:`NotSimulated` reads it.
        switches: Per-NVSwitch claims (``x-nvidia-switch-…``), in evidence order; judged by the
            switch and protected-PCIe rules (:mod:`ccai.verify._ppcie_policy`).
    """

    overall: Mapping[str, Any]
    gpus: tuple[Mapping[str, Any], ...] = ()
    cpu: Mapping[str, Any] | None = None
    allow_simulated: bool = False
    switches: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def from_verified(cls, verified: VerifiedEvidence, *, allow_simulated: bool = False) -> Appraisal:
        """The claims of a verification result.

        Args:
            verified: What :func:`ccai.verify.verify_gpu_evidence` or
                :func:`ccai.verify.verify_composite` returned.
            allow_simulated: Accept simulated evidence (see :class:`NotSimulated`). Not implied
                by ``verified.simulated``: the same policy must judge a token's claims alike.

        Returns:
            The appraisal.

        Raises:
            UsageError: ``verified`` is not a :class:`~ccai.verify.VerifiedEvidence`.
        """
        if not isinstance(verified, VerifiedEvidence):
            raise UsageError("Appraisal.from_verified takes a VerifiedEvidence")
        return cls(
            overall=verified.overall_claims,
            gpus=tuple(g.claims for g in verified.gpus),
            cpu=verified.cpu_claims,
            allow_simulated=allow_simulated,
            switches=tuple(s.claims for s in verified.switches),
        )

    @classmethod
    def from_claims(
        cls,
        *,
        overall: Mapping[str, Any],
        gpus: Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]] = (),
        cpu: Mapping[str, Any] | None = None,
        allow_simulated: bool = False,
        switches: Sequence[Mapping[str, Any]] = (),
    ) -> Appraisal:
        """Claims from elsewhere, typically a token that :func:`ccai.token.verify_token` verified.

        Args:
            overall: The overall claims (the overall JWT's payload).
            gpus: Per-GPU claims as a list in GPU order, or keyed ``GPU-0``, ``GPU-1`` … (the
                token's submodules).
            cpu: The CPU claims (the token's ``CPU-0`` submodule), if any.
            allow_simulated: Accept simulated evidence (see :class:`NotSimulated`).
            switches: Per-NVSwitch claims in switch order (the token's ``SWITCH-<n>`` submodules).

        Returns:
            The appraisal.

        Raises:
            UsageError: a GPU key is not ``GPU-<n>``, the indices have gaps, or a claim set is
                not a mapping.
        """
        if isinstance(gpus, Mapping):
            indexed: dict[int, Mapping[str, Any]] = {}
            for key, claims in gpus.items():
                match = _GPU_KEY.fullmatch(str(key))
                if match is None:
                    raise UsageError(f"GPU claims key {key!r} is not GPU-<n>", expected="GPU-0, GPU-1, …")
                indexed[int(match.group(1))] = claims
            if sorted(indexed) != list(range(len(indexed))):
                raise UsageError("GPU claims keys have gaps", actual=sorted(f"GPU-{i}" for i in indexed))
            ordered = tuple(indexed[i] for i in range(len(indexed)))
        else:
            ordered = tuple(gpus)
        for claims in (overall, *ordered, *switches, *(() if cpu is None else (cpu,))):
            if not isinstance(claims, Mapping):
                raise UsageError("claims must be mappings", actual=type(claims).__name__)
        return cls(
            overall=overall,
            gpus=ordered,
            cpu=cpu,
            allow_simulated=allow_simulated,
            switches=tuple(switches),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyFailure:
    """Why a rule rejected the claims.

    Attributes:
        rule: The rule's description.
        message: What was wrong.
        gpu: The GPU index the failure is about, or None for overall claims.
        error: The :class:`~ccai.errors.Error` subclass the verifier raises for this failure.
        expected: The required value.
        actual: The value found.
        step: The checklist step the failure belongs to.
        index: Where inside that GPU's evidence the failure is (e.g. ``"measurement index 9"``),
            or None when the whole GPU (or the overall claims) is meant.
        cpu: True when the failure is about the CPU TEE's claims.
        hint: What the user can do about it (the rule is always named too).
    """

    rule: str
    message: str
    gpu: int | None = None
    error: type[Error] = PolicyViolation
    expected: Any = None
    actual: Any = None
    step: str = _POLICY_STEP
    index: str | None = None
    cpu: bool = False
    hint: str | None = None

    def to_error(self) -> Error:
        """The exception the verifier raises for this failure."""
        where = "" if self.gpu is None else f"GPU-{self.gpu}: "
        at = None if self.gpu is None else f"GPU-{self.gpu}"
        if self.index is not None:
            at = self.index if at is None else f"{at} {self.index}"
        hint = f"policy rule: {self.rule}"
        return self.error(
            f"{where}{self.message}",
            step=self.step,
            index=at,
            expected=self.expected,
            actual=self.actual,
            hint=hint if self.hint is None else f"{self.hint}; {hint}",
        )


@runtime_checkable
class Policy(Protocol):
    """An appraisal policy: a pure function from claims to failures (empty = satisfied)."""

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """Judge ``appraisal``; return every failure (an empty tuple means the policy passes)."""
        ...

    def describe(self) -> str:
        """A one-line human description of the rule."""
        ...


def appraise(policy: Policy, appraisal: Appraisal) -> None:
    """Evaluate ``policy`` and raise the first failure's error.

    Args:
        policy: The policy.
        appraisal: The claims to judge.

    Raises:
        VerificationError: the first failure's class (:class:`~ccai.errors.PolicyViolation`,
            :class:`~ccai.errors.MeasurementMismatch`, :class:`~ccai.errors.TcbError`,
            :class:`~ccai.errors.SimulatedEvidenceRejected` …).
        CollateralUnavailable: the claims say revocation or TCB was not checked and the policy
            requires it.
    """
    failures = policy.evaluate(appraisal)
    if failures:
        raise failures[0].to_error()


def accepts_anything(policy: Policy) -> bool:
    """Whether ``policy`` is (or reduces to) :class:`UnsafeAcceptAnything`.

    An :class:`AllOf` accepts anything when it has children and all of them do; an :class:`AnyOf`
    when any child does.
    """
    if isinstance(policy, UnsafeAcceptAnything):
        return True
    if isinstance(policy, AllOf):
        return bool(policy.policies) and all(accepts_anything(p) for p in policy.policies)
    if isinstance(policy, AnyOf):
        return any(accepts_anything(p) for p in policy.policies)
    return False


def claim_value(claims: Mapping[str, Any], path: ClaimPath) -> Any:
    """Look up a claim; a tuple path descends into nested objects. Returns a sentinel when absent."""
    parts = (path,) if isinstance(path, str) else path
    value: Any = claims
    for part in parts:
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _path_text(path: ClaimPath) -> str:
    return path if isinstance(path, str) else ".".join(path)


def _scoped(appraisal: Appraisal, scope: Scope) -> list[tuple[int | None, Mapping[str, Any]]]:
    if scope == "overall":
        return [(None, appraisal.overall)]
    if scope == "cpu":
        return [] if appraisal.cpu is None else [(None, appraisal.cpu)]
    return list(enumerate(appraisal.gpus))


def no_cpu_claims(rule: Policy) -> tuple[PolicyFailure, ...]:
    """The failure of a CPU rule judging an appraisal without CPU claims."""
    return (
        PolicyFailure(
            rule=rule.describe(),
            message="there are no CPU TEE claims, and the policy requires CPU evidence",
            cpu=True,
        ),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class AllOf:
    """Every child policy must pass. An empty AllOf fails.

    Attributes:
        policies: The children, evaluated in order (the first failure is the one raised).
    """

    policies: tuple[Policy, ...]

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """See :class:`Policy`."""
        if not self.policies:
            return (PolicyFailure(rule=self.describe(), message="an empty AllOf accepts nothing"),)
        return tuple(f for p in self.policies for f in p.evaluate(appraisal))

    def describe(self) -> str:
        """See :class:`Policy`."""
        return "all of (" + "; ".join(p.describe() for p in self.policies) + ")"


@dataclass(frozen=True, slots=True, kw_only=True)
class AnyOf:
    """At least one child policy must pass. An empty AnyOf fails.

    Attributes:
        policies: The alternatives.
    """

    policies: tuple[Policy, ...]

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """See :class:`Policy`."""
        reasons: list[str] = []
        for policy in self.policies:
            failures = policy.evaluate(appraisal)
            if not failures:
                return ()
            reasons.append(failures[0].message)
        return (
            PolicyFailure(
                rule=self.describe(),
                message="no alternative is satisfied"
                + (": " + " | ".join(reasons) if reasons else " (empty AnyOf)"),
            ),
        )

    def describe(self) -> str:
        """See :class:`Policy`."""
        return "any of (" + "; ".join(p.describe() for p in self.policies) + ")"


def _claim_failures(
    appraisal: Appraisal,
    rule: Policy,
    claim: ClaimPath,
    scope: Scope,
    *,
    expected: Any,
    ok: Callable[[Any], bool],
    suffix: str = "",
) -> tuple[PolicyFailure, ...]:
    """One failure per claim set in ``scope`` whose ``claim`` is absent or not ``ok``."""
    if scope == "cpu" and appraisal.cpu is None:
        return no_cpu_claims(rule)
    out = []
    for gpu, claims in _scoped(appraisal, scope):
        actual = claim_value(claims, claim)
        if actual is _MISSING or not ok(actual):
            shown = "absent" if actual is _MISSING else repr(actual)
            out.append(
                PolicyFailure(
                    rule=rule.describe(),
                    message=f"claim {_path_text(claim)} is {shown}{suffix}",
                    gpu=gpu,
                    expected=expected,
                    actual=None if actual is _MISSING else actual,
                    cpu=scope == "cpu",
                )
            )
    return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimEquals:
    """A claim must be present and equal ``value`` (for every GPU, or in the overall claims).

    Attributes:
        claim: Claim name, or a tuple path into nested claim objects.
        value: The required value.
        scope: ``"gpu"`` (every GPU's claims), ``"overall"`` or ``"cpu"``.
    """

    claim: ClaimPath
    value: Any
    scope: Scope = "gpu"

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """See :class:`Policy`."""
        return _claim_failures(
            appraisal, self, self.claim, self.scope, expected=self.value, ok=lambda v: bool(v == self.value)
        )

    def describe(self) -> str:
        """See :class:`Policy`."""
        return f"{_path_text(self.claim)} == {self.value!r}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimIn:
    """A claim must be present and one of ``values``.

    Attributes:
        claim: Claim name or tuple path.
        values: The acceptable values.
        scope: ``"gpu"``, ``"overall"`` or ``"cpu"``.
    """

    claim: ClaimPath
    values: tuple[Any, ...]
    scope: Scope = "gpu"

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """See :class:`Policy`."""
        return _claim_failures(
            appraisal, self, self.claim, self.scope, expected=list(self.values), ok=lambda v: v in self.values
        )

    def describe(self) -> str:
        """See :class:`Policy`."""
        return f"{_path_text(self.claim)} in {list(self.values)!r}"


_VERSION_PART = re.compile(r"[0-9A-Fa-f]+")


def _version_key(text: str, *, hex_parts: bool) -> tuple[int, ...]:
    parts = text.strip().split(".")
    if not parts or not all(_VERSION_PART.fullmatch(p) for p in parts):
        raise ValueError(text)
    return tuple(int(p, 16 if hex_parts else 10) for p in parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class MinVersion:
    """A dotted version claim must be at least ``minimum`` (component by component).

    Attributes:
        claim: e.g. ``x-nvidia-gpu-driver-version``.
        minimum: e.g. ``"550.90.07"``.
        hex_parts: Compare components as hexadecimal (VBIOS versions such as ``96.00.9F.00.01``).
        scope: ``"gpu"``, ``"overall"`` or ``"cpu"``.
    """

    claim: ClaimPath
    minimum: str
    hex_parts: bool = False
    scope: Scope = "gpu"

    def __post_init__(self) -> None:
        try:
            _version_key(self.minimum, hex_parts=self.hex_parts)
        except ValueError:
            raise UsageError(f"MinVersion: {self.minimum!r} is not a dotted version") from None

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """See :class:`Policy`."""
        floor = _version_key(self.minimum, hex_parts=self.hex_parts)

        def ok(actual: Any) -> bool:
            try:
                return isinstance(actual, str) and _version_key(actual, hex_parts=self.hex_parts) >= floor
            except ValueError:
                return False

        return _claim_failures(
            appraisal,
            self,
            self.claim,
            self.scope,
            expected=f">= {self.minimum}",
            ok=ok,
            suffix=f", below the minimum {self.minimum}",
        )

    def describe(self) -> str:
        """See :class:`Policy`."""
        return f"{_path_text(self.claim)} >= {self.minimum}"


@dataclass(frozen=True, slots=True, kw_only=True)
class MeasurementIndexAllowList:
    """Measurements must match, except at the listed RIM indices (which may mismatch).

    With an empty ``indices`` this is "every measurement matches" (``measres == "success"``).
    Known benign mismatches exist (VBIOS index 9 drift between RIM revisions, gpu-evidence.md §8);
    allow exactly those indices rather than ignoring measurements.

    Attributes:
        indices: RIM indices allowed to mismatch.
    """

    indices: frozenset[int] = field(default_factory=frozenset)

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """See :class:`Policy`."""
        out = []
        for gpu, claims in enumerate(appraisal.gpus):
            if claims.get("measres") == "success":
                continue
            records = claims.get("x-nvidia-mismatch-measurement-records") or []
            bad = sorted(
                int(r["index"])
                for r in records
                if isinstance(r, Mapping) and r.get("index") not in self.indices
            )
            if claims.get("measres") == "fail" and records and not bad:
                continue
            first = next((r for r in records if isinstance(r, Mapping) and r.get("index") in bad), None)
            out.append(
                PolicyFailure(
                    rule=self.describe(),
                    message=(
                        f"measurements differ from the RIMs at indices {bad}"
                        if bad
                        else f"measurement result is {claims.get('measres')!r}"
                    ),
                    gpu=gpu,
                    error=MeasurementMismatch,
                    expected=None if first is None else first.get("goldenValue"),
                    actual=None if first is None else first.get("runtimeValue"),
                    step="(9) measurements",
                    index=None if first is None else f"measurement index {first.get('index')}",
                )
            )
        return tuple(out)

    def describe(self) -> str:
        """See :class:`Policy`."""
        if not self.indices:
            return "every measurement matches its RIM"
        return f"measurements match except indices {sorted(self.indices)}"


def _chain_object(claims: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    value = claims.get(name)
    return value if isinstance(value, Mapping) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class RevocationGood:
    """Every certificate chain's OCSP status must be ``good``.

    Attributes:
        allow_not_checked: Accept ``not-checked`` (revocation deliberately not fetched, e.g. an
            offline run without OCSP responses). The claims still say ``not-checked``.
        allow_reasons: Revocation reasons to tolerate (e.g. ``{"certificateHold"}``); the claims
            still say ``revoked`` with the reason.
        allow_unknown: Accept an OCSP ``unknown`` status.
    """

    allow_not_checked: bool = False
    allow_reasons: frozenset[str] = field(default_factory=frozenset)
    allow_unknown: bool = False

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """See :class:`Policy`."""
        out = []
        for gpu, claims in enumerate(appraisal.gpus):
            for name in CHAIN_CLAIMS:
                chain = _chain_object(claims, name)
                if chain is None:
                    # Claims 2.0 carry no revocation object; the flat *-validated booleans cover it.
                    continue
                status = chain.get("x-nvidia-cert-ocsp-status")
                reason = chain.get("x-nvidia-cert-revocation-reason")
                error: type[Error] | None = None
                if status == "good":
                    continue
                if status == "not-checked" and not self.allow_not_checked:
                    error = CollateralUnavailable
                elif status == "revoked" and reason not in self.allow_reasons:
                    error = CertificateRevoked
                elif status == "unknown" and not self.allow_unknown:
                    error = ChainError
                elif status not in ("not-checked", "revoked", "unknown"):
                    error = PolicyViolation
                if error is not None:
                    out.append(
                        PolicyFailure(
                            rule=self.describe(),
                            message=f"{name} OCSP status is {status!r}"
                            + (f" (reason {reason})" if reason else ""),
                            gpu=gpu,
                            error=error,
                            expected="good",
                            actual=status,
                            step="(5) revocation",
                        )
                    )
        return tuple(out)

    def describe(self) -> str:
        """See :class:`Policy`."""
        extras = []
        if self.allow_not_checked:
            extras.append("not-checked allowed")
        if self.allow_reasons:
            extras.append(f"reasons {sorted(self.allow_reasons)} allowed")
        if self.allow_unknown:
            extras.append("unknown allowed")
        return "certificate revocation status good" + (f" ({', '.join(extras)})" if extras else "")


_CC_MODE = "x-ccai-cc-mode"


def _mode_failures(
    appraisal: Appraisal,
    *,
    rule: str,
    accepted: tuple[str, ...],
    expected: str,
    message: Callable[[Any], str],
) -> tuple[PolicyFailure, ...]:
    """One failure per GPU whose reported CC mode is not ``accepted``.

    Without a reported mode only fully matching production measurements (``measres`` success)
    pass: the RIMs describe firmware booted in CC mode with DevTools off.
    """
    out = []
    for gpu, claims in enumerate(appraisal.gpus):
        mode = claims.get(_CC_MODE)
        if mode in accepted or (mode is None and claims.get("measres") == "success"):
            continue
        out.append(PolicyFailure(rule=rule, message=message(mode), gpu=gpu, expected=expected, actual=mode))
    return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class CcModeOn:
    """The GPU must be in confidential-computing mode.

    The attestation report has no signed CC-mode field (gpu-evidence.md §12.2), so the rule uses
    the mode the platform reported (``x-ccai-cc-mode``: ``on``/``devtools``/``off``) when the
    caller supplied it, and otherwise requires the measurements to match the production RIMs in
    full, since those describe firmware booted in CC mode.
    """

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """See :class:`Policy`."""
        return _mode_failures(
            appraisal,
            rule=self.describe(),
            accepted=("on", "devtools"),
            expected="on",
            message=lambda mode: (
                f"CC mode is {mode!r}"
                if mode is not None
                else "CC mode was not reported and the measurements do not prove it"
            ),
        )

    def describe(self) -> str:
        """See :class:`Policy`."""
        return "CC mode on"


@dataclass(frozen=True, slots=True, kw_only=True)
class DevToolsOff:
    """The GPU must not be in CC DevTools mode (debugging/profiling; not confidential).

    Uses the reported mode when present; without it only fully matching production measurements
    show DevTools is off (DevTools changes measured values). A policy that tolerates mismatching
    indices therefore still fails DevTools evidence.
    """

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """See :class:`Policy`."""
        return _mode_failures(
            appraisal,
            rule=self.describe(),
            accepted=("on", "off"),
            expected="devtools off",
            message=lambda mode: (
                "the GPU is in CC DevTools mode"
                if mode == "devtools"
                else "DevTools mode was not reported and the measurements do not rule it out"
            ),
        )

    def describe(self) -> str:
        """See :class:`Policy`."""
        return "CC DevTools off"


@dataclass(frozen=True, slots=True, kw_only=True)
class NotSimulated:
    """No claim set may say ``x-ccai-simulated: true`` (evidence from ccai's virtual hardware),
    unless the caller accepts simulation by name (:attr:`Appraisal.allow_simulated`)."""

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """See :class:`Policy`."""
        if appraisal.allow_simulated:
            return ()
        sets: list[tuple[str, Mapping[str, Any], int | None]] = [("overall claims", appraisal.overall, None)]
        sets += [(f"GPU-{i}", c, i) for i, c in enumerate(appraisal.gpus)]
        sets += [(f"SWITCH-{i}", c, None) for i, c in enumerate(appraisal.switches)]
        if appraisal.cpu is not None:
            sets.append(("CPU claims", appraisal.cpu, None))
        for where, claims, gpu in sets:
            if claims.get(_SIMULATED) is True:
                return (
                    PolicyFailure(
                        rule=self.describe(),
                        message=("" if gpu is not None else f"{where}: ")
                        + f"evidence from ccai's virtual hardware ({_SIMULATED}: true)",
                        gpu=gpu,
                        error=SimulatedEvidenceRejected,
                        expected=False,
                        actual=True,
                        cpu=where == "CPU claims",
                        hint="allow simulation by name (allow_simulated=True, CLI --allow-simulated, "
                        'or "allow_simulated": true in a development policy file)',
                    ),
                )
        return ()

    def describe(self) -> str:
        """See :class:`Policy`."""
        return "not simulated"


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuCount:
    """Exactly ``count`` GPUs.

    Attributes:
        count: The number of GPUs the deployment has (0 = CPU only; see :class:`CpuOnly`).
    """

    count: int

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0:
            raise UsageError(f"GpuCount: {self.count!r} is not a GPU count")

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """See :class:`Policy`."""
        if len(appraisal.gpus) == self.count:
            return ()
        return (
            PolicyFailure(
                rule=self.describe(),
                message=f"the evidence covers {len(appraisal.gpus)} GPU(s), the policy requires {self.count}",
                expected=self.count,
                actual=len(appraisal.gpus),
            ),
        )

    def describe(self) -> str:
        """See :class:`Policy`."""
        return f"exactly {self.count} GPU(s)"


@dataclass(frozen=True, slots=True, kw_only=True)
class MinGpus:
    """At least ``minimum`` GPUs (the default composite policy requires one).

    Attributes:
        minimum: The fewest GPUs accepted.
    """

    minimum: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.minimum, bool) or not isinstance(self.minimum, int) or self.minimum < 0:
            raise UsageError(f"MinGpus: {self.minimum!r} is not a GPU count")

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """See :class:`Policy`."""
        if len(appraisal.gpus) >= self.minimum:
            return ()
        return (
            PolicyFailure(
                rule=self.describe(),
                message=f"the evidence covers {len(appraisal.gpus)} GPU(s), the policy requires at least "
                f"{self.minimum}"
                + (
                    " (a CPU-only deployment must say so: CpuOnly, allow_no_gpus)"
                    if not appraisal.gpus
                    else ""
                ),
                expected=f">= {self.minimum}",
                actual=len(appraisal.gpus),
            ),
        )

    def describe(self) -> str:
        """See :class:`Policy`."""
        return f"at least {self.minimum} GPU(s)"


@dataclass(frozen=True, slots=True, kw_only=True)
class DistinctGpus:
    """Every GPU is a different device: the ``ueid`` claims (device certificate serial numbers)
    are present and pairwise distinct, so one GPU's evidence cannot be counted twice."""

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """See :class:`Policy`."""
        seen: dict[str, int] = {}
        for gpu, claims in enumerate(appraisal.gpus):
            ueid = claims.get("ueid")
            if not isinstance(ueid, str) or not ueid:
                return (PolicyFailure(rule=self.describe(), message="claim ueid is absent", gpu=gpu),)
            if ueid in seen:
                return (
                    PolicyFailure(
                        rule=self.describe(),
                        message=f"the same device as GPU-{seen[ueid]} (ueid {ueid})",
                        gpu=gpu,
                        expected="a ueid no other GPU has",
                        actual=ueid,
                    ),
                )
            seen[ueid] = gpu
        return ()

    def describe(self) -> str:
        """See :class:`Policy`."""
        return "distinct GPUs"


@dataclass(frozen=True, slots=True, kw_only=True)
class CpuOnly:
    """A CPU-only deployment: CPU TEE claims and no GPU at all."""

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """See :class:`Policy`."""
        if appraisal.cpu is None:
            return no_cpu_claims(self)
        return GpuCount(count=0).evaluate(appraisal)

    def describe(self) -> str:
        """See :class:`Policy`."""
        return "CPU only (no GPUs)"


@dataclass(frozen=True, slots=True, kw_only=True)
class UnsafeAcceptAnything:
    """Accepts every claim set. **Unsafe**: only for inspecting evidence, never to gate secrets.

    Every evaluation logs a warning on the ``ccai.verify.policy`` logger.
    """

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """See :class:`Policy` (always passes)."""
        del appraisal
        logger.warning("UnsafeAcceptAnything: claims accepted without any check")
        return ()

    def describe(self) -> str:
        """See :class:`Policy`."""
        return "UNSAFE: accept anything"


@dataclass(frozen=True, slots=True)
class _DeferredAppraisal:
    """Marks a sub-verification whose appraisal the caller runs itself, over all claims at once
    (:func:`ccai.verify.verify_composite`). Never exported."""

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """Not called: the verifiers skip their appraisal when given this object."""
        raise UsageError("a deferred appraisal must not be evaluated")  # pragma: no cover

    def describe(self) -> str:
        """See :class:`Policy`."""
        return "appraisal deferred to the caller"


#: Passed by verify_composite to the CPU and GPU verifiers: run the evidence checks only.
DEFER_APPRAISAL: Policy = _DeferredAppraisal()


def default_policy(
    *,
    allow_unchecked_revocation: bool = False,
    allowed_mismatch_indices: Sequence[int] = (),
    allowed_revocation_reasons: Sequence[str] = (),
    allow_simulated: bool = False,
) -> AllOf:
    """ccai's default GPU appraisal: revocation good, measurements match, CC on, DevTools off,
    distinct GPUs (the same device's evidence listed twice does not count as two GPUs), and not
    simulated.

    Args:
        allow_unchecked_revocation: Accept chains whose revocation was not checked (offline).
        allowed_mismatch_indices: RIM indices that may mismatch (e.g. ``[9]``).
        allowed_revocation_reasons: Revocation reasons to tolerate (e.g. ``["certificateHold"]``).
        allow_simulated: Leave out :class:`NotSimulated` (development policies). A caller can also
            accept simulation per appraisal (:attr:`Appraisal.allow_simulated`).

    Returns:
        The policy, as an :class:`AllOf` in the order failures are reported.
    """
    rules: tuple[Policy, ...] = (
        RevocationGood(
            allow_not_checked=allow_unchecked_revocation,
            allow_reasons=frozenset(allowed_revocation_reasons),
        ),
        MeasurementIndexAllowList(indices=frozenset(allowed_mismatch_indices)),
        CcModeOn(),
        DevToolsOff(),
        DistinctGpus(),
    )
    return AllOf(policies=rules if allow_simulated else (*rules, NotSimulated()))
