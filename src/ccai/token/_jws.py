"""Compact JWS (RFC 7515) with exactly one algorithm: ES384 (ECDSA P-384 / SHA-384, RFC 7518 §3.4).

The signature primitive is ``cryptography``'s ECDSA; this module only frames it, strictly:

* exactly three non-empty segments, each *canonical* unpadded base64url: only the URL-safe
  alphabet, and re-encoding the decoded bytes gives back the same text, so trailing junk bits or
  bytes appended to a segment are refused;
* header and payload are UTF-8 JSON objects read by :func:`ccai._json.load_json` (depth limit, no
  duplicate keys, no NaN);
* the header names ``"alg": "ES384"`` and nothing else — ``none``, ``HS256`` (NVIDIA's local tools
  sign with the constant key ``"secret"``) and every other value are refused before any key is
  looked at, so an attacker cannot pick the algorithm; it must carry a ``kid``; ``crit`` is refused,
  and so are ``jku``/``x5u``/``jwk``/``x5c`` (ccai never takes a key from, or fetches one named by,
  the token it is verifying) and ``b64``/``zip``;
* the signature is exactly 96 bytes ``r ‖ s`` with ``1 <= r, s < n`` and, unless the caller accepts
  high-S signatures by name, ``s <= n/2`` (low-S), so ``(r, n - s)`` — the same signature in its
  other form — is refused; ccai only ever issues low-S signatures.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from ccai._json import load_json
from ccai.errors import TokenError

__all__ = ["ALGORITHM", "b64url_decode", "b64url_encode", "sign_es384", "unverified_header", "verify_es384"]

#: The only JWS algorithm ccai signs or accepts.
ALGORITHM = "ES384"
_COORDINATE = 48  # P-384 field size in bytes: the JWS signature is r ‖ s, 96 bytes
#: Order n of the P-384 base point (FIPS 186-4 §D.1.2.4 / SEC 2 §2.5.1).
P384_ORDER = int(
    "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973", 16
)
_HALF_ORDER = P384_ORDER // 2
_MAX_TOKEN = 256 * 1024
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
# Header parameters that would make the token choose or carry its own key, or change how the
# payload is encoded (RFC 7515 §4.1.2-4.1.6, RFC 7797, RFC 7516 zip): never honoured, so refused.
_REFUSED_HEADER = ("jku", "x5u", "jwk", "x5c", "b64", "zip")
_HEADER_DEPTH = 4
_PAYLOAD_DEPTH = 32  # claims-3.0 nest a few levels (submods, certificate-chain objects)


def b64url_encode(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode canonical unpadded base64url (RFC 7515 §2, RFC 4648 §5 and §3.5).

    Only the URL-safe alphabet, no padding, no whitespace, a length that base64 can produce, and
    zero unused bits, so that each byte string has exactly one accepted encoding.

    Raises:
        TokenError: not canonical base64url.
    """
    if not isinstance(text, str) or not _BASE64URL.fullmatch(text) or len(text) % 4 == 1:
        raise TokenError("token segment is not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("token segment is not base64url") from None
    if b64url_encode(data) != text:
        raise TokenError("token segment is not canonical base64url (non-zero trailing bits)")
    return data


def _json_object(data: bytes, what: str, *, max_depth: int) -> dict[str, Any]:
    value = load_json(data, what=f"token {what}", max_depth=max_depth, error=TokenError)
    if not isinstance(value, dict):
        raise TokenError(f"token {what} is not a JSON object")
    return value


def sign_es384(claims: Mapping[str, Any], key: ec.EllipticCurvePrivateKey, *, kid: str) -> str:
    """Sign ``claims`` as a compact JWS with ES384 and the header ``{"alg","typ","kid"}``.

    The signature is normalised to low-S (``s <= n/2``), the only form :func:`verify_es384`
    accepts by default.

    Raises:
        TokenError: the key is not a P-384 key, or ``kid`` is empty.
    """
    if not isinstance(key.curve, ec.SECP384R1):
        raise TokenError("ES384 needs a P-384 key", actual=key.curve.name)
    if not isinstance(kid, str) or not kid:
        raise TokenError("an ES384 token needs a key id (kid)")
    header = {"alg": ALGORITHM, "typ": "JWT", "kid": kid}
    signing_input = (
        b64url_encode(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url_encode(json.dumps(dict(claims), separators=(",", ":"), allow_nan=False).encode())
    )
    r, s = decode_dss_signature(key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA384())))
    if s > _HALF_ORDER:
        s = P384_ORDER - s  # (r, n - s) is the same signature in low-S form
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
        TokenError: not a compact JWS, or the header is not a strict JSON object.
    """
    return _json_object(b64url_decode(_split(token)[0]), "header", max_depth=_HEADER_DEPTH)


def _check_header(header: Mapping[str, Any]) -> str:
    """The header's ``kid`` after checking ``alg``, ``crit`` and the refused parameters."""
    alg = header.get("alg")
    if alg != ALGORITHM:
        raise TokenError("token algorithm not accepted", expected=ALGORITHM, actual=repr(alg))
    if "crit" in header:
        raise TokenError("token has critical header parameters ccai does not understand")
    refused = sorted(name for name in _REFUSED_HEADER if name in header)
    if refused:
        raise TokenError(
            "token header parameter not accepted",
            actual=", ".join(refused),
            hint="keys come only from the JWKS",
        )
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenError("token header has no key id (kid)")
    typ = header.get("typ")
    if typ is not None and not isinstance(typ, str):
        raise TokenError("token header typ is not a string")
    return kid


