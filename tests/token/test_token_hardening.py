"""Regressions of the token hardening review: one block per finding.

1. simulated evidence → a separate development key, refused without ``allow_simulated=True``;
2. the compact JWS is parsed strictly (segments, base64url, signature form, low-S, header, JSON);
3. JWKS entries that are not ES384 signature keys are never used;
4. every failure is a ccai error with a one-line message.
"""

from __future__ import annotations

import base64
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from ccai.errors import Error, SimulatedEvidenceRejected, TokenError, UsageError
from ccai.token import (
    DEVELOPMENT_KID_PREFIX,
    DetachedEat,
    TokenSigner,
    issue_token,
    jwks,
    keys_from_jwks,
    parse_detached_eat,
    sign_es384,
    submod_digest,
    verify_es384,
    verify_submod_digests,
    verify_token,
)
from ccai.verify._result import VerifiedGpu, _issue

# The order n of P-384 (SEC 2 §2.5.1), written out here rather than taken from the code under test.
P384_ORDER = int(
    "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973", 16
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
NONCE = bytes(range(32))
EAT_VECTOR = (
    "nvtrust/NVIDIA_attestation-sdk@73c032e/nv-attestation-sdk-cpp/unit-tests/testdata/"
    "sample_attestation_data/hopperClaimsv3_detached_eat.json"
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _verified(*, simulated: bool, gpus: int = 1) -> Any:
    return _issue(
        nonce=NONCE,
        gpus=tuple(VerifiedGpu(index=i, claims={"measres": "success"}) for i in range(gpus)),
        overall_claims={"x-nvidia-overall-att-result": True},
        verified_at=NOW,
        simulated=simulated,
    )


def _claims(**extra: Any) -> dict[str, Any]:
    iat = int(NOW.timestamp())
    return {"iss": "t", "iat": iat, "nbf": iat, "exp": iat + 3600, "eat_nonce": NONCE.hex(), **extra}


def _sign_raw(key: ec.EllipticCurvePrivateKey, header: bytes, payload: bytes, *, high_s: bool = False) -> str:
    """A compact JWS over arbitrary header/payload bytes, signed properly (low-S unless asked)."""
    signing_input = f"{_b64(header)}.{_b64(payload)}"
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA384())))
    s = min(s, P384_ORDER - s)
    if high_s:
        s = P384_ORDER - s
    return f"{signing_input}.{_b64(r.to_bytes(48, 'big') + s.to_bytes(48, 'big'))}"


def _header(kid: str, **extra: Any) -> bytes:
    return json.dumps({"alg": "ES384", "typ": "JWT", "kid": kid, **extra}).encode()


def _overall_for(submods: dict[str, str], key: ec.EllipticCurvePrivateKey, kid: str, **extra: Any) -> str:
    digests = {name: ["DIGEST", ["SHA-256", submod_digest(jwt)]] for name, jwt in submods.items()}
    return sign_es384(_claims(submods=digests, **extra), key, kid=kid)


@pytest.fixture(scope="module")
def prod() -> TokenSigner:
    return TokenSigner.generate(kid="prod-1")


@pytest.fixture(scope="module")
def dev() -> TokenSigner:
    return TokenSigner.generate(development=True)


# -- 1. development key for simulated evidence --------------------------------------------------


def test_development_signer_kid_and_jwk_are_marked(dev: TokenSigner, prod: TokenSigner) -> None:
    assert dev.development and dev.kid.startswith(DEVELOPMENT_KID_PREFIX) and "development=True" in repr(dev)
    assert dev.jwk()["x-ccai-development"] is True
    assert "x-ccai-development" not in prod.jwk() and not prod.development
    with pytest.raises(UsageError, match="reserved for development keys"):
        TokenSigner.generate(kid="ccai-dev-pretend")
    with pytest.raises(UsageError, match="must start with"):
        TokenSigner.generate(kid="plain", development=True)
    with pytest.raises(UsageError, match="both a development and a production key"):
        jwks([dev, ("prod-alias", dev.public_key)])
    with pytest.raises(UsageError, match="two keys with one kid"):
        jwks([prod, ("prod-1", dev.public_key)])


def test_development_key_has_its_own_file(ccai_home: Path) -> None:
    dev = TokenSigner.load_or_create(development=True)
    prod = TokenSigner.load_or_create()
    dev_file = ccai_home / "token-dev-signing-key.pem"
    assert dev_file.is_file() and (ccai_home / "token-signing-key.pem").is_file()
    assert stat.S_IMODE(dev_file.stat().st_mode) == 0o600
    assert dev.public_key.public_numbers() != prod.public_key.public_numbers()
    assert TokenSigner.load_or_create(development=True).kid == dev.kid


