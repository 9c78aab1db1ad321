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
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ccai._time import utcnow
from ccai.errors import Error, EvidenceError, UsageError, VerificationError
from ccai.evidence import load_evidence_bundle
from ccai.kbs._jose import (
    canonical_json,
    encrypt_jwe,
    jwk_thumbprint,
    public_key_from_jwk,
    runtime_data_hash,
    sign_jwt,
    verify_jwt,
)
from ccai.kbs._keys import Envelope, FileKeyProvider, KeyProvider, open_value, rewrap, seal_value
from ccai.kbs._models import SigningKeyRow
from ccai.kbs._repository import Repository
from ccai.verify import Appraisal, Policy, Verifier, appraise, load_policy

__all__ = ["Broker", "BrokerRefusal", "check_resource_name", "reason_code"]

_NAME = re.compile(r"^[A-Za-z0-9._-]{1,80}/[A-Za-z0-9._-]{1,80}/[A-Za-z0-9._-]{1,80}$")
_SIGNING_NAME = "kbs-signing-key"


class BrokerRefusal(Exception):
    """A refused request: the HTTP status Trustee would answer, a named reason and a message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


def reason_code(error: BaseException) -> str:
    """``PolicyViolation`` → ``policy_violation``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(error).__name__).lower()


def check_resource_name(name: str) -> str:
    """``REPO/TYPE/TAG`` (letters, digits, ``._-``).

    Raises:
        UsageError: another shape.
    """
    if not _NAME.fullmatch(name) or ".." in name:
        raise UsageError("a resource is named REPO/TYPE/TAG (letters, digits, . _ -)", actual=name)
    return name


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
        issuer: str = "ccai-kbs",
        challenge_ttl: timedelta = timedelta(minutes=5),
        token_ttl: timedelta = timedelta(minutes=5),
    ) -> None:
        self.verifier, self.repo, self.keys = verifier, repo, keys
        self.allow_simulated, self.issuer = allow_simulated, issuer
        self.challenge_ttl, self.token_ttl = challenge_ttl, token_ttl
        self._signer: _Signer | None = None
        self._policies: dict[tuple[str, int], Policy] = {}

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
    ) -> None:
        digest = hashlib.sha256(canonical_json(claims)).hexdigest() if claims is not None else None
        await self.repo.append_audit(
            {
                "at": now.isoformat(),
                "event": event,
                "resource": resource,
                "claims_digest": digest,
                "policy": policy,
                "verdict": verdict,
                "reason": reason,
            }
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

        Raises:
            BrokerRefusal: 401 (no/unknown/expired session), 400 (malformed), 403 (refused).
        """
        now = utcnow()
        # (1) session: a live challenge, single use.
        if not sid:
            raise BrokerRefusal(401, "no_session", "attest needs the kbs-session-id cookie")
        state, nonce_text = await self.repo.consume_challenge(sid, now=now)
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
        raw = body.get("tee-evidence")
        try:
            data = raw.encode() if isinstance(raw, str) else json.dumps(raw).encode()
            bundle = load_evidence_bundle(data)
        except (Error, TypeError, ValueError) as exc:
            raise await self._refuse(
                400, "malformed_evidence", str(exc)[:200], event="attest", now=now
            ) from None
        # (3) the bundle's bound key commits to exactly this runtime-data.
        committed = runtime_data_hash(runtime)
        if bundle.hpke_public_key is None or not secrets.compare_digest(bundle.hpke_public_key, committed):
            raise await self._refuse(
                403,
                "tee_pubkey_not_committed",
                "the evidence does not commit to this runtime-data (tee-pubkey)",
                event="attest",
                now=now,
            )
        # (4) the library verifier, with the challenge as the expected nonce.
        try:
            nonce = base64.b64decode(nonce_text)
            verified = await asyncio.to_thread(
                lambda: self.verifier.verify_bundle(bundle, expected_nonce=nonce)
            )
        except (Error, binascii.Error) as exc:
            message = getattr(exc, "message", str(exc))
            raise await self._refuse(403, reason_code(exc), message, event="attest", now=now) from None
        claims = json.loads(
            json.dumps(
                {
                    "overall": dict(verified.overall_claims),
                    "gpus": [dict(g.claims) for g in verified.gpus],
                    "cpu": dict(verified.cpu_claims) if verified.cpu_claims is not None else None,
                },
                default=str,
            )
        )
        # (5) the token binds the tee-pubkey.
        token = sign_jwt(
            {
                "iss": self.issuer,
                "iat": int(now.timestamp()),
                "exp": int((now + self.token_ttl).timestamp()),
                "jti": secrets.token_hex(12),
                "tee": bundle.cpu.type if bundle.cpu is not None else "gpu",
                "tee-pubkey": dict(runtime["tee-pubkey"]),
                "simulated": bool(getattr(verified, "simulated", False)),
                "ccai-claims": claims,
            },
            self.signer.key,
            kid=self.signer.kid,
        )
        await self.repo.set_token(sid, token)
        await self._audit("attest", "pass", "verified", now=now, claims=claims)
        return token

    async def _token_claims(self, token: str, now: datetime) -> dict[str, Any]:
        try:
            claims = verify_jwt(token, self.signer.key.public_key())
        except VerificationError as exc:
            raise BrokerRefusal(401, "invalid_token", exc.message) from None
        if (
            claims.get("iss") != self.issuer
            or not isinstance(claims.get("exp"), int)
            or claims["exp"] <= now.timestamp()
        ):
            raise BrokerRefusal(401, "invalid_token", "the token is expired or not for this broker")
        return claims

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
        claims = await self._token_claims(token, now)
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
                claims=evidence_claims,
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
                claims=evidence_claims,
            )
        label = f"{policy_name} v{stored[0]}"
        try:
            policy = self._policies.get((policy_name, stored[0]))
            if policy is None:
                policy = load_policy(stored[1], name=label)
                self._policies[(policy_name, stored[0])] = policy
            if not isinstance(evidence_claims, Mapping):
                raise VerificationError("the token carries no claims")
            appraise(
                policy,
                Appraisal.from_claims(
                    overall=evidence_claims.get("overall") or {},
                    gpus=evidence_claims.get("gpus") or (),
                    cpu=evidence_claims.get("cpu"),
                    allow_simulated=self.allow_simulated,
                ),
            )
        except Error as exc:
            raise await self._refuse(
                403,
                reason_code(exc),
                exc.message,
                event="release",
                now=now,
                resource=name,
                claims=evidence_claims,
                policy=label,
            ) from None
        # (4) open and seal to the tee-pubkey.
        value = open_value(self.keys, name, found[0], found[1])
        jwe = encrypt_jwe(value, claims["tee-pubkey"])
        await self._audit(
            "release",
            "pass",
            f"released v{found[0]} to {jwk_thumbprint(claims['tee-pubkey'])}",
            now=now,
            resource=name,
            claims=evidence_claims,
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
