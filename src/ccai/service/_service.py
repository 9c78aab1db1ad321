"""The attestation service's business logic: verify → token → audit (no SQL, no HTTP types).

Routes translate HTTP into calls of :class:`AttestationService` and its results back; the checks
themselves are the library's :class:`~ccai.verify.Verifier` (one per app, reused, holding the
caches), the tokens :func:`~ccai.token.issue_token` / :func:`~ccai.token.issue_failure_token`.

Verdicts: only :class:`~ccai.verify.VerifiedEvidence` yields a passing token. A verification or
evidence error yields a *failed* token (NRAS's behaviour, HTTP 200). Collateral that cannot be had
is raised as :class:`~ccai.errors.CollateralError` (the edge answers 503) — never a verdict.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import anyio.to_thread

from ccai._time import utcnow
from ccai.errors import Error, EvidenceError, NonceMismatch, UsageError, VerificationError
from ccai.evidence import EvidenceBundle, GpuEvidence, load_evidence_bundle
from ccai.service._keys import KeyRing
from ccai.service._metrics import Metrics
from ccai.service._repository import AuditEntry, Repository, StoredPolicy
from ccai.token import DetachedEat, issue_failure_token, issue_token
from ccai.verify import Policy, StepResult, VerifiedEvidence, Verifier, load_policy

__all__ = ["AppraisalOutcome", "AttestationService", "GpuRequest", "PolicyNotFound", "outcome_json"]

_T = TypeVar("_T")


class PolicyNotFound(UsageError):
    """A request named a policy the service does not hold."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuRequest:
    """An NRAS-style GPU or NVSwitch attestation request, decoded (nothing verified yet).

    Attributes:
        nonce: The caller's 32-byte nonce.
        evidence: One item per GPU (``/attest/gpu``) or per NVSwitch (``/attest/switch``).
        claims_version: ``"3.0"`` (v4) or ``"2.0"`` (v3).
        policy: A named policy, or None for the service's default.
        digest: SHA-256 hex of the request body (the audit record's evidence digest).
    """

    nonce: bytes
    evidence: tuple[GpuEvidence, ...]
    claims_version: str
    policy: str | None
    digest: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AppraisalOutcome:
    """What an appraisal produced: the token, the verdict, per-step results and any error."""

    eat: DetachedEat
    result: bool
    jti: str
    steps: tuple[StepResult, ...]
    error: Error | None
    policy: StoredPolicy | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _jti(eat: DetachedEat) -> str:
    """The overall token's ``jti`` (read back from the JWT the service just signed)."""
    import base64
    import json

    payload = eat.overall.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["jti"])


def _ran_on_test_pki(error: Error) -> bool:
    """Whether the failed appraisal had authenticated the evidence against ccai's test PKI.

    The checklists name a simulated root in the detail of the step that passed it; a failure token
    of such evidence is signed with the development key, like a passing one would be.
    """
    return any(s.status == "ok" and "simulated" in s.detail.lower() for s in error.steps)