def test_issue_picks_the_key_that_matches_the_evidence(prod: TokenSigner, dev: TokenSigner) -> None:
    both = jwks([prod, dev])
    real = issue_token(_verified(simulated=False), signing_key=prod, development_key=dev, now=NOW)
    simulated = issue_token(_verified(simulated=True), signing_key=prod, development_key=dev, now=NOW)
    for jwt in (real.overall, *real.submods.values()):
        assert json.loads(_unb64(jwt.split(".")[0]))["kid"] == prod.kid
    for jwt in (simulated.overall, *simulated.submods.values()):
        assert json.loads(_unb64(jwt.split(".")[0]))["kid"] == dev.kid
    assert not verify_token(real, jwks=both, nonce=NONCE, now=NOW).simulated
    assert verify_token(simulated, jwks=both, nonce=NONCE, now=NOW, allow_simulated=True).simulated
    # A development signer alone is enough for simulated evidence.
    issue_token(_verified(simulated=True), signing_key=dev, now=NOW)


def test_issue_refuses_a_mismatched_key(prod: TokenSigner, dev: TokenSigner) -> None:
    with pytest.raises(UsageError, match="only with a development key"):
        issue_token(_verified(simulated=True), signing_key=prod, now=NOW)
    with pytest.raises(UsageError, match="only with a development key"):
        issue_token(_verified(simulated=True), signing_key=prod.private_key, now=NOW)
    with pytest.raises(UsageError, match="never signs tokens of real evidence"):
        issue_token(_verified(simulated=False), signing_key=dev, now=NOW)
    with pytest.raises(UsageError, match="development_key must be"):
        issue_token(_verified(simulated=True), signing_key=prod, development_key=prod, now=NOW)
    with pytest.raises(UsageError, match="reserved"):
        issue_token(_verified(simulated=False), signing_key=prod, kid="ccai-dev-x", now=NOW)


def test_verify_refuses_development_key_tokens_by_default(prod: TokenSigner, dev: TokenSigner) -> None:
    eat = issue_token(_verified(simulated=True, gpus=2), signing_key=dev, now=NOW)
    with pytest.raises(SimulatedEvidenceRejected, match="development key") as info:
        verify_token(eat, jwks=jwks([prod, dev]), nonce=NONCE, now=NOW)
    assert info.value.index == "overall"
    result = verify_token(eat, jwks=jwks([prod, dev]), nonce=NONCE, now=NOW, allow_simulated=True)
    assert result.simulated and result.submods["GPU-1"]["x-ccai-simulated"] is True
    # The development key is not even looked up without the opt-in: a JWKS without it gives the same error.
    with pytest.raises(SimulatedEvidenceRejected):
        verify_token(eat, jwks=jwks([prod]), nonce=NONCE, now=NOW)
    assert dev.kid not in keys_from_jwks(jwks([prod, dev]))
    assert dev.kid in keys_from_jwks(jwks([prod, dev]), allow_development=True)


def test_verify_refuses_a_jwks_marked_development_key_without_the_prefix(prod: TokenSigner) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    document = {"keys": [{**TokenSigner(key, kid="lab-key").jwk(), "x-ccai-development": True}]}
    gpu = sign_es384(_claims(**{"x-ccai-simulated": True}), key, kid="lab-key")
    eat = DetachedEat(
        overall=_overall_for({"GPU-0": gpu}, key, "lab-key", **{"x-ccai-simulated": True}),
        submods={"GPU-0": gpu},
    )
    with pytest.raises(SimulatedEvidenceRejected):
        verify_token(eat, jwks=document, nonce=NONCE, now=NOW)
    assert verify_token(eat, jwks=document, nonce=NONCE, now=NOW, allow_simulated=True).simulated


