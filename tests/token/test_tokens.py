"""Detached EAT issue/verify, JWS algorithm pinning, JWKS, and NRAS's digest rule on the real vector."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import ccai.token
from ccai.errors import TokenError, UsageError
from ccai.token import (
    DetachedEat,
    TokenSigner,
    issue_token,
    jwks,
    parse_detached_eat,
    submod_digest,
    unverified_header,
    verify_submod_digests,
    verify_token,
)
from ccai.verify._result import VerifiedGpu, _issue

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
NONCE = bytes.fromhex("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")
GPU_CLAIMS = {
    "measres": "success",
    "x-nvidia-gpu-driver-version": "550.90.07",
    "hwmodel": "GH100 A01 GSP BROM",
}
EAT_VECTOR = (
    "NVIDIA_attestation-sdk@73c032e/nv-attestation-sdk-cpp/unit-tests/testdata/"
    "sample_attestation_data/hopperClaimsv3_detached_eat.json"
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _verified(*, gpus: int = 2, simulated: bool = False, cpu: dict[str, Any] | None = None) -> Any:
    return _issue(
        nonce=NONCE,
        gpus=tuple(VerifiedGpu(index=i, claims={**GPU_CLAIMS, "ueid": str(1000 + i)}) for i in range(gpus)),
        overall_claims={"x-nvidia-overall-att-result": True},
        verified_at=NOW,
        simulated=simulated,
        cpu_claims=cpu,
    )


@pytest.fixture(scope="module")
def signer() -> TokenSigner:
    return TokenSigner.generate(kid="test-kid-1")


@pytest.fixture(scope="module")
def eat(signer: TokenSigner) -> DetachedEat:
    return issue_token(_verified(), signing_key=signer, now=NOW, issuer="https://verifier.test")


def test_public_surface_is_pinned() -> None:
    assert sorted(ccai.token.__all__) == sorted(
        [
            "AttestationServiceClient",
            "DEFAULT_ISSUER",
            "DEFAULT_JWKS_TTL",
            "JWKS_PATH",
            "JwksClient",
            "ServiceAnswer",
            "DEFAULT_LIFETIME",
            "DEVELOPMENT_KID_PREFIX",
            "DetachedEat",
            "TokenSigner",
            "VerifiedToken",
            "is_development_kid",
            "issue_failure_token",
            "issue_token",
            "jwk_thumbprint",
            "jwks",
            "keys_from_jwks",
            "parse_detached_eat",
            "public_jwk",
            "sign_es384",
            "submod_digest",
            "unverified_header",
            "verify_es384",
            "verify_submod_digests",
            "verify_token",
        ]
    )


def test_round_trip(signer: TokenSigner, eat: DetachedEat) -> None:
    wire = json.loads(eat.dumps())
    assert wire[0][0] == "JWT" and set(wire[1]) == {"GPU-0", "GPU-1"}
    result = verify_token(
        wire, jwks=jwks([signer]), nonce=NONCE, now=NOW + timedelta(minutes=5), issuer="https://verifier.test"
    )
    overall = result.overall
    assert overall["sub"] == "NVIDIA-PLATFORM-ATTESTATION"
    assert overall["x-nvidia-overall-att-result"] is True
    assert overall["x-nvidia-ver"] == "3.0"
    assert overall["eat_nonce"] == NONCE.hex()
    assert overall["exp"] - overall["iat"] == 3600 and overall["nbf"] == overall["iat"] == int(
        NOW.timestamp()
    )
    assert "x-ccai-simulated" not in overall
    assert overall["submods"]["GPU-0"] == ["DIGEST", ["SHA-256", submod_digest(eat.submods["GPU-0"])]]
    assert result.submods["GPU-1"]["ueid"] == "1001"
    assert result.submods["GPU-0"]["measres"] == "success"
    assert unverified_header(eat.overall) == {"alg": "ES384", "typ": "JWT", "kid": "test-kid-1"}
    # jti values are unique per JWT.
    assert len({overall["jti"], *(c["jti"] for c in result.submods.values())}) == 3


def test_simulated_and_cpu_claims(signer: TokenSigner) -> None:
    dev = TokenSigner.generate(development=True)
    eat = issue_token(
        _verified(gpus=1, simulated=True, cpu={"tee": "tdx"}),
        signing_key=signer,
        development_key=dev,
        now=NOW,
    )
    result = verify_token(eat, jwks=jwks([signer, dev]), nonce=NONCE, now=NOW, allow_simulated=True)
    assert result.simulated
    assert result.overall["x-ccai-simulated"] is True
    assert result.submods["GPU-0"]["x-ccai-simulated"] is True
    assert result.submods["CPU-0"]["tee"] == "tdx"
    assert result.overall["iss"] == "CCAI-LOCAL-VERIFIER"


def _resign_payload(token: str, change: dict[str, Any]) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims.update(change)
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


def test_tampered_overall_payload(signer: TokenSigner, eat: DetachedEat) -> None:
    forged = DetachedEat(
        overall=_resign_payload(eat.overall, {"x-nvidia-overall-att-result": True, "x": 1}),
        submods=eat.submods,
    )
    with pytest.raises(TokenError, match="signature does not verify"):
        verify_token(forged, jwks=jwks([signer]), nonce=NONCE, now=NOW)


def test_submod_digest_mismatch(signer: TokenSigner, eat: DetachedEat) -> None:
    other = issue_token(_verified(), signing_key=signer, now=NOW)
    # A genuinely signed GPU token from another issuance, swapped in.
    swapped = DetachedEat(overall=eat.overall, submods={**eat.submods, "GPU-1": other.submods["GPU-1"]})
    with pytest.raises(TokenError, match="does not match its digest") as info:
        verify_token(swapped, jwks=jwks([signer]), nonce=NONCE, now=NOW)
    assert info.value.index == "GPU-1"
    dropped = DetachedEat(overall=eat.overall, submods={"GPU-0": eat.submods["GPU-0"]})
    with pytest.raises(TokenError, match="differ"):
        verify_token(dropped, jwks=jwks([signer]), nonce=NONCE, now=NOW)


def test_wrong_kid_and_wrong_key(signer: TokenSigner, eat: DetachedEat) -> None:
    other = TokenSigner.generate(kid="test-kid-2")
    with pytest.raises(TokenError, match="unknown key"):
        verify_token(eat, jwks=jwks([other]), nonce=NONCE, now=NOW)
    # The right kid published with another key.
    impostor = {"keys": [{**other.jwk(), "kid": "test-kid-1"}]}
    with pytest.raises(TokenError, match="signature does not verify"):
        verify_token(eat, jwks=impostor, nonce=NONCE, now=NOW)


@pytest.mark.parametrize("alg", ["none", "HS256", "ES256", "RS256", None])
def test_other_algorithms_are_refused(signer: TokenSigner, eat: DetachedEat, alg: str | None) -> None:
    _, payload, _ = eat.overall.split(".")
    header = {"typ": "JWT", "kid": signer.kid} | ({"alg": alg} if alg else {})
    if alg == "HS256":
        # HS256 with the public key material as the secret: the classic algorithm-confusion forgery.
        secret = json.dumps(signer.jwk()).encode()
        signing_input = f"{_b64(json.dumps(header).encode())}.{payload}"
        sig = _b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())
        token = f"{signing_input}.{sig}"
    else:
        token = f"{_b64(json.dumps(header).encode())}.{payload}.{_b64(b'x' * 96)}"
    with pytest.raises(TokenError, match="algorithm not accepted"):
        verify_token(
            DetachedEat(overall=token, submods=eat.submods), jwks=jwks([signer]), nonce=NONCE, now=NOW
        )
    unsigned = f"{_b64(json.dumps({'alg': 'none'}).encode())}.{payload}."
    with pytest.raises(TokenError):
        verify_token(
            DetachedEat(overall=unsigned, submods=eat.submods), jwks=jwks([signer]), nonce=NONCE, now=NOW
        )


def test_expiry_and_not_before(signer: TokenSigner, eat: DetachedEat) -> None:
    keys = jwks([signer])
    verify_token(eat, jwks=keys, nonce=NONCE, now=NOW + timedelta(hours=1, seconds=30))  # within leeway
    with pytest.raises(TokenError, match="expired"):
        verify_token(eat, jwks=keys, nonce=NONCE, now=NOW + timedelta(hours=1, minutes=2))
    with pytest.raises(TokenError, match="not yet valid"):
        verify_token(eat, jwks=keys, nonce=NONCE, now=NOW - timedelta(minutes=5))
    with pytest.raises(TokenError, match="expired"):
        verify_token(
            eat, jwks=keys, nonce=NONCE, now=NOW + timedelta(hours=1, seconds=1), leeway=timedelta(0)
        )


def test_nonce_and_issuer_mismatch(signer: TokenSigner, eat: DetachedEat) -> None:
    with pytest.raises(TokenError, match="nonce"):
        verify_token(eat, jwks=jwks([signer]), nonce=bytes(32), now=NOW)
    with pytest.raises(TokenError, match="issuer"):
        verify_token(
            eat, jwks=jwks([signer]), nonce=NONCE, now=NOW, issuer="https://nras.attestation.nvidia.com"
        )


def test_malformed_tokens() -> None:
    for bad in ("", "[]", '[["JWS", "x"], {}]', '[["JWT", "a.b.c"], {"GPU-0": 1}]', "not json"):
        with pytest.raises(TokenError):
            parse_detached_eat(bad)
    with pytest.raises(TokenError, match="compact JWS"):
        unverified_header("a.b")


def test_jwks_shape_and_signer_file(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "signing.pem"
    signer = TokenSigner.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = TokenSigner.load_or_create(path)
    assert again.kid == signer.kid  # RFC 7638 thumbprint: stable across loads
    document = jwks([signer, ("old-key", TokenSigner.generate().public_key)])
    first = document["keys"][0]
    assert set(first) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
    assert (first["kty"], first["crv"], first["alg"], first["use"]) == ("EC", "P-384", "ES384", "sig")
    assert len(base64.urlsafe_b64decode(first["x"] + "==")) == 48
    assert document["keys"][1]["kid"] == "old-key"
    json.dumps(document)


def test_default_signer_lives_under_ccai_home(ccai_home: Path) -> None:
    signer = TokenSigner.load_or_create()
    assert (ccai_home / "token-signing-key.pem").is_file()
    assert TokenSigner.load_or_create().kid == signer.kid


def test_only_p384_keys_and_only_verified_evidence(signer: TokenSigner) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    with pytest.raises(UsageError):
        TokenSigner(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(UsageError):
        issue_token({"nonce": NONCE}, signing_key=signer, now=NOW)  # type: ignore[arg-type]


def test_nras_digest_rule_on_the_real_eat(vectors: Path) -> None:
    """NVIDIA's real NRAS EAT: our digest of the GPU-0 JWT string equals the one NRAS signed."""
    eat = parse_detached_eat((vectors / "nvtrust" / EAT_VECTOR).read_bytes())
    payload = eat.overall.split(".")[1]
    overall = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert overall["submods"]["GPU-0"][1][0] == "SHA-256"
    verify_submod_digests(eat, overall)
    tampered = DetachedEat(overall=eat.overall, submods={"GPU-0": eat.submods["GPU-0"] + "x"})
    with pytest.raises(TokenError, match="digest"):
        verify_submod_digests(tampered, overall)