def _signature(text: str, *, allow_high_s: bool) -> bytes:
    """The DER form of a raw ES384 ``r ‖ s`` after the length, range and low-S checks."""
    raw = b64url_decode(text)
    if len(raw) != 2 * _COORDINATE:
        raise TokenError("ES384 signature must be 96 bytes", actual=len(raw))
    r = int.from_bytes(raw[:_COORDINATE], "big")
    s = int.from_bytes(raw[_COORDINATE:], "big")
    if not (0 < r < P384_ORDER and 0 < s < P384_ORDER):
        raise TokenError("ES384 signature values are out of range")
    if s > _HALF_ORDER and not allow_high_s:
        raise TokenError(
            "ES384 signature is not in low-S form",
            hint="ccai issues low-S only; pass allow_high_s=True for issuers that do not normalise S",
        )
    return encode_dss_signature(r, s)


def verify_es384(
    token: str, keys: Mapping[str, ec.EllipticCurvePublicKey], *, allow_high_s: bool = False
) -> dict[str, Any]:
    """Verify a compact ES384 JWS with the key its ``kid`` names, and return its claims.

    Args:
        token: The compact JWS.
        keys: ``kid`` → P-384 public key.
        allow_high_s: Accept ``s > n/2`` (issuers such as NRAS do not normalise S; the signature is
            still checked). Off by default: ccai's own tokens are always low-S.

    Returns:
        The payload (claims), only after the signature verified.

    Raises:
        TokenError: malformed token, an algorithm other than ES384, a refused header parameter,
            unknown ``kid``, a malformed or high-S signature, or a signature that does not verify.
    """
    header_text, payload_text, signature_text = _split(token)
    kid = _check_header(_json_object(b64url_decode(header_text), "header", max_depth=_HEADER_DEPTH))
    key = keys.get(kid)
    if key is None:
        raise TokenError("token signed with an unknown key", actual=kid, hint="check the JWKS")
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise TokenError("token key is not an EC P-384 key", index=kid)
    der = _signature(signature_text, allow_high_s=allow_high_s)
    payload = b64url_decode(payload_text)  # all three segments are now canonical base64url (ASCII)
    try:
        key.verify(der, f"{header_text}.{payload_text}".encode("ascii"), ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise TokenError("token signature does not verify", index=kid) from None
    return _json_object(payload, "payload", max_depth=_PAYLOAD_DEPTH)