def test_verify_refuses_simulated_claims_even_under_a_production_key(prod: TokenSigner) -> None:
    gpu = sign_es384(_claims(**{"x-ccai-simulated": True}), prod.private_key, kid=prod.kid)
    overall = _overall_for({"GPU-0": gpu}, prod.private_key, prod.kid)
    eat = DetachedEat(overall=overall, submods={"GPU-0": gpu})
    with pytest.raises(SimulatedEvidenceRejected, match="x-ccai-simulated") as info:
        verify_token(eat, jwks=jwks([prod]), nonce=NONCE, now=NOW)
    assert info.value.index == "GPU-0"  # a simulated submodule under a "real" overall token
    assert verify_token(eat, jwks=jwks([prod]), nonce=NONCE, now=NOW, allow_simulated=True).simulated
    odd = sign_es384(_claims(**{"x-ccai-simulated": "false"}), prod.private_key, kid=prod.kid)
    with pytest.raises(TokenError, match="not a boolean"):
        verify_token(
            DetachedEat(
                overall=_overall_for({"GPU-0": odd}, prod.private_key, prod.kid), submods={"GPU-0": odd}
            ),
            jwks=jwks([prod]),
            nonce=NONCE,
            now=NOW,
            allow_simulated=True,
        )


def test_a_development_key_may_not_vouch_for_real_hardware(dev: TokenSigner) -> None:
    gpu = sign_es384(_claims(), dev.private_key, kid=dev.kid)  # no x-ccai-simulated
    eat = DetachedEat(overall=_overall_for({"GPU-0": gpu}, dev.private_key, dev.kid), submods={"GPU-0": gpu})
    with pytest.raises(TokenError, match="does not mark its claims simulated"):
        verify_token(eat, jwks=jwks([dev]), nonce=NONCE, now=NOW, allow_simulated=True)


def test_one_key_under_both_kinds_of_kid_is_refused(dev: TokenSigner) -> None:
    document = {"keys": [dev.jwk(), {**dev.jwk(), "kid": "prod-alias", "x-ccai-development": False}]}
    assert keys_from_jwks(document, allow_development=True) == {}
    claims = _claims(submods={})
    token = sign_es384(claims, dev.private_key, kid="prod-alias")
    with pytest.raises(TokenError, match="may not verify") as info:
        verify_token(DetachedEat(overall=token, submods={}), jwks=document, nonce=NONCE, now=NOW)
    assert "both a development and a production key" in str(info.value.actual)


def test_cli_signs_simulated_evidence_with_the_development_key(
    tmp_path: Path, ccai_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from ccai.attest import collect_gpu_evidence
    from ccai.cli.app import app
    from ccai.evidence import dump_evidence_json
    from ccai.virtual import VirtualGpuBackend

    backend = VirtualGpuBackend.create(gpus=1)
    path = tmp_path / "evidence.json"
    path.write_bytes(dump_evidence_json(collect_gpu_evidence(backend, NONCE)))
    rim_dir = tmp_path / "rims"
    rim_dir.mkdir()
    for rim_id in backend.rim_ids(0):
        (rim_dir / f"{rim_id}.xml").write_bytes(backend.rim(rim_id))
    args = ["verify", "gpu", str(path), "--nonce", NONCE.hex(), "--rim-dir", str(rim_dir), "--offline"]
    result = CliRunner().invoke(app, [*args, "--allow-simulated", "--json"])
    assert result.exit_code == 0, result.output
    eat = parse_detached_eat(json.loads(result.stdout)["detached_eat"])
    dev = TokenSigner.load_or_create(development=True)
    assert not (ccai_home / "token-signing-key.pem").exists()  # the production key is not involved
    with pytest.raises(SimulatedEvidenceRejected):
        verify_token(eat, jwks=jwks([dev]), nonce=NONCE, now=datetime.now(UTC))
    assert verify_token(
        eat, jwks=jwks([dev]), nonce=NONCE, now=datetime.now(UTC), allow_simulated=True
    ).simulated


# -- 2. strict compact JWS ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def token(prod: TokenSigner) -> str:
    return sign_es384(_claims(), prod.private_key, kid=prod.kid)


@pytest.fixture(scope="module")
def keys(prod: TokenSigner) -> dict[str, ec.EllipticCurvePublicKey]:
    return keys_from_jwks(jwks([prod]))


def _with_last_char(segment: str) -> str:
    """The same bytes with non-zero unused trailing bits (a second, non-canonical spelling)."""
    assert len(segment) % 4 in (2, 3)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    index = alphabet.index(segment[-1]) + 1
    twin = segment[:-1] + alphabet[index]
    assert _unb64(twin) == _unb64(segment)
    return twin


def test_exactly_three_segments(token: str, keys: dict[str, Any]) -> None:
    h, p, s = token.split(".")
    for bad in (f"{h}.{p}", f"{h}.{p}.{s}.{s}", f"{h}..{s}", f"{h}.{p}.", f".{p}.{s}", f"{h}.{p}.{s}."):
        with pytest.raises(TokenError, match="compact JWS"):
            verify_es384(bad, keys)


@pytest.mark.parametrize("where", [0, 1])
def test_non_canonical_base64url_is_refused(prod: TokenSigner, keys: dict[str, Any], where: int) -> None:
    header, payload = _header(prod.kid), json.dumps(_claims()).encode()
    # Pad both to a length that is not a multiple of 3, so their last character has unused bits.
    while len(header) % 3 == 0:
        header = header[:-1] + b" }"
    while len(payload) % 3 == 0:
        payload = payload[:-1] + b" }"
    good = _sign_raw(prod.private_key, header, payload)
    assert verify_es384(good, keys)
    parts = good.split(".")
    parts[where] = _with_last_char(parts[where])
    with pytest.raises(TokenError, match="not canonical base64url"):
        verify_es384(".".join(parts), keys)


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s + "A",  # 129 characters: no base64 length
        lambda s: s + "AA",  # a junk byte appended
        lambda s: s + "AAAA",  # three junk bytes appended
        lambda s: s + "==",
        lambda s: s[:-2] + "+/",
        lambda s: s[:-1] + "=",
        lambda s: s[:40] + " " + s[40:],
        lambda s: s[:40] + "\n" + s[40:],
        lambda s: s[:-4],  # 93 bytes
        lambda s: s[:40] + "é" + s[41:],
    ],
)
def test_signature_segment_is_exactly_96_canonical_bytes(
    token: str, keys: dict[str, Any], change: Any
) -> None:
    h, p, s = token.split(".")
    with pytest.raises(TokenError):
        verify_es384(f"{h}.{p}.{change(s)}", keys)