def test_failure_token_records_the_failed_step_and_never_passes(signer: TokenSigner) -> None:
    from ccai.errors import MeasurementMismatch
    from ccai.token import issue_failure_token
    from ccai.verify import StepResult

    error = MeasurementMismatch("measurement 9 differs", step="(9) measurements")
    error.steps = (
        StepResult(step="(1) certificate chain", status="ok", detail="chain"),
        StepResult(
            step="(9) measurements", status="failed", detail="MeasurementMismatch: measurement 9 differs"
        ),
    )
    eat = issue_failure_token(error, nonce=NONCE, signing_key=signer, now=NOW, gpu_count=2)
    jwks_doc = ccai.token.jwks([signer])
    verified = ccai.token.verify_token(eat, jwks=jwks_doc, nonce=NONCE, now=NOW)
    assert verified.overall["x-nvidia-overall-att-result"] is False
    assert verified.overall["x-ccai-failed-step"] == "(9) measurements"
    assert verified.overall["x-ccai-error"] == "MeasurementMismatch"
    assert [s["status"] for s in verified.overall["x-ccai-steps"]] == ["ok", "failed"]
    assert set(verified.submods) == {"GPU-0", "GPU-1"}
    assert all(c["measres"] == "fail" and c["secboot"] is None for c in verified.submods.values())
    # Simulated evidence: only with a development key.
    with pytest.raises(UsageError):
        issue_failure_token(error, nonce=NONCE, signing_key=signer, now=NOW, simulated=True)
    with pytest.raises(UsageError):
        issue_failure_token(ValueError("x"), nonce=NONCE, signing_key=signer, now=NOW)  # type: ignore[arg-type]
