"""The JOSE pieces RCAR needs, built on ``cryptography`` (no JOSE library in the product).

* :func:`runtime_data_hash` — Trustee's commitment to the runtime-data: SHA-384 of its canonical
  JSON (keys sorted at every level, compact separators).
* :func:`encrypt_jwe` / :func:`decrypt_jwe` — flattened JSON JWE (RFC 7516 §7.2.2), ``enc``
  ``A256GCM``; ``alg`` ``ECDH-ES+A256KW`` (RFC 7518 §4.6, Concat KDF with SHA-256) for EC P-256 /
  P-521 keys, ``RSA-OAEP-256`` for RSA keys.
* :func:`sign_jwt` / :func:`verify_jwt` — ES384 compact JWTs (the broker's attestation-result token).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from ccai.errors import EvidenceError, UsageError, VerificationError

__all__ = [
    "PrivateTeeKey",
    "PublicTeeKey",
    "b64url",
    "b64url_decode",
    "canonical_json",
    "decrypt_jwe",
    "encrypt_jwe",
    "encrypt_jwe_to_key",
    "jwk_thumbprint",
    "private_jwk_pair",
    "public_jwk",
    "public_key_from_jwk",
    "runtime_data_hash",
    "sign_jwt",
    "verify_jwt",
]

PrivateTeeKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicTeeKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
_PublicKey = PublicTeeKey
_CURVES: dict[str, tuple[type[ec.EllipticCurve], int]] = {
    "P-256": (ec.SECP256R1, 32),
    "P-521": (ec.SECP521R1, 66),
}
_ECDH_ALG = "ECDH-ES+A256KW"
_RSA_ALG = "RSA-OAEP-256"
_ENC = "A256GCM"


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url with or without padding.

    Raises:
        EvidenceError: not base64url.
    """
    if not isinstance(text, str):
        raise EvidenceError("expected a base64url string")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError):
        raise EvidenceError("not valid base64url") from None


def canonical_json(value: Any) -> bytes:
    """Keys sorted at every level, compact separators (Trustee's serde_json canonical form)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def runtime_data_hash(runtime_data: Mapping[str, Any]) -> bytes:
    """SHA-384 of the canonical JSON of the RCAR runtime-data (48 bytes), as Trustee computes it."""
    return hashlib.sha384(canonical_json(dict(runtime_data))).digest()


def _int_b64(value: int, size: int) -> str:
    return b64url(value.to_bytes(size, "big"))


def public_jwk(key: PrivateTeeKey | _PublicKey) -> dict[str, str]:
    """The public JWK of an EC (P-256/P-521) or RSA key, with the JWE ``alg`` it is used with."""
    pub = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) else key
    if isinstance(pub, ec.EllipticCurvePublicKey):
        for crv, (cls, size) in _CURVES.items():
            if isinstance(pub.curve, cls):
                n = pub.public_numbers()
                return {
                    "kty": "EC",
                    "crv": crv,
                    "alg": _ECDH_ALG,
                    "x": _int_b64(n.x, size),
                    "y": _int_b64(n.y, size),
                }
        raise UsageError("EC tee keys must be P-256 or P-521")
    rn = pub.public_numbers()
    return {
        "kty": "RSA",
        "alg": _RSA_ALG,
        "n": _int_b64(rn.n, (rn.n.bit_length() + 7) // 8),
        "e": _int_b64(rn.e, 3),
    }


def private_jwk_pair() -> tuple[ec.EllipticCurvePrivateKey, dict[str, str]]:
    """A fresh ephemeral EC P-256 tee key and its public JWK."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key, public_jwk(key)