def test_high_s_twin_is_refused_and_ccai_issues_low_s(prod: TokenSigner, keys: dict[str, Any]) -> None:
    payload = json.dumps(_claims()).encode()
    low = _sign_raw(prod.private_key, _header(prod.kid), payload)
    high = _sign_raw(prod.private_key, _header(prod.kid), payload, high_s=True)
    assert verify_es384(low, keys)
    with pytest.raises(TokenError, match="low-S"):
        verify_es384(high, keys)
    assert verify_es384(high, keys, allow_high_s=True) == verify_es384(low, keys)
    for _ in range(40):  # each signature has a 1/2 chance of high-S before normalisation
        jwt = sign_es384(_claims(), prod.private_key, kid=prod.kid)
        s = int.from_bytes(_unb64(jwt.split(".")[2])[48:], "big")
        assert s <= P384_ORDER // 2
    eat = issue_token(_verified(simulated=False, gpus=8), signing_key=prod, now=NOW)
    verify_token(eat, jwks=jwks([prod]), nonce=NONCE, now=NOW)  # never high-S: would be refused


@pytest.mark.parametrize(("r", "s"), [(0, 1), (1, 0), (P384_ORDER, 1), (1, P384_ORDER), (2**384 - 1, 1)])
def test_signature_values_out_of_range(token: str, keys: dict[str, Any], r: int, s: int) -> None:
    h, p, _ = token.split(".")
    with pytest.raises(TokenError, match="out of range"):
        verify_es384(
            f"{h}.{p}.{_b64(r.to_bytes(48, 'big') + s.to_bytes(48, 'big'))}", keys, allow_high_s=True
        )


