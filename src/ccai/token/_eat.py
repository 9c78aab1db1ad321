"""Detached EAT tokens in NRAS's shape (gpu-evidence.md §10), signed ES384.

A detached EAT is the JSON array ``[["JWT", <overall JWT>], {"GPU-0": <JWT>, …}]``. The overall JWT
names each submodule by digest — ``"submods": {"GPU-0": ["DIGEST", ["SHA-256", <hex>]]}`` where
``<hex>`` is the SHA-256 of the submodule's JWT *string*, exactly as NRAS computes it (checked
against NVIDIA's real EAT vector). NVIDIA's local tools label the digest ``"SHA256"``; verification
accepts both labels.

:func:`issue_token` accepts only a :class:`~ccai.verify.VerifiedEvidence` (the verifier's own
result type), so nothing unverified can be turned into a token. Tokens of simulated evidence are
signed only with a development key (``ccai-dev-`` kid), tokens of real evidence only with a
production key; :func:`verify_token` refuses development-key tokens and ``x-ccai-simulated``
claims with :class:`~ccai.errors.SimulatedEvidenceRejected` unless ``allow_simulated=True``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeGuard

from cryptography.hazmat.primitives.asymmetric import ec

from ccai._json import load_json
from ccai.errors import Error, SimulatedEvidenceRejected, TokenError, UsageError
from ccai.token._jws import sign_es384, unverified_header, verify_es384
from ccai.token._keys import JwksKeys, TokenSigner, is_development_kid, read_jwks
from ccai.token._remote import JwksClient, is_url
from ccai.verify import VerifiedEvidence

__all__ = [
    "DEFAULT_ISSUER",
    "DEFAULT_LIFETIME",
    "DetachedEat",
    "VerifiedToken",
    "issue_failure_token",
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
_SIMULATED = "x-ccai-simulated"
_EAT_DEPTH = 4  # [["JWT", str], {name: str}]
_MAX_TIME = 2**53  # NumericDate bound: beyond it a float comparison would overflow or lose meaning


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
        simulated: The token is signed by a development key or its claims say
            ``x-ccai-simulated`` (only ever true when verified with ``allow_simulated=True``).
    """

    overall: Mapping[str, Any]
    submods: Mapping[str, Mapping[str, Any]]
    simulated: bool = False


def submod_digest(jwt: str) -> str:
    """The hex SHA-256 of a submodule JWT string, as NRAS puts it in ``submods``.

    Raises:
        TokenError: ``jwt`` is not an ASCII string (a compact JWS always is).
    """
    if not isinstance(jwt, str) or not jwt.isascii():
        raise TokenError("submodule token is not an ASCII compact JWS")
    return hashlib.sha256(jwt.encode("ascii")).hexdigest()


def parse_detached_eat(data: str | bytes | list[Any]) -> DetachedEat:
    """Parse the wire form of a detached EAT (JSON text or the decoded list).

    Text is read strictly (UTF-8, depth limit, no duplicate keys); every JWT must be ASCII.

    Raises:
        TokenError: not ``[["JWT", str], {str: str}]``.
    """
    value: Any = data
    if isinstance(data, str | bytes):
        value = load_json(data, what="detached EAT", max_depth=_EAT_DEPTH, error=TokenError)
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
    if not value[0][1].isascii() or not all(v.isascii() for v in value[1].values()):
        raise TokenError("detached EAT holds a token that is not an ASCII compact JWS")
    return DetachedEat(overall=value[0][1], submods=dict(value[1]))


