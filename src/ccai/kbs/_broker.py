"""The key broker's logic (no HTTP): RCAR auth → attest → resource, administration, audit.

Attest checklist (each failure is refused with a named reason and audited):
  (1) session: the cookie names a live challenge, used once (a second use is ``challenge_replayed``);
  (2) runtime-data: ``nonce`` is the challenge, ``tee-pubkey`` a supported JWK;
  (3) commitment: the bundle's bound ``hpke_public_key`` is ``runtime_data_hash(runtime-data)``
      (SHA-384 of its canonical JSON, as Trustee hashes it) — else ``tee_pubkey_not_committed``;
  (4) evidence: the library :class:`~ccai.verify.Verifier` verifies the composite bundle with the
      challenge as expected nonce (chain, signatures, binding of nonce + GPU evidence + bound key,
      measurements, the default composite policy);
  (5) token: an ES384 attestation-result JWT with the verified claims and the tee-pubkey.
Resource checklist: (1) token (bearer, or the session's) signed by this broker and unexpired;
(2) resource exists; (3) the resource's (else its repository's) policy accepts the token's claims —
no policy is a refusal (default deny); (4) the value is opened from its envelope and sealed to the
token's tee-pubkey as a JWE.

Protected-PCIe systems (docs/ppcie.md): a composite bundle with a ``switches`` member is verified
with the PPCIe checks in (4) (every GPU and NVSwitch, PPCIe mode, topology), and the token records
the switches' claims next to ``overall``, ``gpus`` and ``cpu``, so a release policy with a ``ppcie``
section demands them. Trustee's encoding carries GPU evidence only (its NVIDIA attester collects
no NVSwitch evidence), so such a policy refuses a Trustee-encoded guest.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ccai._time import utcnow
from ccai.collateral import CollateralBundle, TdxCollateral, cpu_collateral_from_bundle
from ccai.errors import (
    BindingError,
    Error,
    EvidenceError,
    MalformedEvidence,
    MeasurementMismatch,
    NonceMismatch,
    PolicyViolation,
    UnsupportedEvidence,
    UsageError,
    VerificationError,
)
from ccai.evidence import evidence_bundle_from_json, load_evidence_bundle
from ccai.kbs._jose import (
    PublicTeeKey,
    canonical_json,
    encrypt_jwe_to_key,
    jwk_thumbprint,
    public_key_from_jwk,
    runtime_data_hash,
    sign_jwt,
    verify_jwt,
)
from ccai.kbs._keys import Envelope, FileKeyProvider, KeyProvider, open_value, rewrap, seal_value
from ccai.kbs._models import SigningKeyRow
from ccai.kbs._repository import Repository
from ccai.kbs._trustee import (
    TRUSTEE_BINDING,
    TrusteeEvidence,
    gpu_nonce,
    is_trustee_encoding,
    parse_trustee_evidence,
    primary_report_data,
)
from ccai.verify import (
    COMPOSITE_STEPS,
    Appraisal,
    CpuDebugOff,
    DevToolsOff,
    Policy,
    PpcieMode,
    SwitchesVerified,
    VerifiedEvidence,
    Verifier,
    appraise,
    default_composite_policy,
    default_policy,
    load_policy,
)

__all__ = ["DEVTOOLS_HINT", "Broker", "BrokerRefusal", "check_resource_name", "reason_code", "refusal_reason"]

_NAME = re.compile(r"^[A-Za-z0-9._-]{1,80}/[A-Za-z0-9._-]{1,80}/[A-Za-z0-9._-]{1,80}$")
_SIGNING_NAME = "kbs-signing-key"
_T = TypeVar("_T")


class BrokerRefusal(Exception):
    """A refused request: the HTTP status Trustee would answer, a named reason and a message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


class _Uncommitted(Exception):
    """The evidence does not commit to the request's runtime-data (``tee_pubkey_not_committed``)."""