class AttestationService:
    """Verify → token → audit, for the NRAS-compatible and the composite API.

    Args:
        verifier: The app's verifier (its caches and collateral sources are shared by requests).
        repo: The repository.
        keys: The signing-key ring.
        metrics: The app's metrics.
        issuer: ``iss`` of issued tokens.
        nonce_ttl: Default lifetime of issued nonces.
        make_verifier: Builds a verifier with another policy (sharing sources and caches).
    """

    def __init__(
        self,
        *,
        verifier: Verifier,
        repo: Repository,
        keys: KeyRing,
        metrics: Metrics,
        issuer: str,
        nonce_ttl: timedelta,
        make_verifier: Callable[[Policy], Verifier],
    ) -> None:
        self.verifier = verifier
        self.repo = repo
        self.keys = keys
        self.metrics = metrics
        self.issuer = issuer
        self.nonce_ttl = nonce_ttl
        self._make_verifier = make_verifier
        self._by_policy: dict[tuple[str, int, str], Verifier] = {}
        self._lock = threading.Lock()

    # -- policies -----------------------------------------------------------------------------------

    async def _verifier(self, name: str | None, part: str) -> tuple[Verifier, StoredPolicy | None]:
        if name is None:
            return self.verifier, None
        stored = await self.repo.get_policy(name)
        if stored is None:
            raise PolicyNotFound(f"no policy named {name!r}", actual=name)
        key = (stored.name, stored.version, part)
        with self._lock:
            found = self._by_policy.get(key)
        if found is None:
            policy = load_policy(stored.document, part=part, name=f"{name} v{stored.version}")  # type: ignore[arg-type]
            found = self._make_verifier(policy)
            with self._lock:
                self._by_policy[key] = found
        return found, stored

    async def put_policy(self, name: str, document: str) -> StoredPolicy:
        """Check that ``document`` loads as a policy, then store it as the next version of ``name``.

        Raises:
            UsageError: not a valid policy.
        """
        load_policy(document, name=name)
        return await self.repo.put_policy(name, document, now=utcnow())

    # -- nonces -------------------------------------------------------------------------------------

    async def issue_nonce(self, ttl: timedelta | None = None) -> tuple[bytes, datetime]:
        """A fresh single-use 32-byte challenge and its expiry (stored, so replicas agree)."""
        now = utcnow()
        lifetime = min(ttl, self.nonce_ttl) if ttl is not None else self.nonce_ttl
        nonce = secrets.token_bytes(32)
        expires = now + lifetime
        await self.repo.add_nonce(nonce.hex(), now=now, expires_at=expires)
        return nonce, expires

    # -- appraisals ---------------------------------------------------------------------------------

    async def _finish(
        self,
        *,
        endpoint: str,
        verified: VerifiedEvidence | None,
        error: Error | None,
        nonce: bytes,
        gpu_count: int,
        cpu: bool,
        claims_version: str,
        switch_count: int = 0,
        digest: str,
        policy: StoredPolicy | None,
        caller: str | None,
        request_id: str,
    ) -> AppraisalOutcome:
        await self.keys.maybe_reload()
        now = utcnow()
        if verified is not None:
            eat = issue_token(
                verified,
                signing_key=self.keys.signer,
                development_key=self.keys.development_signer,
                now=now,
                issuer=self.issuer,
            )
            steps = verified.steps
        else:
            assert error is not None
            simulated = self.verifier.allow_simulated and _ran_on_test_pki(error)
            eat = issue_failure_token(
                error,
                nonce=nonce,
                signing_key=self.keys.signer,
                development_key=self.keys.development_signer,
                simulated=simulated,
                now=now,
                gpu_count=gpu_count,
                switch_count=switch_count,
                cpu=cpu,
                claims_version=claims_version,
                issuer=self.issuer,
            )
            steps = tuple(error.steps)
        jti = _jti(eat)
        failed = next((s.step for s in steps if s.status == "failed"), error.step if error else None)
        # The audit record is committed before the answer leaves: no completed appraisal is lost.
        await self.repo.add_audit(
            AuditEntry(
                at=now,
                request_id=request_id,
                endpoint=endpoint,
                api_key_id=caller,
                evidence_sha256=digest,
                policy_name=policy.name if policy else None,
                policy_version=policy.version if policy else None,
                verdict=verified is not None,
                jti=jti,
                failed_step=failed,
                error=f"{type(error).__name__}: {error.message}" if error is not None else None,
            )
        )
        self.metrics.verdicts.labels(endpoint, "pass" if verified is not None else "fail").inc()
        return AppraisalOutcome(
            eat=eat, result=verified is not None, jti=jti, steps=steps, error=error, policy=policy
        )

    @staticmethod
    async def _run(call: Callable[[], _T]) -> _T:
        # Verification is CPU-bound: run it off the event loop.
        return await anyio.to_thread.run_sync(call)

    async def attest_gpu(
        self, request: GpuRequest, *, endpoint: str, caller: str | None, request_id: str
    ) -> AppraisalOutcome:
        """Verify GPU evidence and issue a token (failed verification → a failed token).

        Raises:
            CollateralError: collateral for genuine-looking evidence is unavailable.
            PolicyNotFound: an unknown policy name.
            UsageError: bad arguments (for example a nonce of the wrong size).
        """
        return await self._attest_devices(
            request, endpoint=endpoint, caller=caller, request_id=request_id, switch=False
        )

    async def attest_switch(
        self, request: GpuRequest, *, endpoint: str, caller: str | None, request_id: str
    ) -> AppraisalOutcome:
        """Verify NVSwitch (LS10) evidence and issue a token with ``SWITCH-<i>`` submodules.

        A named policy is judged by its NVSwitch rules (its ``ppcie`` section; ``part="switch"``);
        without one, the verifier's :func:`~ccai.verify.default_switch_policy`. A failed
        verification yields a failed token with one failed ``SWITCH-<i>`` submodule per item.

        Raises:
            CollateralError: collateral for genuine-looking evidence is unavailable.
            PolicyNotFound: an unknown policy name.
            UsageError: bad arguments, or a named policy without NVSwitch rules.
        """
        return await self._attest_devices(
            request, endpoint=endpoint, caller=caller, request_id=request_id, switch=True
        )

    async def _attest_devices(
        self, request: GpuRequest, *, endpoint: str, caller: str | None, request_id: str, switch: bool
    ) -> AppraisalOutcome:
        verifier, policy = await self._verifier(request.policy, "switch" if switch else "gpu")
        verify = verifier.verify_switch if switch else verifier.verify_gpu
        verified: VerifiedEvidence | None = None
        error: Error | None = None
        try:
            verified = await self._run(
                lambda: verify(request.evidence, nonce=request.nonce, claims_version=request.claims_version)
            )
        except (EvidenceError, VerificationError) as exc:
            error = exc
        count = len(request.evidence)
        return await self._finish(
            endpoint=endpoint,
            verified=verified,
            error=error,
            nonce=request.nonce,
            gpu_count=0 if switch else count,
            switch_count=count if switch else 0,
            cpu=False,
            claims_version=request.claims_version,
            digest=request.digest,
            policy=policy,
            caller=caller,
            request_id=request_id,
        )

    async def attest_bundle(
        self, data: bytes, *, policy_name: str | None, caller: str | None, request_id: str
    ) -> AppraisalOutcome:
        """Verify a composite evidence bundle bound to a live nonce this service issued.

        The nonce is consumed (atomically, across replicas) before verification: a replayed,
        expired or unknown nonce is a failed appraisal (``NonceMismatch``).

        Raises:
            EvidenceError: the bundle is not a ccai evidence bundle (the edge answers 400).
            CollateralError: collateral is unavailable.
            PolicyNotFound: an unknown policy name.
        """
        bundle: EvidenceBundle = load_evidence_bundle(data)
        verifier, policy = await self._verifier(policy_name, "all")
        digest = hashlib.sha256(data).hexdigest()
        verified: VerifiedEvidence | None = None
        error: Error | None = None
        if not await self.repo.consume_nonce(bundle.nonce.hex(), now=utcnow()):
            error = NonceMismatch(
                "the bundle's nonce is not a live nonce of this service (unknown, expired or already used)",
                step="nonce",
                actual=bundle.nonce.hex(),
                hint="POST /v1/nonce for a fresh challenge and collect new evidence",
            )
        else:
            try:
                verified = await self._run(
                    lambda: verifier.verify_bundle(bundle, expected_nonce=bundle.nonce)
                )
            except (EvidenceError, VerificationError) as exc:
                error = exc
        return await self._finish(
            endpoint="/v1/attest",
            verified=verified,
            error=error,
            nonce=bundle.nonce,
            gpu_count=len(bundle.gpus),
            switch_count=len(bundle.switches),
            cpu=bundle.cpu is not None,
            claims_version="3.0",
            digest=digest,
            policy=policy,
            caller=caller,
            request_id=request_id,
        )

    def jwks(self) -> dict[str, Any]:
        """The published keys."""
        return self.keys.jwks()


def outcome_json(outcome: AppraisalOutcome) -> dict[str, Any]:
    """The composite API's answer: token, result, steps, error."""
    return {
        "token": outcome.eat.to_json(),
        "result": outcome.result,
        "steps": [{"step": s.step, "status": s.status, "detail": s.detail} for s in outcome.steps],
        "error": outcome.error.context() if outcome.error is not None else None,
        "policy": (
            {"name": outcome.policy.name, "version": outcome.policy.version} if outcome.policy else None
        ),
    }