def test_real_nras_signatures_are_high_s(vectors: Path) -> None:
    """NRAS does not normalise S: its real EAT is refused for that reason (unless asked), before
    the (here unavailable) NRAS key would decide."""
    eat = parse_detached_eat((vectors / EAT_VECTOR).read_bytes())
    kid = json.loads(_unb64(eat.overall.split(".")[0]))["kid"]
    stand_in = {kid: ec.generate_private_key(ec.SECP384R1()).public_key()}
    with pytest.raises(TokenError, match="low-S"):
        verify_es384(eat.overall, stand_in)
    with pytest.raises(TokenError, match="does not verify"):
        verify_es384(eat.overall, stand_in, allow_high_s=True)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ({"alg": "ES384"}, "no key id"),
        ({"alg": "ES384", "kid": ""}, "no key id"),
        ({"alg": "ES384", "kid": 7}, "no key id"),
        ({"alg": "ES384", "kid": "prod-1", "crit": ["exp"]}, "critical"),
        ({"alg": "ES384", "kid": "prod-1", "jku": "https://attacker.example/jwks"}, "parameter not accepted"),
        (
            {"alg": "ES384", "kid": "prod-1", "x5u": "https://attacker.example/c.pem"},
            "parameter not accepted",
        ),
        ({"alg": "ES384", "kid": "prod-1", "jwk": {"kty": "EC"}}, "parameter not accepted"),
        ({"alg": "ES384", "kid": "prod-1", "x5c": ["MIIB"]}, "parameter not accepted"),
        ({"alg": "ES384", "kid": "prod-1", "b64": False}, "parameter not accepted"),
        ({"alg": "ES384", "kid": "prod-1", "typ": 1}, "typ"),
        ({"alg": "ES384 ", "kid": "prod-1"}, "algorithm not accepted"),
        ({"alg": "es384", "kid": "prod-1"}, "algorithm not accepted"),
    ],
)
def test_header_is_checked_strictly(
    prod: TokenSigner, keys: dict[str, Any], header: dict[str, Any], message: str
) -> None:
    jwt = _sign_raw(prod.private_key, json.dumps(header).encode(), json.dumps(_claims()).encode())
    with pytest.raises(TokenError, match=message):
        verify_es384(jwt, keys)


@pytest.mark.parametrize(
    ("part", "data", "message"),
    [
        ("payload", b'{"iss": "\xff"}', "not UTF-8"),
        ("payload", b'{"iss": "\xc3\xa9"}', None),  # é in UTF-8 is fine
        ("payload", b'{"iss": "\\ud800"}', "lone surrogate"),
        ("payload", b'{"exp": 1, "exp": 2}', "duplicate key"),
        ("payload", b'{"exp": NaN}', "NaN"),
        ("payload", b"[1]", "not a JSON object"),
        # 100 000 deep (left open: closed, it would exceed the 256 KiB token limit first).
        ("payload", b"[" * 100_000, "nested too deeply"),
        ("payload", b'{"a":' * 30_000 + b"1" + b"}" * 30_000, "nested too deeply"),
        (
            "header",
            b'{"alg":"ES384","kid":"prod-1","x":' + b"[" * 50_000 + b"]" * 50_000 + b"}",
            "nested too deeply",
        ),
        ("header", b'{"alg":"ES384","kid":"prod-\xff1"}', "not UTF-8"),
    ],
)
def test_header_and_payload_json_is_strict(
    prod: TokenSigner, keys: dict[str, Any], part: str, data: bytes, message: str | None
) -> None:
    header, payload = (_header(prod.kid), data) if part == "payload" else (data, b"{}")
    jwt = _sign_raw(prod.private_key, header, payload)
    if message is None:
        assert verify_es384(jwt, keys)["iss"] == "é"
        return
    with pytest.raises(TokenError, match=message) as info:
        verify_es384(jwt, keys)
    assert "\n" not in str(info.value)


def test_non_ascii_and_deep_detached_eats_are_typed_errors(prod: TokenSigner) -> None:
    eat = issue_token(_verified(simulated=False), signing_key=prod, now=NOW)
    bad = eat.submods["GPU-0"][:-3] + "é" + eat.submods["GPU-0"][-2:]
    for wire in (
        json.dumps([["JWT", eat.overall], {"GPU-0": bad}]),
        json.dumps([["JWT", eat.overall], {"GPU-0": bad}], ensure_ascii=False).encode(),
        [["JWT", eat.overall + "é"], dict(eat.submods)],
        "[" * 100_000 + "]" * 100_000,
        b"\xff\xfe",
        '[["JWT", "a.b.c"], {"GPU-0": "x", "GPU-0": "y"}]',
    ):
        with pytest.raises(TokenError):
            verify_token(wire, jwks=jwks([prod]), nonce=NONCE, now=NOW)  # type: ignore[arg-type]
    # Built directly, not through the parser: still typed errors, never UnicodeEncodeError.
    direct = DetachedEat(overall=eat.overall, submods={"GPU-0": bad})
    with pytest.raises(TokenError):
        verify_token(direct, jwks=jwks([prod]), nonce=NONCE, now=NOW)
    with pytest.raises(TokenError, match="ASCII"):
        submod_digest(bad)
    with pytest.raises(TokenError):
        verify_submod_digests(direct, {"submods": {"GPU-0": ["DIGEST", ["SHA-256", "00"]]}})