#: Attest-body member a ccai guest sets to ``true`` when its GPU driver reports CC DevTools mode.
#: Unsigned: it only names a refusal the signed measurements caused (``devtools_on``).
DEVTOOLS_HINT = "x-ccai-devtools"
_DEBUG_RULE = f"policy rule: {CpuDebugOff().describe()}"
_DEVTOOLS_RULE = f"policy rule: {DevToolsOff().describe()}"
_BINDING_STEP = COMPOSITE_STEPS[2]
_PPCIE_MODE_RULE = f"policy rule: {PpcieMode().describe()}"
_PPCIE_TOPOLOGY_RULE = "policy rule: protected-PCIe topology"
_SWITCHES_RULE = f"policy rule: {SwitchesVerified().describe()}"
_NO_SWITCH_CLAIMS = "no NVSwitch claims to judge"


def reason_code(error: BaseException) -> str:
    """``PolicyViolation`` → ``policy_violation``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(error).__name__).lower()


def refusal_reason(error: Error, *, devtools_reported: bool = False) -> str:
    """The named reason of a refusal (the 403 body's ``error`` and the audit record's reason).

    ``debug_tee`` (a debuggable TD / SNP guest), ``devtools_on`` (a GPU in CC DevTools mode: the
    DevTools rule failed on a reported ``devtools`` mode, or the measurements failed on a guest
    whose driver reports DevTools), ``gpu_evidence_not_bound`` (GPU evidence not made for this
    challenge and runtime-data: swapped in from another run), else the error class in snake case
    (``measurement_mismatch``, ``simulated_evidence_rejected``, ``nonce_mismatch`` …).
    A protected-PCIe policy names its refusals ``gpu_not_ppcie`` (a GPU not in PPCIe mode),
    ``ppcie_topology_mismatch`` (a switch missing, an unknown switch PDI, a missing link, wrong
    counts) and ``no_switch_evidence`` (the evidence carries no NVSwitch).
    """
    hint = error.hint or ""
    if _DEBUG_RULE in hint:
        return "debug_tee"
    if isinstance(error, PolicyViolation):
        if _PPCIE_MODE_RULE in hint:
            return "gpu_not_ppcie"
        if _PPCIE_TOPOLOGY_RULE in hint:
            return "ppcie_topology_mismatch"
        if _SWITCHES_RULE in hint and _NO_SWITCH_CLAIMS in error.message:
            return "no_switch_evidence"
    if _DEVTOOLS_RULE in hint and error.actual == "devtools":
        return "devtools_on"
    if devtools_reported and (isinstance(error, MeasurementMismatch) or _DEVTOOLS_RULE in hint):
        return "devtools_on"
    if isinstance(error, BindingError) or (isinstance(error, NonceMismatch) and error.step == _BINDING_STEP):
        return "gpu_evidence_not_bound"
    return reason_code(error)


def check_resource_name(name: str) -> str:
    """``REPO/TYPE/TAG`` (letters, digits, ``._-``).

    Raises:
        UsageError: another shape.
    """
    if not _NAME.fullmatch(name) or ".." in name:
        raise UsageError("a resource is named REPO/TYPE/TAG (letters, digits, . _ -)", actual=name)
    return name


_TOKEN_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class _Token:
    """A verified attestation-result token, remembered until ``exp``."""

    exp: int
    claims: dict[str, Any]
    claims_digest: str | None
    thumbprint: str
    public_key: PublicTeeKey


@dataclass(frozen=True, slots=True)
class _Signer:
    kid: str
    key: ec.EllipticCurvePrivateKey


class Broker:
    """The broker: verifier, repository, master keys and the token-signing key.

    Args:
        verifier: The library verifier (composite; its caches shared by every request).
        repo: The repository.
        keys: The master-key provider.
        allow_simulated: Accept simulated evidence (the verifier must hold test-PKI anchors).
        collateral: An offline collateral bundle (its TDX part serves Trustee-encoded quotes when
            the verifier has no Intel PCS client).
        issuer: ``iss`` of tokens.
        challenge_ttl, token_ttl: Lifetimes.
    """

    def __init__(
        self,
        *,
        verifier: Verifier,
        repo: Repository,
        keys: KeyProvider,
        allow_simulated: bool = False,
        collateral: CollateralBundle | None = None,
        issuer: str = "ccai-kbs",
        challenge_ttl: timedelta = timedelta(minutes=5),
        token_ttl: timedelta = timedelta(minutes=5),
    ) -> None:
        self.verifier, self.repo, self.keys = verifier, repo, keys
        self.allow_simulated, self.issuer, self.collateral = allow_simulated, issuer, collateral
        self.challenge_ttl, self.token_ttl = challenge_ttl, token_ttl
        self._signer: _Signer | None = None
        self._policies: dict[tuple[str, int], Policy] = {}
        self._tokens: dict[bytes, _Token] = {}
        self._verify_slots: asyncio.Semaphore | None = None

    # -- start -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the token-signing key, creating it on the first start."""
        row = await self.repo.signing_key()
        if row is None:
            key = ec.generate_private_key(ec.SECP384R1())
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            env = seal_value(self.keys, _SIGNING_NAME, 1, pem)
            public = key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            row = await self.repo.insert_signing_key(
                SigningKeyRow(
                    id=1,
                    kid=hashlib.sha256(public).hexdigest()[:16],
                    master_key_id=env.master_key_id,
                    wrapped_key=env.wrapped_key,
                    ciphertext=env.ciphertext,
                    public_pem=public.decode(),
                )
            )
        pem = open_value(
            self.keys,
            _SIGNING_NAME,
            1,
            Envelope(master_key_id=row.master_key_id, wrapped_key=row.wrapped_key, ciphertext=row.ciphertext),
        )
        loaded = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise UsageError("the stored signing key is not an EC key")
        self._signer = _Signer(kid=row.kid, key=loaded)

    @property
    def signer(self) -> _Signer:
        if self._signer is None:
            raise UsageError("the broker is not started")
        return self._signer

    # -- audit -----------------------------------------------------------------------------------

    async def _audit(
        self,
        event: str,
        verdict: str,
        reason: str,
        *,
        now: datetime,
        resource: str | None = None,
        claims: Any = None,
        policy: str | None = None,
        claims_digest: str | None = None,
        session_token: tuple[str, str] | None = None,
    ) -> None:
        digest = claims_digest
        if digest is None and claims is not None:
            digest = hashlib.sha256(canonical_json(claims)).hexdigest()
        await self.repo.append_audit(
            {
                "at": now.isoformat(),
                "event": event,
                "resource": resource,
                "claims_digest": digest,
                "policy": policy,
                "verdict": verdict,
                "reason": reason,
            },
            session_token=session_token,
        )

    async def _refuse(
        self, status: int, reason: str, message: str, *, event: str, now: datetime, **kw: Any
    ) -> BrokerRefusal:
        await self._audit(event, "refused", f"{reason}: {message}", now=now, **kw)
        return BrokerRefusal(status, reason, message)

    # -- RCAR ------------------------------------------------------------------------------------

    async def auth(self, body: Mapping[str, Any]) -> tuple[str, str]:
        """RCAR Request → Challenge: a new session id and its base64 32-byte nonce.

        Raises:
            BrokerRefusal: 400 for a malformed request.
        """
        tee = body.get("tee")
        if not isinstance(body.get("version"), str) or not isinstance(tee, str) or len(tee) > 32:
            raise BrokerRefusal(400, "bad_request", "auth needs version and tee strings")
        now = utcnow()
        sid, nonce = secrets.token_urlsafe(24), base64.b64encode(secrets.token_bytes(32)).decode()
        await self.repo.create_session(sid, nonce, tee, now=now, expires=now + self.challenge_ttl)
        return sid, nonce

    async def attest(self, sid: str | None, body: Mapping[str, Any]) -> str:
        """RCAR Attestation → Response: verify the evidence, return the attestation-result token.

        ``tee-evidence`` is a ccai composite bundle, or Trustee's own encoding
        (``{"primary_evidence", "additional_evidence"}``, see :mod:`ccai.kbs._trustee`); both end
        in the same claims, judged by the same policies.

        Raises:
            BrokerRefusal: 401 (no/unknown/expired session), 400 (malformed), 403 (refused).
        """
        now = utcnow()
        # (1) session: a live challenge, single use.
        if not sid:
            raise BrokerRefusal(401, "no_session", "attest needs the kbs-session-id cookie")
        state, nonce_text, tee = await self.repo.consume_challenge(sid, now=now)
        if state == "used":
            raise await self._refuse(
                403, "challenge_replayed", "this challenge was already used", event="attest", now=now
            )
        if state != "ok" or nonce_text is None:
            raise BrokerRefusal(401, f"session_{state}", f"the session is {state}")
        # (2) runtime-data.
        runtime = body.get("runtime-data")
        if not isinstance(runtime, Mapping) or not isinstance(runtime.get("tee-pubkey"), Mapping):
            raise await self._refuse(
                400, "bad_request", "runtime-data with a tee-pubkey is required", event="attest", now=now
            )
        if runtime.get("nonce") != nonce_text:
            raise await self._refuse(
                403,
                "nonce_mismatch",
                "runtime-data.nonce is not this session's challenge",
                event="attest",
                now=now,
            )
        try:
            public_key_from_jwk(runtime["tee-pubkey"])
        except EvidenceError as exc:
            raise await self._refuse(400, "bad_tee_pubkey", exc.message, event="attest", now=now) from None
        # Unsigned, diagnostic only: the guest driver's DevTools flag names a refusal that the
        # signed measurements already caused; it never enters the claims.
        devtools_reported = body.get(DEVTOOLS_HINT) is True
        raw = body.get("tee-evidence")
        try:
            nonce = base64.b64decode(nonce_text)
            if is_trustee_encoding(raw):
                evidence = parse_trustee_evidence(raw, tee=tee or "", runtime=runtime)
                verified = await self._in_verifier(self._verify_trustee, evidence, runtime, now)
            else:
                # A bundle as a JSON string, or (the usual case) the object already decoded
                # strictly with the request body: checked as load_evidence_bundle checks it.
                bundle = (
                    load_evidence_bundle(raw.encode())
                    if isinstance(raw, str)
                    else evidence_bundle_from_json(raw)
                )
                # (3) the bundle's bound key commits to exactly this runtime-data.
                committed = runtime_data_hash(runtime)
                if bundle.hpke_public_key is None or not secrets.compare_digest(
                    bundle.hpke_public_key, committed
                ):
                    raise _Uncommitted("the evidence does not commit to this runtime-data (tee-pubkey)")
                # (4) the library verifier, with the challenge as the expected nonce.
                verified = await self._in_verifier(
                    lambda: self._claims(self.verifier.verify_bundle(bundle, expected_nonce=nonce, now=now))
                )
        except _Uncommitted as exc:
            raise await self._refuse(
                403, "tee_pubkey_not_committed", str(exc), event="attest", now=now
            ) from None
        except (EvidenceError, TypeError, ValueError) as exc:
            if isinstance(exc, EvidenceError) and not isinstance(
                exc, MalformedEvidence | UnsupportedEvidence
            ):
                reason, message = refusal_reason(exc, devtools_reported=devtools_reported), exc.message
                raise await self._refuse(403, reason, message, event="attest", now=now) from None
            message = getattr(exc, "message", str(exc))[:200]
            raise await self._refuse(400, "malformed_evidence", message, event="attest", now=now) from None
        except Error as exc:
            reason = refusal_reason(exc, devtools_reported=devtools_reported)
            raise await self._refuse(403, reason, exc.message, event="attest", now=now) from None
        claims, simulated, tee_name = verified
        # (5) the token binds the tee-pubkey.
        token = sign_jwt(
            {
                "iss": self.issuer,
                "iat": int(now.timestamp()),
                "exp": int((now + self.token_ttl).timestamp()),
                "jti": secrets.token_hex(12),
                "tee": tee_name,
                "tee-pubkey": dict(runtime["tee-pubkey"]),
                "simulated": simulated,
                "ccai-claims": claims,
            },
            self.signer.key,
            kid=self.signer.kid,
        )
        # One transaction: the session's token (the cookie path) and the audit record.
        await self._audit("attest", "pass", "verified", now=now, claims=claims, session_token=(sid, token))
        return token

    async def _in_verifier(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run a verification in a worker thread, at most one per CPU at a time, first come first
        served.

        Verification is CPU-bound Python: more threads than CPUs only time-slice under the GIL,
        which stretches every request and starves the event loop (and the database hops it
        waits on); waiting in order here keeps latency proportional to the queue ahead.
        """
        if self._verify_slots is None:
            self._verify_slots = asyncio.Semaphore(max(1, os.cpu_count() or 1))
        async with self._verify_slots:
            return await asyncio.to_thread(fn, *args)

    @staticmethod
    def _claims(verified: VerifiedEvidence) -> tuple[dict[str, Any], bool, str]:
        """The token's ``ccai-claims`` (JSON-safe), whether simulated, and the CPU TEE."""
        recorded: dict[str, Any] = {
            "overall": dict(verified.overall_claims),
            "gpus": [dict(g.claims) for g in verified.gpus],
            "cpu": dict(verified.cpu_claims) if verified.cpu_claims is not None else None,
        }
        if verified.switches:
            # A protected-PCIe system: the NVSwitches' claims, so a release policy's ``ppcie``
            # section can judge them (its rules fail closed where they are absent).
            recorded["switches"] = [dict(s.claims) for s in verified.switches]
        claims = json.loads(json.dumps(recorded, default=str))
        tee = str(verified.overall_claims.get("x-ccai-cpu-tee") or "gpu")
        return claims, bool(verified.simulated), tee

    def _verify_trustee(
        self, evidence: TrusteeEvidence, runtime: Mapping[str, Any], now: datetime
    ) -> tuple[dict[str, Any], bool, str]:
        """Verify Trustee-encoded evidence into the claims the composite path produces.

        (a) the TDX quote with the library verifier (chain, signature, TCB, TDX rules);
        (b) its report_data is the primary runtime-data commitment (challenge, tee-pubkey and the
            exact additional-evidence string) — else ``tee_pubkey_not_committed``;
        (c) every GPU with the library verifier, the expected SPDM nonce being the first 32 bytes
            of the device runtime-data hash (a GPU report for another nonce: ``gpu_evidence_not_bound``);
        (d) the composite claims, judged by the verifier's composite policy, as for a bundle.
        """
        # (a) CPU evidence.
        tdx_collateral = cpu_collateral_from_bundle(self.collateral, "tdx")
        tdx = self.verifier.verify_tdx(
            evidence.quote,
            now=now,
            collateral=tdx_collateral if isinstance(tdx_collateral, TdxCollateral) else None,
        )
        # (b) commitment.
        expected = primary_report_data(runtime, evidence.additional)
        if not secrets.compare_digest(tdx.quote.body.report_data, expected):
            raise _Uncommitted(
                "the TDX report_data does not commit to this runtime-data (nonce, tee-pubkey) "
                "and additional evidence"
            )
        # (c) GPU evidence.
        nonce = gpu_nonce(runtime)
        gpus: tuple[Any, ...] = ()
        gpu_overall: dict[str, Any] = {}
        gpu_simulated = False
        if evidence.gpus:
            try:
                result = self.verifier.verify_gpu(evidence.gpus, nonce=nonce, now=now)
            except NonceMismatch as exc:
                raise BindingError(
                    f"GPU evidence was not made for this runtime-data: {exc.message}",
                    step=COMPOSITE_STEPS[2],
                    index=exc.index,
                ) from None
            gpus, gpu_overall, gpu_simulated = result.gpus, dict(result.overall_claims), result.simulated
        cpu_claims = {**dict(tdx.claims), "x-ccai-simulated": tdx.simulated}
        overall = {
            **gpu_overall,
            "x-ccai-binding": TRUSTEE_BINDING,
            "x-ccai-freshness": "checked",
            "x-ccai-cpu-tee": "tdx",
            "x-ccai-gpu-nonce": nonce.hex(),
            "x-ccai-tls-spki-sha256": None,
            "x-ccai-hpke-public-key": None,
            "x-ccai-simulated": tdx.simulated or gpu_simulated,
        }
        # (d) one appraisal of every claim, as the composite checklist's step 5.
        policy = self.verifier.policy or default_composite_policy(
            gpu=default_policy(allow_unchecked_revocation=not self.verifier.check_revocation)
        )
        appraise(
            policy,
            Appraisal(
                overall=overall,
                gpus=tuple(g.claims for g in gpus),
                cpu=cpu_claims,
                allow_simulated=self.verifier.allow_simulated,
            ),
        )
        claims = json.loads(
            json.dumps(
                {"overall": overall, "gpus": [dict(g.claims) for g in gpus], "cpu": cpu_claims}, default=str
            )
        )
        return claims, bool(tdx.simulated or gpu_simulated), "tdx"

    def _token_claims(self, token: str, now: datetime) -> _Token:
        """The verified claims of ``token`` (this broker's ES384 signature, unexpired).

        Verified tokens are remembered by their SHA-256 until they expire, so a guest fetching
        several resources (or one resource often) pays for the signature check once; the
        remembered entry also keeps the claims' canonical digest for the audit records.
        """
        key = hashlib.sha256(token.encode()).digest()
        cached = self._tokens.get(key)
        if cached is not None and cached.exp > now.timestamp():
            return cached
        try:
            claims = verify_jwt(token, self.signer.key.public_key())
        except VerificationError as exc:
            raise BrokerRefusal(401, "invalid_token", exc.message) from None
        exp = claims.get("exp")
        if claims.get("iss") != self.issuer or not isinstance(exp, int) or exp <= now.timestamp():
            raise BrokerRefusal(401, "invalid_token", "the token is expired or not for this broker")
        if not isinstance(claims.get("tee-pubkey"), Mapping):
            raise BrokerRefusal(401, "invalid_token", "the token names no tee-pubkey")
        evidence_claims = claims.get("ccai-claims")
        entry = _Token(
            exp=exp,
            claims=claims,
            claims_digest=hashlib.sha256(canonical_json(evidence_claims)).hexdigest()
            if evidence_claims is not None
            else None,
            thumbprint=jwk_thumbprint(claims["tee-pubkey"]),
            public_key=public_key_from_jwk(claims["tee-pubkey"]),  # parsed once per token
        )
        if len(self._tokens) >= _TOKEN_CACHE_SIZE:
            # Drop the expired entries, then (still full) the oldest half: bounded memory.
            live = {k: v for k, v in self._tokens.items() if v.exp > now.timestamp()}
            if len(live) >= _TOKEN_CACHE_SIZE:
                live = dict(list(live.items())[_TOKEN_CACHE_SIZE // 2 :])
            self._tokens = live
        self._tokens[key] = entry
        return entry

    async def resource(self, name: str, *, sid: str | None, bearer: str | None) -> dict[str, str]:
        """RCAR resource phase: the resource as a JWE to the attested tee-pubkey.

        Raises:
            BrokerRefusal: 401, 403 or 404 as Trustee answers them.
        """
        now = utcnow()
        # (1) the token: bearer, else the cookie's session.
        token = bearer or (await self.repo.session_token(sid) if sid else None)
        if not token:
            raise BrokerRefusal(401, "not_attested", "no attested session or bearer token")
        verified = self._token_claims(token, now)
        claims, digest = verified.claims, verified.claims_digest
        evidence_claims = claims.get("ccai-claims")
        # (2) the resource.
        try:
            check_resource_name(name)
        except UsageError:
            raise BrokerRefusal(404, "not_found", "no such resource") from None
        repo_name = name.split("/", 1)[0]
        found, policy_name, stored = await self.repo.release_lookup(
            name, f"resource:{name}", f"repo:{repo_name}"
        )
        if found is None:
            raise await self._refuse(
                404,
                "not_found",
                "no such resource",
                event="release",
                now=now,
                resource=name,
                claims_digest=digest,
            )
        # (3) its policy (default deny).
        if policy_name is None or stored is None:
            raise await self._refuse(
                403,
                "no_policy",
                "no policy guards this resource (default deny)",
                event="release",
                now=now,
                resource=name,
                claims_digest=digest,
            )
        label = f"{policy_name} v{stored[0]}"
        try:
            policy = self._policies.get((policy_name, stored[0]))
            if policy is None:
                policy = load_policy(stored[1], name=label)
                self._policies[(policy_name, stored[0])] = policy
            if not isinstance(evidence_claims, Mapping):
                raise VerificationError("the token carries no claims")
            switches = evidence_claims.get("switches") or ()
            if not isinstance(switches, list | tuple):
                raise VerificationError("the token's switch claims are not a list")
            appraise(
                policy,
                Appraisal.from_claims(
                    overall=evidence_claims.get("overall") or {},
                    gpus=evidence_claims.get("gpus") or (),
                    cpu=evidence_claims.get("cpu"),
                    allow_simulated=self.allow_simulated,
                    switches=switches,
                ),
            )
        except Error as exc:
            raise await self._refuse(
                403,
                refusal_reason(exc),
                exc.message,
                event="release",
                now=now,
                resource=name,
                claims_digest=digest,
                policy=label,
            ) from None
        # (4) open and seal to the tee-pubkey.
        value = open_value(self.keys, name, found[0], found[1])
        jwe = encrypt_jwe_to_key(value, verified.public_key)
        await self._audit(
            "release",
            "pass",
            f"released v{found[0]} to {verified.thumbprint}",
            now=now,
            resource=name,
            claims_digest=digest,
            policy=label,
        )
        return jwe

    # -- administration --------------------------------------------------------------------------

    async def put_resource(self, name: str, value: bytes) -> int:
        """Store ``value`` as the next version of resource ``name``."""
        check_resource_name(name)
        now = utcnow()
        version = await self.repo.put_resource(name, lambda v: seal_value(self.keys, name, v, value), now=now)
        await self._audit("put", "pass", f"stored v{version}", now=now, resource=name)
        return version

    async def set_policy(self, name: str, document: str, *, resource: str | None, repo: str | None) -> int:
        """Store policy ``name`` (checked to load) and bind it to a resource or a repository."""
        if (resource is None) == (repo is None):
            raise UsageError("bind the policy to exactly one of a resource or a repository")
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,128}", name):
            raise UsageError("policy names are letters, digits and . _ -", actual=name)
        load_policy(document, name=name)
        if resource is not None:
            check_resource_name(resource)
        elif repo is not None and not re.fullmatch(r"[A-Za-z0-9._-]{1,80}", repo):
            raise UsageError("repository names are letters, digits and . _ -", actual=repo)
        now = utcnow()
        version = await self.repo.put_policy(name, document, now=now)
        target = f"resource:{resource}" if resource is not None else f"repo:{repo}"
        await self.repo.bind(target, name, now=now)
        await self._audit("policy", "pass", f"{name} v{version} guards {target}", now=now, policy=name)
        return version

    async def show_policy(self, name: str) -> dict[str, Any] | None:
        """The newest version of policy ``name`` and what it guards."""
        stored = await self.repo.get_policy(name)
        if stored is None:
            return None
        guards = sorted(t for t, p in (await self.repo.bindings()).items() if p == name)
        return {"name": name, "version": stored[0], "document": json.loads(stored[1]), "guards": guards}

    async def rotate(self) -> dict[str, Any]:
        """Add a new master key, re-wrap every data key under it (one transaction), retire the old.

        A crash before the transaction commits leaves every row under the old key, which stays in
        the ring; after it, under the new one. Old keys are dropped only once nothing uses them.
        """
        if not isinstance(self.keys, FileKeyProvider):
            raise UsageError("rotation needs the file key provider (rotate an external KMS key there)")
        kid = self.keys.add_key()
        count = await self.repo.rewrap_all(lambda n, v, e: rewrap(self.keys, n, v, e))
        self.keys.retire(await self.repo.master_key_ids())
        await self._audit("rotate", "pass", f"{count} data keys re-wrapped under {kid}", now=utcnow())
        return {"master_key_id": kid, "rewrapped": count}