def _signer(
    signing_key: TokenSigner | ec.EllipticCurvePrivateKey,
    development_key: TokenSigner | None,
    kid: str | None,
    *,
    simulated: bool,
) -> TokenSigner:
    """The signer for this evidence: the development key for simulated evidence, the production
    key for real evidence, never the other way round."""
    if development_key is not None and not (
        isinstance(development_key, TokenSigner) and development_key.development
    ):
        raise UsageError("development_key must be a development TokenSigner (development=True)")
    chosen = development_key if simulated and development_key is not None else signing_key
    signer = chosen if isinstance(chosen, TokenSigner) else TokenSigner(chosen)
    if simulated and not signer.development:
        raise UsageError(
            "tokens of simulated evidence are signed only with a development key",
            hint="pass development_key=TokenSigner.load_or_create(development=True)",
        )
    if not simulated and signer.development:
        raise UsageError("a development key never signs tokens of real evidence")
    if kid is not None and kid != signer.kid:
        signer = TokenSigner(signer.private_key, kid=kid, development=signer.development)
    return signer


def issue_token(
    verified: VerifiedEvidence,
    *,
    signing_key: TokenSigner | ec.EllipticCurvePrivateKey,
    now: datetime,
    development_key: TokenSigner | None = None,
    kid: str | None = None,
    issuer: str = DEFAULT_ISSUER,
    lifetime: timedelta = DEFAULT_LIFETIME,
) -> DetachedEat:
    """Issue an ES384-signed detached EAT for verified evidence.

    Each GPU becomes a submodule ``GPU-<index>`` whose JWT carries that GPU's claims plus ``iss``,
    ``iat``, ``nbf``, ``exp``, ``jti`` and ``eat_nonce``; the CPU claims, when present, become
    ``CPU-0``. The overall JWT carries ``sub``, ``iss``, ``iat``/``nbf``/``exp``, ``jti``,
    ``x-nvidia-ver``, ``x-nvidia-overall-att-result``, ``x-ccai-steps`` (each checklist step's
    status), ``eat_nonce`` and ``submods``; every JWT of
    simulated evidence carries ``"x-ccai-simulated": true``.

    The key follows the evidence: simulated evidence is signed with ``development_key`` when given,
    else with ``signing_key`` if that is a development key; real evidence only with a production
    ``signing_key``. Any other pairing is refused, so a production key never signs simulated
    evidence and a development key never signs real evidence.

    Args:
        verified: The verifier's result (the only accepted input).
        signing_key: A :class:`TokenSigner` or a P-384 private key (a raw key is a production key).
        now: Issue time (``iat`` = ``nbf``).
        development_key: The development :class:`TokenSigner` to use for simulated evidence
            (a service that holds both keys passes both and the right one is picked).
        kid: Key id; defaults to the chosen signer's.
        issuer: ``iss``.
        lifetime: ``exp - iat``.

    Returns:
        The detached EAT.

    Raises:
        UsageError: ``verified`` is not a VerifiedEvidence, the key is not P-384, or the key does
            not match the evidence (production vs development).
    """
    if not isinstance(verified, VerifiedEvidence):
        raise UsageError("issue_token accepts only VerifiedEvidence from ccai.verify")
    if lifetime <= timedelta(0):
        raise UsageError("token lifetime must be positive")
    signer = _signer(signing_key, development_key, kid, simulated=verified.simulated)
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
            claims[_SIMULATED] = True
        return claims

    submods: dict[str, str] = {}
    for gpu in verified.gpus:
        submods[f"GPU-{gpu.index}"] = sign_es384(
            {**gpu.claims, **registered()}, signer.private_key, kid=signer.kid
        )
    for switch in verified.switches:
        submods[f"SWITCH-{switch.index}"] = sign_es384(
            {**switch.claims, **registered()}, signer.private_key, kid=signer.kid
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
        # Every step of the checklist and its outcome, as failure tokens carry them: a relying
        # party shows the same per-step table as a local verification.
        "x-ccai-steps": [{"step": r.step, "status": r.status, "detail": r.detail} for r in verified.steps],
        **registered(),
        "submods": {name: ["DIGEST", ["SHA-256", submod_digest(jwt)]] for name, jwt in submods.items()},
    }
    return DetachedEat(overall=sign_es384(overall, signer.private_key, kid=signer.kid), submods=submods)


