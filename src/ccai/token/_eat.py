"""Detached EAT tokens in NRAS's shape (gpu-evidence.md §10), signed ES384.

A detached EAT is the JSON array ``[["JWT", <overall JWT>], {"GPU-0": <JWT>, …}]``. The overall JWT
names each submodule by digest — ``"submods": {"GPU-0": ["DIGEST", ["SHA-256", <hex>]]}`` where
``<hex>`` is the SHA-256 of the submodule's JWT *string*, exactly as NRAS computes it (checked
against NVIDIA's real EAT vector). NVIDIA's local tools label the digest ``"SHA256"``; verification
accepts both labels.

:func:`issue_token` accepts only a :class:`~ccai.verify.VerifiedEvidence` (the verifier's own
result type), so nothing unverified can be turned into a token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from ccai.errors import TokenError, UsageError
from ccai.token._jws import sign_es384, verify_es384
from ccai.token._keys import TokenSigner, keys_from_jwks
from ccai.verify._result import VerifiedEvidence

__all__ = [
    "DEFAULT_ISSUER",
    "DEFAULT_LIFETIME",
    "DetachedEat",
    "VerifiedToken",
    "issue_token",
    "parse_detached_eat",
    "submod_digest",
    "verify_submod_digests",
    "verify_token",
]

#: ``iss`` of tokens issued by ccai's local verifier (NVAT uses ``NVAT-LOCAL-VERIFIER``).
DEFAULT_ISSUER = "CCAI-LOCAL-VERIFIER"
#: Token lifetime (NRAS: exp = iat + 3600).
DEFAULT_LIFETIME = timedelta(hours=1)
_SUBJECT = "NVIDIA-PLATFORM-ATTESTATION"
_DIGEST_LABELS = ("SHA-256", "SHA256")
_DEFAULT_LEEWAY = timedelta(seconds=60)


@dataclass(frozen=True, slots=True, kw_only=True)
class DetachedEat:
    """A detached EAT: the overall JWT and the per-device JWTs it commits to by digest.

    Attributes:
        overall: The overall JWT (compact JWS).
        submods: Submodule name (``GPU-0`` …) → JWT.
    """

    overall: str
    submods: Mapping[str, str]

    def to_json(self) -> list[Any]:
        """The NRAS wire form ``[["JWT", overall], {name: jwt, …}]`` (JSON-serialisable)."""
        return [["JWT", self.overall], dict(self.submods)]

    def dumps(self) -> str:
        """The wire form as a JSON string."""
        return json.dumps(self.to_json())


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedToken:
    """The claims of a detached EAT whose signatures, digests, nonce and times all checked out.

    Attributes:
        overall: Claims of the overall JWT.
        submods: Submodule name → its claims.
    """

    overall: Mapping[str, Any]
    submods: Mapping[str, Mapping[str, Any]]


def submod_digest(jwt: str) -> str:
    """The hex SHA-256 of a submodule JWT string, as NRAS puts it in ``submods``."""
    return hashlib.sha256(jwt.encode("ascii")).hexdigest()


def parse_detached_eat(data: str | bytes | list[Any]) -> DetachedEat:
    """Parse the wire form of a detached EAT (JSON text or the decoded list).

    Raises:
        TokenError: not ``[["JWT", str], {str: str}]``.
    """
    value: Any = data
    if isinstance(data, str | bytes):
        try:
            value = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise TokenError("detached EAT is not JSON") from None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not isinstance(value[0], list)
        or len(value[0]) != 2
        or value[0][0] != "JWT"
        or not isinstance(value[0][1], str)
        or not isinstance(value[1], dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in value[1].items())
    ):
        raise TokenError('detached EAT must be [["JWT", <overall>], {<name>: <jwt>, ...}]')
    return DetachedEat(overall=value[0][1], submods=dict(value[1]))


def _signer(signing_key: TokenSigner | ec.EllipticCurvePrivateKey, kid: str | None) -> TokenSigner:
    if isinstance(signing_key, TokenSigner):
        return (
            signing_key
            if kid is None or kid == signing_key.kid
            else TokenSigner(signing_key.private_key, kid=kid)
        )
    if kid is None:
        return TokenSigner(signing_key)
    return TokenSigner(signing_key, kid=kid)


def issue_token(
    verified: VerifiedEvidence,
    *,
    signing_key: TokenSigner | ec.EllipticCurvePrivateKey,
    now: datetime,
    kid: str | None = None,
    issuer: str = DEFAULT_ISSUER,
    lifetime: timedelta = DEFAULT_LIFETIME,
) -> DetachedEat:
    """Issue an ES384-signed detached EAT for verified evidence.

    Each GPU becomes a submodule ``GPU-<index>`` whose JWT carries that GPU's claims plus ``iss``,
    ``iat``, ``nbf``, ``exp``, ``jti`` and ``eat_nonce``; the CPU claims, when present, become
    ``CPU-0``. The overall JWT carries ``sub``, ``iss``, ``iat``/``nbf``/``exp``, ``jti``,
    ``x-nvidia-ver``, ``x-nvidia-overall-att-result``, ``eat_nonce`` and ``submods``; every JWT of
    simulated evidence carries ``"x-ccai-simulated": true``.

    Args:
        verified: The verifier's result (the only accepted input).
        signing_key: A :class:`TokenSigner` or a P-384 private key.
        now: Issue time (``iat`` = ``nbf``).
        kid: Key id; defaults to the signer's.
        issuer: ``iss``.
        lifetime: ``exp - iat``.

    Returns:
        The detached EAT.

    Raises:
        UsageError: ``verified`` is not a VerifiedEvidence, or the key is not P-384.
    """
    if not isinstance(verified, VerifiedEvidence):
        raise UsageError("issue_token accepts only VerifiedEvidence from ccai.verify")
    if lifetime <= timedelta(0):
        raise UsageError("token lifetime must be positive")
    signer = _signer(signing_key, kid)
    iat = int(now.timestamp())
    exp = int((now + lifetime).timestamp())
    nonce_hex = verified.nonce.hex()

    def registered() -> dict[str, Any]:
        claims: dict[str, Any] = {
            "iss": issuer,
            "iat": iat,
            "nbf": iat,
            "exp": exp,
            "jti": str(uuid.uuid4()),
            "eat_nonce": nonce_hex,
        }
        if verified.simulated:
            claims["x-ccai-simulated"] = True
        return claims

    submods: dict[str, str] = {}
    for gpu in verified.gpus:
        submods[f"GPU-{gpu.index}"] = sign_es384(
            {**gpu.claims, **registered()}, signer.private_key, kid=signer.kid
        )
    if verified.cpu_claims is not None:
        submods["CPU-0"] = sign_es384(
            {**verified.cpu_claims, **registered()}, signer.private_key, kid=signer.kid
        )

    overall: dict[str, Any] = {
        "sub": _SUBJECT,
        "x-nvidia-ver": verified.claims_version,
        "x-nvidia-overall-att-result": True,
        **verified.overall_claims,
        **registered(),
        "submods": {name: ["DIGEST", ["SHA-256", submod_digest(jwt)]] for name, jwt in submods.items()},
    }
    return DetachedEat(overall=sign_es384(overall, signer.private_key, kid=signer.kid), submods=submods)


def _digest_of(entry: Any, name: str) -> str:
    if (
        isinstance(entry, list)
        and len(entry) == 2
        and entry[0] == "DIGEST"
        and isinstance(entry[1], list)
        and len(entry[1]) == 2
        and entry[1][0] in _DIGEST_LABELS
        and isinstance(entry[1][1], str)
    ):
        return entry[1][1]
    raise TokenError("overall token's submod entry is not a SHA-256 digest", index=name, actual=repr(entry))


def verify_submod_digests(eat: DetachedEat, overall_claims: Mapping[str, Any]) -> None:
    """Check that the overall claims commit to exactly the detached JWTs, by SHA-256 digest.

    Raises:
        TokenError: a submodule is missing, extra, or its digest differs.
    """
    committed = overall_claims.get("submods")
    if not isinstance(committed, Mapping):
        raise TokenError("overall token has no submods")
    if set(committed) != set(eat.submods):
        raise TokenError(
            "detached submodules differ from those the overall token names",
            expected=sorted(committed),
            actual=sorted(eat.submods),
        )
    for name, jwt in eat.submods.items():
        expected = _digest_of(committed[name], name)
        actual = submod_digest(jwt)
        if not hmac.compare_digest(expected.lower().encode(), actual.encode()):
            raise TokenError(
                "submodule token does not match its digest", index=name, expected=expected, actual=actual
            )


def _check_times(claims: Mapping[str, Any], *, now: datetime, leeway: timedelta, name: str) -> None:
    ts = now.timestamp()
    margin = leeway.total_seconds()
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise TokenError("token has no numeric exp", index=name)
    if ts > exp + margin:
        raise TokenError("token has expired", index=name, expected=f"now <= {exp}", actual=int(ts))
    nbf = claims.get("nbf")
    if nbf is not None:
        if not isinstance(nbf, int | float) or isinstance(nbf, bool):
            raise TokenError("token nbf is not numeric", index=name)
        if ts < nbf - margin:
            raise TokenError("token is not yet valid", index=name, expected=f"now >= {nbf}", actual=int(ts))


def _check_nonce(claims: Mapping[str, Any], nonce_hex: str, *, name: str, required: bool) -> None:
    value = claims.get("eat_nonce")
    if value is None and not required:
        return
    if not isinstance(value, str) or not hmac.compare_digest(value.lower().encode(), nonce_hex.encode()):
        raise TokenError(
            "token is not bound to this nonce", index=name, expected=nonce_hex, actual=repr(value)
        )


def verify_token(
    eat: DetachedEat | str | bytes | list[Any],
    *,
    jwks: Mapping[str, Any],
    nonce: bytes,
    now: datetime,
    leeway: timedelta = _DEFAULT_LEEWAY,
    issuer: str | None = None,
) -> VerifiedToken:
    """Verify a detached EAT as a relying party and return its claims.

    Checks, in order: (1) the overall JWT's ES384 signature with the JWKS key its ``kid`` names
    (``none``, ``HS256`` and every other algorithm are refused); (2) ``iss`` when ``issuer`` is
    given; (3) ``exp``/``nbf`` with ``leeway``; (4) ``eat_nonce`` equals ``nonce`` (constant time);
    (5) the submodule set and each SHA-256 digest; (6) each submodule JWT's signature, times and
    nonce.

    Args:
        eat: The token (object, JSON text, or decoded list).
        jwks: The issuer's JWKS document.
        nonce: The nonce the relying party sent.
        now: Verification time.
        leeway: Clock tolerance for ``exp``/``nbf``.
        issuer: Required ``iss``, if any.

    Returns:
        The verified claims.

    Raises:
        TokenError: any check fails.
    """
    token = eat if isinstance(eat, DetachedEat) else parse_detached_eat(eat)
    keys = keys_from_jwks(jwks)
    nonce_hex = nonce.hex()
    # (1) overall signature
    overall = verify_es384(token.overall, keys)
    # (2) issuer
    if issuer is not None and overall.get("iss") != issuer:
        raise TokenError("token issuer not accepted", expected=issuer, actual=repr(overall.get("iss")))
    # (3) times, (4) nonce
    _check_times(overall, now=now, leeway=leeway, name="overall")
    _check_nonce(overall, nonce_hex, name="overall", required=True)
    # (5) submodule digests
    verify_submod_digests(token, overall)
    # (6) each submodule
    submods: dict[str, Mapping[str, Any]] = {}
    for name, jwt in token.submods.items():
        claims = verify_es384(jwt, keys)
        _check_times(claims, now=now, leeway=leeway, name=name)
        _check_nonce(claims, nonce_hex, name=name, required=False)
        submods[name] = claims
    return VerifiedToken(overall=overall, submods=submods)
