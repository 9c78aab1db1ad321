"""NVIDIA's JSON appraisal policies (``authorization-rules``), as the Attestation SDK evaluates them.

Shape (gpu-evidence.md §12.1; examples in nvtrust ``attestation_sdk/tests/policies``)::

    {"version": "…",
     "authorization-rules": {
        "type": "JWT",
        "overall-claims":  {"x-nvidia-overall-att-result": true, …},
        "detached-claims": {"measres": "success", "x-nvidia-gpu-arch-check": true, …}}}

Semantics, as NVIDIA's ``validate_token`` implements them:

* ``type`` must be ``"JWT"`` (the first element of the detached EAT);
* every key of ``overall-claims`` must exist in the overall claims with an equal value;
* every key of ``detached-claims`` must exist in **every** GPU's claims with an equal value;
* nested objects are compared recursively with the same rule (keys the policy names must exist
  and be equal; extra claims are ignored);
* ``version`` is not interpreted.

Claims that only exist inside a token (``iss``, ``iat``, ``nbf``, ``exp``, ``jti``, ``sub``) are
not available when a policy is applied during verification, before any token is issued. With
``defer_token_claims=True`` (the verifier's use) such keys are skipped when absent, and checked
when present; evaluate decoded token claims with ``defer_token_claims=False`` for NVIDIA's exact
behaviour. NRAS v1 policies (flat rules without ``type``) are refused.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ccai._json import load_json
from ccai.errors import UsageError
from ccai.verify._policy import Appraisal, PolicyFailure

__all__ = ["TOKEN_ONLY_CLAIMS", "NvidiaJsonPolicy", "load_nvidia_policy"]

#: Claims that a token issuer adds; they are not part of the verifier's claims.
TOKEN_ONLY_CLAIMS = frozenset({"iss", "iat", "nbf", "exp", "jti", "sub"})


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _equal(required: Any, actual: Any) -> bool:
    if isinstance(required, Mapping):
        return isinstance(actual, Mapping) and all(
            k in actual and _equal(v, actual[k]) for k, v in required.items()
        )
    if isinstance(required, tuple):
        return (
            isinstance(actual, list | tuple)
            and len(actual) == len(required)
            and all(_equal(r, a) for r, a in zip(required, actual, strict=True))
        )
    # JSON's true == 1 in Python; NVIDIA's policies compare JSON values, so keep bool distinct.
    if isinstance(required, bool) or isinstance(actual, bool):
        return type(required) is type(actual) and required == actual
    return bool(required == actual)


@dataclass(frozen=True, slots=True, kw_only=True)
class NvidiaJsonPolicy:
    """A loaded NVIDIA ``authorization-rules`` policy.

    Attributes:
        overall_claims: Required overall claims.
        detached_claims: Required per-GPU claims.
        rules_type: The ``type`` field of the rules (always ``"JWT"``).
        version: The file's ``version`` (informational).
        name: Where the policy came from, for messages.
        defer_token_claims: Skip absent token-only claims (``iss``, ``exp`` …); see the module doc.
    """

    overall_claims: Mapping[str, Any]
    detached_claims: Mapping[str, Any]
    rules_type: str = "JWT"
    version: str | None = None
    name: str = "NVIDIA JSON policy"
    defer_token_claims: bool = True

    def _check(
        self, required: Mapping[str, Any], claims: Mapping[str, Any], gpu: int | None
    ) -> list[PolicyFailure]:
        out = []
        for key, value in required.items():
            if key not in claims:
                if self.defer_token_claims and key in TOKEN_ONLY_CLAIMS:
                    continue
                out.append(
                    PolicyFailure(
                        rule=self.describe(), message=f"claim {key} is absent", gpu=gpu, expected=_thaw(value)
                    )
                )
            elif not _equal(value, claims[key]):
                out.append(
                    PolicyFailure(
                        rule=self.describe(),
                        message=f"claim {key} is {claims[key]!r}",
                        gpu=gpu,
                        expected=_thaw(value),
                        actual=claims[key],
                    )
                )
        return out

    def evaluate(self, appraisal: Appraisal) -> tuple[PolicyFailure, ...]:
        """See :class:`ccai.verify.Policy`."""
        failures = self._check(self.overall_claims, appraisal.overall, None)
        if self.detached_claims and not appraisal.gpus:
            failures.append(PolicyFailure(rule=self.describe(), message="no per-GPU claims to check"))
        for gpu, claims in enumerate(appraisal.gpus):
            failures += self._check(self.detached_claims, claims, gpu)
        return tuple(failures)

    def describe(self) -> str:
        """See :class:`ccai.verify.Policy`."""
        return f"{self.name} ({len(self.overall_claims)} overall, {len(self.detached_claims)} per-GPU claims)"


def load_nvidia_policy(
    source: bytes | str | Path | Mapping[str, Any],
    *,
    defer_token_claims: bool = True,
    name: str | None = None,
) -> NvidiaJsonPolicy:
    """Load an NVIDIA JSON appraisal policy.

    Args:
        source: A path (:class:`~pathlib.Path`, or a ``str`` that does not start with ``{``),
            the JSON text/bytes, or the already-decoded object.
        defer_token_claims: See :class:`NvidiaJsonPolicy`.
        name: What to call the policy in messages (default: the file name).

    Returns:
        The policy.

    Raises:
        UsageError: unreadable file, not JSON, or not an ``authorization-rules`` policy of type JWT.
    """
    label = name or "NVIDIA JSON policy"
    if isinstance(source, str) and not source.lstrip().startswith("{"):
        source = Path(source)
    if isinstance(source, Path):
        label = name or source.name
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read policy {source}: {exc.strerror}") from None
        source = data
    if isinstance(source, bytes | str):
        doc: Any = load_json(source, what=f"policy {label}", error=UsageError)
    else:
        doc = copy.deepcopy(dict(source))
    if not isinstance(doc, dict) or not isinstance(doc.get("authorization-rules"), dict):
        raise UsageError(f"policy {label} has no 'authorization-rules' object")
    rules = doc["authorization-rules"]
    if "type" not in rules:
        raise UsageError(
            f"policy {label} is an NRAS v1 policy (flat rules without 'type'); it is not supported",
            hint="use a v2+ policy with overall-claims and detached-claims",
        )
    if rules["type"] != "JWT":
        raise UsageError(f"policy {label}: type must be 'JWT'", expected="JWT", actual=rules["type"])
    overall = rules.get("overall-claims", {})
    detached = rules.get("detached-claims", {})
    if not isinstance(overall, dict) or not isinstance(detached, dict):
        raise UsageError(f"policy {label}: overall-claims and detached-claims must be objects")
    unknown = sorted(set(rules) - {"type", "overall-claims", "detached-claims"})
    if unknown:
        raise UsageError(f"policy {label}: unknown keys in authorization-rules: {', '.join(unknown)}")
    if not overall and not detached:
        raise UsageError(f"policy {label} requires no claims at all; refusing an accept-anything policy")
    version = doc.get("version")
    return NvidiaJsonPolicy(
        overall_claims=_freeze(overall),
        detached_claims=_freeze(detached),
        version=str(version) if version is not None else None,
        name=label,
        defer_token_claims=defer_token_claims,
    )