@pytest.mark.parametrize("exp", [10**300, -(10**300), 2**53 + 1, 1e300, True, "1"])
def test_absurd_times_are_token_errors_not_overflow(prod: TokenSigner, exp: Any) -> None:
    overall = sign_es384({**_claims(submods={}), "exp": exp}, prod.private_key, kid=prod.kid)
    with pytest.raises(TokenError, match="exp"):
        verify_token(DetachedEat(overall=overall, submods={}), jwks=jwks([prod]), nonce=NONCE, now=NOW)


# -- 3. JWKS entries that are not ES384 signature keys ------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"use": "enc"}, "use is 'enc'"),
        ({"key_ops": ["encrypt"]}, "key_ops"),
        ({"key_ops": "verify"}, "key_ops"),
        ({"alg": "ES256"}, "alg is 'ES256'"),
        ({"crv": "P-256"}, "crv is 'P-256'"),
        ({"crv": None}, "crv is None"),
        ({"kty": "RSA"}, "kty is 'RSA'"),
        ({"kty": "oct", "k": "c2VjcmV0"}, "kty is 'oct'"),
        ({"d": "AAAA"}, "private key"),
        ({"x": "AAAA"}, "48 bytes"),
        ({"x": _b64(bytes(48))}, "P-384"),  # not a point on the curve
        ({"x-ccai-development": "yes"}, "not a boolean"),
    ],
)
def test_jwk_that_cannot_verify_es384_is_never_used(
    prod: TokenSigner, change: dict[str, Any], reason: str
) -> None:
    jwk = {k: v for k, v in {**prod.jwk(), **change}.items() if v is not None}
    document = {"keys": [jwk]}
    assert keys_from_jwks(document) == {}
    eat = DetachedEat(overall=sign_es384(_claims(submods={}), prod.private_key, kid=prod.kid), submods={})
    with pytest.raises(TokenError, match="may not verify ES384") as info:
        verify_token(eat, jwks=document, nonce=NONCE, now=NOW)
    assert reason in str(info.value.actual)


def test_jwk_use_sig_and_key_ops_verify_are_accepted(prod: TokenSigner) -> None:
    assert prod.kid in keys_from_jwks({"keys": [{**prod.jwk(), "key_ops": ["verify"]}]})
    bare = {k: v for k, v in prod.jwk().items() if k not in ("use", "alg")}
    assert prod.kid in keys_from_jwks({"keys": [bare]})


def test_duplicate_kid_and_x5c_mismatch_are_refused(prod: TokenSigner) -> None:
    other = TokenSigner.generate(kid="prod-1")
    assert keys_from_jwks({"keys": [prod.jwk(), other.jwk()]}) == {}
    not_a_certificate = base64.b64encode(b"\x30\x03\x02\x01\x00").decode()
    assert keys_from_jwks({"keys": [{**prod.jwk(), "x5c": [not_a_certificate]}]}) == {}
    assert keys_from_jwks({"keys": [{"kid": "k", "kty": "RSA", "n": "AQAB", "e": "AQAB"}]}) == {}


def test_jwks_text_is_read_strictly(prod: TokenSigner) -> None:
    text = json.dumps(jwks([prod]))
    assert prod.kid in keys_from_jwks(text) and prod.kid in keys_from_jwks(text.encode())
    for bad in (
        '{"keys": ' + "[" * 100_000 + "]" * 100_000 + "}",
        b"\xff",
        '{"keys": [], "keys": []}',
        "[]",
        "{}",
    ):
        with pytest.raises(TokenError):
            keys_from_jwks(bad)


# -- 4. every failure is a ccai error with a one-line message ------------------------------------


@pytest.fixture(scope="module")
def wire(prod: TokenSigner) -> str:
    return issue_token(_verified(simulated=False, gpus=2), signing_key=prod, now=NOW).dumps()


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_mutated_tokens_raise_only_ccai_errors(prod: TokenSigner, wire: str, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(wire) - 1))
    replacement = data.draw(st.text(max_size=3))
    mutated = wire[:position] + replacement + wire[position + 1 :]
    try:
        verify_token(mutated, jwks=jwks([prod]), nonce=NONCE, now=NOW)
    except Error as exc:
        assert "\n" not in exc.message


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_random_input_raises_only_token_errors(prod: TokenSigner, junk: bytes | str) -> None:
    with pytest.raises(TokenError):
        verify_token(junk, jwks=jwks([prod]), nonce=NONCE, now=NOW)
    with pytest.raises(TokenError):
        verify_token(
            DetachedEat(overall=str(junk), submods={}), jwks=jwks([prod]), nonce=NONCE, now=NOW + timedelta(0)
        )