def public_key_from_jwk(jwk: Mapping[str, Any]) -> _PublicKey:
    """Parse a public tee-pubkey JWK (EC P-256/P-521 or RSA ≥ 2048 bits).

    Raises:
        EvidenceError: malformed or unsupported JWK.
    """
    if not isinstance(jwk, Mapping):
        raise EvidenceError("tee-pubkey must be a JWK object")
    kty = jwk.get("kty")
    try:
        if kty == "EC":
            crv = jwk.get("crv")
            if crv not in _CURVES:
                raise EvidenceError("tee-pubkey: EC keys must be P-256 or P-521", actual=str(crv))
            cls, size = _CURVES[str(crv)]
            x, y = b64url_decode(jwk["x"]), b64url_decode(jwk["y"])
            if len(x) != size or len(y) != size:
                raise EvidenceError("tee-pubkey: wrong coordinate size")
            return ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), cls()
            ).public_key()
        if kty == "RSA":
            n, e = (
                int.from_bytes(b64url_decode(jwk["n"]), "big"),
                int.from_bytes(b64url_decode(jwk["e"]), "big"),
            )
            if n.bit_length() < 2048:
                raise EvidenceError("tee-pubkey: RSA keys must have at least 2048 bits")
            return rsa.RSAPublicNumbers(e, n).public_key()
    except (KeyError, ValueError, TypeError):
        raise EvidenceError("tee-pubkey: malformed JWK") from None
    raise EvidenceError("tee-pubkey: kty must be EC or RSA", actual=str(kty))


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 thumbprint (SHA-256, base64url) of a public EC or RSA JWK."""
    members = ("crv", "kty", "x", "y") if jwk.get("kty") == "EC" else ("e", "kty", "n")
    return b64url(hashlib.sha256(canonical_json({k: jwk.get(k) for k in members})).digest())


def _concat_kdf(z: bytes, alg: str, bits: int = 256) -> bytes:
    # RFC 7518 §4.6.2: one round of SHA-256 suffices for 256 bits; PartyU/PartyV empty.
    other = len(alg).to_bytes(4, "big") + alg.encode() + b"\0" * 4 + b"\0" * 4 + bits.to_bytes(4, "big")
    return hashlib.sha256(b"\0\0\0\1" + z + other).digest()[: bits // 8]


def encrypt_jwe(plaintext: bytes, jwk: Mapping[str, Any]) -> dict[str, str]:
    """Encrypt ``plaintext`` to the tee-pubkey ``jwk`` as a flattened JSON JWE.

    Raises:
        EvidenceError: the JWK is malformed or unsupported.
    """
    return encrypt_jwe_to_key(plaintext, public_key_from_jwk(jwk))


def encrypt_jwe_to_key(plaintext: bytes, pub: PublicTeeKey) -> dict[str, str]:
    """:func:`encrypt_jwe` to an already parsed tee key (EC P-256/P-521 or RSA)."""
    cek = AESGCM.generate_key(bit_length=256)
    header: dict[str, Any]
    if isinstance(pub, ec.EllipticCurvePublicKey):
        eph = ec.generate_private_key(pub.curve)
        epk = public_jwk(eph)
        header = {"alg": _ECDH_ALG, "enc": _ENC, "epk": {k: epk[k] for k in ("kty", "crv", "x", "y")}}
        kek = _concat_kdf(eph.exchange(ec.ECDH(), pub), _ECDH_ALG)
        encrypted_key = aes_key_wrap(kek, cek)
    else:
        header = {"alg": _RSA_ALG, "enc": _ENC}
        encrypted_key = pub.encrypt(
            cek, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
        )
    protected = b64url(canonical_json(header))
    iv = os.urandom(12)
    sealed = AESGCM(cek).encrypt(iv, plaintext, protected.encode("ascii"))
    return {
        "protected": protected,
        "encrypted_key": b64url(encrypted_key),
        "iv": b64url(iv),
        "ciphertext": b64url(sealed[:-16]),
        "tag": b64url(sealed[-16:]),
    }


def decrypt_jwe(jwe: Mapping[str, Any], key: PrivateTeeKey) -> bytes:
    """Decrypt a flattened JSON JWE made by :func:`encrypt_jwe` (or Trustee) with the tee key.

    Raises:
        VerificationError: one opaque error for every failure (bad header, wrong key, tampering).
    """
    try:
        protected = str(jwe["protected"])
        header = json.loads(b64url_decode(protected))
        if header.get("enc") != _ENC:
            raise ValueError("enc")
        encrypted_key = b64url_decode(jwe["encrypted_key"])
        if header.get("alg") == _ECDH_ALG and isinstance(key, ec.EllipticCurvePrivateKey):
            epk = public_key_from_jwk(header["epk"])
            if not isinstance(epk, ec.EllipticCurvePublicKey):
                raise ValueError("epk")
            cek = aes_key_unwrap(_concat_kdf(key.exchange(ec.ECDH(), epk), _ECDH_ALG), encrypted_key)
        elif header.get("alg") == _RSA_ALG and isinstance(key, rsa.RSAPrivateKey):
            cek = key.decrypt(
                encrypted_key,
                padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
            )
        else:
            raise ValueError("alg")
        sealed = b64url_decode(jwe["ciphertext"]) + b64url_decode(jwe["tag"])
        return AESGCM(cek).decrypt(b64url_decode(jwe["iv"]), sealed, protected.encode("ascii"))
    except (KeyError, ValueError, TypeError, InvalidTag, InvalidUnwrap, EvidenceError):
        raise VerificationError("the resource JWE does not decrypt with this tee key") from None


def sign_jwt(claims: Mapping[str, Any], key: ec.EllipticCurvePrivateKey, *, kid: str) -> str:
    """A compact ES384 JWT over ``claims``."""
    head = b64url(canonical_json({"alg": "ES384", "typ": "JWT", "kid": kid}))
    body = b64url(canonical_json(dict(claims)))
    der = key.sign(f"{head}.{body}".encode("ascii"), ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(der)
    return f"{head}.{body}.{b64url(r.to_bytes(48, 'big') + s.to_bytes(48, 'big'))}"


def verify_jwt(token: str, key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
    """Check an ES384 JWT's signature and return its claims (expiry is the caller's check).

    Raises:
        VerificationError: malformed or badly signed.
    """
    try:
        head, body, sig = token.split(".")
        header = json.loads(b64url_decode(head))
        if header.get("alg") != "ES384":
            raise ValueError("alg")
        raw = b64url_decode(sig)
        if len(raw) != 96:
            raise ValueError("sig")
        der = encode_dss_signature(int.from_bytes(raw[:48], "big"), int.from_bytes(raw[48:], "big"))
        key.verify(der, f"{head}.{body}".encode("ascii"), ec.ECDSA(hashes.SHA384()))
        claims = json.loads(b64url_decode(body))
    except (ValueError, TypeError, InvalidSignature, EvidenceError):
        raise VerificationError("the attestation token is malformed or not signed by this broker") from None
    if not isinstance(claims, dict):
        raise VerificationError("the attestation token's claims are not an object")
    return claims