def issue_failure_token(
    error: Error,
    *,
    nonce: bytes,
    signing_key: TokenSigner | ec.EllipticCurvePrivateKey,
    now: datetime,
    gpu_count: int = 0,
    cpu: bool = False,
    simulated: bool = False,
    switch_count: int = 0,
    development_key: TokenSigner | None = None,
    claims_version: str = "3.0",
    issuer: str = DEFAULT_ISSUER,
    lifetime: timedelta = DEFAULT_LIFETIME,
) -> DetachedEat:
    """Issue a detached EAT that records a *failed* appraisal, as NRAS answers failed evidence.

    NRAS answers evidence that fails verification with HTTP 200 and a token whose
    ``x-nvidia-overall-att-result`` is false (gpu-evidence.md §11). This builds that token from the
    :class:`~ccai.errors.Error` the verifier raised: every JWT says ``"x-nvidia-overall-att-result":
    false`` (overall) or ``"measres": "fail"``/``"not-run"`` (per device), and carries the reason as
    ccai claims — ``x-ccai-error`` (class), ``x-ccai-reason`` (message), ``x-ccai-failed-step`` and
    ``x-ccai-steps`` (every step's status). None of the claims NVIDIA's policies require for a pass
    (``secboot``, ``x-nvidia-gpu-attestation-report-signature-verified`` …) is set true, so no
    policy that a passing token satisfies accepts it. Only :func:`issue_token` issues a passing
    token, and only for :class:`~ccai.verify.VerifiedEvidence`.

    Args:
        error: The error the verifier raised (its ``steps`` say which steps ran).
        nonce: The verifier nonce the request named (``eat_nonce``).
        signing_key: The production signer (or a raw P-384 key).
        now: Issue time.
        gpu_count: Number of GPU submodules (``GPU-0`` …) the request held.
        switch_count: Number of NVSwitch submodules (``SWITCH-0`` …) the request held.
        cpu: Add a ``CPU-0`` submodule (composite evidence with a CPU item).
        simulated: The evidence chained to ccai's test PKI: sign with ``development_key`` and mark
            every JWT ``x-ccai-simulated``.
        development_key: The development signer (required when ``simulated``).
        claims_version: ``x-nvidia-ver``.
        issuer: ``iss``.
        lifetime: ``exp - iat``.

    Returns:
        The detached EAT.

    Raises:
        UsageError: ``error`` is not a ccai Error, or the key does not match ``simulated``.
    """
    if not isinstance(error, Error):
        raise UsageError("issue_failure_token records a ccai.errors.Error")
    if lifetime <= timedelta(0):
        raise UsageError("token lifetime must be positive")
    signer = _signer(signing_key, development_key, None, simulated=simulated)
    iat = int(now.timestamp())
    exp = int((now + lifetime).timestamp())
    steps = [
        {
            "step": getattr(s, "step", str(s)),
            "status": getattr(s, "status", ""),
            "detail": getattr(s, "detail", ""),
        }
        for s in error.steps
    ]
    failed_step = next((s["step"] for s in steps if s["status"] == "failed"), error.step)
    reason: dict[str, Any] = {
        "x-ccai-error": type(error).__name__,
        "x-ccai-reason": error.message,
        "x-ccai-failed-step": failed_step,
    }

    def registered() -> dict[str, Any]:
        claims: dict[str, Any] = {
            "iss": issuer,
            "iat": iat,
            "nbf": iat,
            "exp": exp,
            "jti": str(uuid.uuid4()),
            "eat_nonce": nonce.hex(),
        }
        if simulated:
            claims[_SIMULATED] = True
        return claims

    submods: dict[str, str] = {}
    measured = failed_step is not None and "measurement" in str(failed_step)
    for index in range(gpu_count):
        # The error's own ``index`` may be a GPU, a certificate or a measurement index, so every
        # device token carries the one reason; none of them says success.
        claims = {
            "x-nvidia-device-type": "gpu",
            "x-nvidia-gpu-claims-version": claims_version,
            "measres": "fail" if measured else "not-run",
            "secboot": None,
            "dbgstat": None,
            **reason,
            **registered(),
        }
        submods[f"GPU-{index}"] = sign_es384(claims, signer.private_key, kid=signer.kid)
    for index in range(switch_count):
        claims = {
            "x-nvidia-device-type": "nvswitch",
            "measres": "fail" if measured else "not-run",
            "secboot": None,
            "dbgstat": None,
            **reason,
            **registered(),
        }
        submods[f"SWITCH-{index}"] = sign_es384(claims, signer.private_key, kid=signer.kid)
    if cpu:
        submods["CPU-0"] = sign_es384({**reason, **registered()}, signer.private_key, kid=signer.kid)
    overall: dict[str, Any] = {
        "sub": _SUBJECT,
        "x-nvidia-ver": claims_version,
        "x-nvidia-overall-att-result": False,
        **reason,
        "x-ccai-steps": steps,
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


def _is_time(value: Any) -> TypeGuard[int | float]:
    """A JWT NumericDate that compares safely with a float: a number within ±2**53 (not NaN)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and -_MAX_TIME <= value <= _MAX_TIME


def _check_times(claims: Mapping[str, Any], *, now: datetime, leeway: timedelta, name: str) -> None:
    ts = now.timestamp()
    margin = leeway.total_seconds()
    exp = claims.get("exp")
    if not _is_time(exp):
        raise TokenError("token has no numeric exp", index=name)
    if ts > exp + margin:
        raise TokenError("token has expired", index=name, expected=f"now <= {exp}", actual=int(ts))
    nbf = claims.get("nbf")
    if nbf is not None:
        if not _is_time(nbf):
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


def _verify_jwt(
    jwt: str, read: JwksKeys, *, name: str, allow_simulated: bool, allow_high_s: bool
) -> tuple[dict[str, Any], bool]:
    """One JWT's claims and whether it is simulated, after the development-key rule and its
    signature. A development-key token is refused before its key is used."""
    kid = unverified_header(jwt).get("kid")
    development = isinstance(kid, str) and (is_development_kid(kid) or kid in read.development)
    if development and not allow_simulated:
        raise SimulatedEvidenceRejected(
            "token is signed by a development key (simulated evidence)",
            index=name,
            actual=kid,
            hint="pass allow_simulated=True to accept tokens of virtual hardware",
        )
    if isinstance(kid, str) and kid in read.refused:
        raise TokenError(
            "the JWKS key this token names may not verify ES384 signatures",
            index=name,
            actual=f"{kid}: {read.refused[kid]}",
        )
    claims = verify_es384(jwt, read.keys, allow_high_s=allow_high_s)
    marker = claims.get(_SIMULATED, False)
    if not isinstance(marker, bool):
        raise TokenError(f"token claim {_SIMULATED} is not a boolean", index=name, actual=repr(marker))
    if marker and not allow_simulated:
        raise SimulatedEvidenceRejected(
            "token is for simulated evidence (x-ccai-simulated)",
            index=name,
            hint="pass allow_simulated=True to accept tokens of virtual hardware",
        )
    if development and not marker:
        # ccai's issuer never does this; a development key may not vouch for real hardware.
        raise TokenError("development-key token does not mark its claims simulated", index=name)
    return claims, development or marker


def _kids(token: DetachedEat) -> list[str]:
    """The ``kid`` of every JWT in ``token`` (unverified: only used to look keys up)."""
    found = []
    for jwt in (token.overall, *token.submods.values()):
        kid = unverified_header(jwt).get("kid")
        if isinstance(kid, str):
            found.append(kid)
    return found


def _read_keys(token: DetachedEat, jwks: Mapping[str, Any] | str | bytes | JwksClient) -> JwksKeys:
    """The keys to verify ``token`` with; a fetched JWKS is refetched once for a kid it lacks."""
    if isinstance(jwks, Mapping | bytes) or (isinstance(jwks, str) and not is_url(jwks)):
        return read_jwks(jwks)
    client = jwks if isinstance(jwks, JwksClient) else JwksClient(jwks)
    try:
        read = client.keys()
        unknown = next((k for k in _kids(token) if k not in read.keys and k not in read.refused), None)
        return read if unknown is None else client.keys(unknown_kid=unknown)
    finally:
        if client is not jwks:
            client.close()


def verify_token(
    eat: DetachedEat | str | bytes | list[Any],
    *,
    jwks: Mapping[str, Any] | str | bytes | JwksClient,
    nonce: bytes,
    now: datetime,
    leeway: timedelta = _DEFAULT_LEEWAY,
    issuer: str | None = None,
    allow_simulated: bool = False,
    allow_high_s: bool = False,
) -> VerifiedToken:
    """Verify a detached EAT as a relying party and return its claims.

    Checks, in order: (0) the wire form and the JWKS (strict JSON; JWKS entries whose ``use``,
    ``key_ops``, ``alg``, ``kty`` or ``crv`` do not allow ES384 verification are never used);
    (1) the overall JWT: the development-key rule, then its ES384 signature with the JWKS key its
    ``kid`` names (``none``, ``HS256`` and every other algorithm are refused), then the simulation
    rule; (2) ``iss`` when ``issuer`` is given; (3) ``exp``/``nbf`` with ``leeway``;
    (4) ``eat_nonce`` equals ``nonce`` (constant time); (5) the submodule set and each SHA-256
    digest; (6) each submodule JWT: development-key rule, signature, simulation rule, times, nonce.

    Simulation rule: a token signed by a development key (``ccai-dev-`` kid, or marked
    ``x-ccai-development`` in the JWKS) or whose claims say ``"x-ccai-simulated": true`` is refused
    with :class:`~ccai.errors.SimulatedEvidenceRejected` unless ``allow_simulated=True``.

    Args:
        eat: The token (object, JSON text, or decoded list).
        jwks: The issuer's JWKS: the document (decoded, or as JSON text), a :class:`JwksClient`
            (keys fetched by URL, cached for its TTL, refetched once when the token names a
            ``kid`` it lacks — key rotation), or an ``https://`` URL (fetched once for this call).
        nonce: The nonce the relying party sent.
        now: Verification time.
        leeway: Clock tolerance for ``exp``/``nbf``.
        issuer: Required ``iss``, if any.
        allow_simulated: Accept tokens of simulated evidence (development key, ``x-ccai-simulated``).
        allow_high_s: Accept high-S ECDSA signatures (for issuers such as NRAS that do not
            normalise S; ccai's own tokens are low-S).

    Returns:
        The verified claims (``simulated`` says whether the token is for simulated evidence).

    Raises:
        SimulatedEvidenceRejected: a development-key or simulated token without ``allow_simulated``.
        TokenError: any other check fails.
        CollateralUnavailable: ``jwks`` is a URL or client and the keys cannot be fetched.
        UsageError: ``nonce`` is not bytes.
    """
    if not isinstance(nonce, bytes):
        raise UsageError("nonce must be bytes")
    # (0) wire form and keys
    token = parse_detached_eat(eat.to_json() if isinstance(eat, DetachedEat) else eat)
    read = _read_keys(token, jwks)
    nonce_hex = nonce.hex()
    # (1) overall signature and simulation rule
    overall, simulated = _verify_jwt(
        token.overall, read, name="overall", allow_simulated=allow_simulated, allow_high_s=allow_high_s
    )
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
        claims, simulated_submod = _verify_jwt(
            jwt, read, name=name, allow_simulated=allow_simulated, allow_high_s=allow_high_s
        )
        _check_times(claims, now=now, leeway=leeway, name=name)
        _check_nonce(claims, nonce_hex, name=name, required=False)
        submods[name] = claims
        simulated = simulated or simulated_submod
    return VerifiedToken(overall=overall, submods=submods, simulated=simulated)
