"""Compact JWS (RFC 7515) with exactly one algorithm: ES384 (ECDSA P-384 / SHA-384, RFC 7518 §3.4).

The signature primitive is ``cryptography``'s ECDSA; this module only frames it. Verification
accepts ``"alg": "ES384"`` and nothing else: ``none``, ``HS256`` (NVIDIA's local tools sign with
the constant key ``"secret"``) and every other value are refused before any key is looked at, so
an attacker cannot pick the algorithm.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from ccai.errors import TokenError

__all__ = ["ALGORITHM", "b64url_decode", "b64url_encode", "sign_es384", "unverified_header", "verify_es384"]

#: The only JWS algorithm ccai signs or accepts.
ALGORITHM = "ES384"
_COORDINATE = 48  # P-384 field size in bytes: the JWS signature is r ‖ s, 96 bytes
_MAX_TOKEN = 256 * 1024


def b64url_encode(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url strictly.

    Raises:
        TokenError: not base64url.
    """
    if "=" in text or any(c in text for c in "+/ \n"):
        raise TokenError("token segment is not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("token segment is not base64url") from None


def _json_segment(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(b64url_decode(text))
    except (ValueError, UnicodeDecodeError):
        raise TokenError(f"token {what} is not JSON") from None
    if not isinstance(value, dict):
        raise TokenError(f"token {what} is not a JSON object")
    return value


def sign_es384(claims: Mapping[str, Any], key: ec.EllipticCurvePrivateKey, *, kid: str) -> str:
    """Sign ``claims`` as a compact JWS with ES384 and the header ``{"alg","typ","kid"}``.

    Raises:
        TokenError: the key is not a P-384 key.
    """
    if not isinstance(key.curve, ec.SECP384R1):
        raise TokenError("ES384 needs a P-384 key", actual=key.curve.name)
    header = {"alg": ALGORITHM, "typ": "JWT", "kid": kid}
    signing_input = (
        b64url_encode(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url_encode(json.dumps(dict(claims), separators=(",", ":")).encode())
    )
    r, s = decode_dss_signature(key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA384())))
    return (
        signing_input + "." + b64url_encode(r.to_bytes(_COORDINATE, "big") + s.to_bytes(_COORDINATE, "big"))
    )


def _split(token: str) -> tuple[str, str, str]:
    if not isinstance(token, str) or len(token) > _MAX_TOKEN:
        raise TokenError("token is not a compact JWS string of acceptable size")
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise TokenError("token is not a compact JWS (header.payload.signature)")
    return parts[0], parts[1], parts[2]


def unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header of ``token``, decoded without verifying anything (to pick a key by ``kid``).

    Raises:
        TokenError: not a compact JWS.
    """
    return _json_segment(_split(token)[0], "header")


def verify_es384(token: str, keys: Mapping[str, ec.EllipticCurvePublicKey]) -> dict[str, Any]:
    """Verify a compact ES384 JWS with the key its ``kid`` names, and return its claims.

    Args:
        token: The compact JWS.
        keys: ``kid`` → P-384 public key.

    Returns:
        The payload (claims), only after the signature verified.

    Raises:
        TokenError: malformed token, an algorithm other than ES384, unknown ``kid``, or a bad signature.
    """
    header_text, payload_text, signature_text = _split(token)
    header = _json_segment(header_text, "header")
    alg = header.get("alg")
    if alg != ALGORITHM:
        raise TokenError("token algorithm not accepted", expected=ALGORITHM, actual=repr(alg))
    if "crit" in header:
        raise TokenError("token has critical header parameters ccai does not understand")
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise TokenError("token header has no key id (kid)")
    key = keys.get(kid)
    if key is None:
        raise TokenError("token signed with an unknown key", actual=kid, hint="check the JWKS")
    signature = b64url_decode(signature_text)
    if len(signature) != 2 * _COORDINATE:
        raise TokenError("ES384 signature must be 96 bytes", actual=len(signature))
    der = encode_dss_signature(
        int.from_bytes(signature[:_COORDINATE], "big"), int.from_bytes(signature[_COORDINATE:], "big")
    )
    try:
        key.verify(der, f"{header_text}.{payload_text}".encode("ascii"), ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise TokenError("token signature does not verify", index=kid) from None
    return _json_segment(payload_text, "payload")
