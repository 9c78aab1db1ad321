"""Token signing keys (EC P-384) and the JWKS document that publishes them."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ccai._files import atomic_write, private_dir
from ccai._home import ccai_home
from ccai.errors import TokenError, UsageError
from ccai.token._jws import ALGORITHM, b64url_decode, b64url_encode

__all__ = ["TokenSigner", "jwk_thumbprint", "jwks", "keys_from_jwks", "public_jwk"]

_KEY_FILE = "token-signing-key.pem"
_COORDINATE = 48


def _coordinates(key: ec.EllipticCurvePublicKey) -> tuple[str, str]:
    numbers = key.public_numbers()
    return b64url_encode(numbers.x.to_bytes(_COORDINATE, "big")), b64url_encode(
        numbers.y.to_bytes(_COORDINATE, "big")
    )


def jwk_thumbprint(key: ec.EllipticCurvePublicKey) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256, base64url) of a P-384 public key: a stable ``kid``."""
    x, y = _coordinates(key)
    canonical = json.dumps(
        {"crv": "P-384", "kty": "EC", "x": x, "y": y}, separators=(",", ":"), sort_keys=True
    )
    return b64url_encode(hashlib.sha256(canonical.encode()).digest())


def public_jwk(key: ec.EllipticCurvePublicKey, *, kid: str) -> dict[str, str]:
    """The public JWK of a P-384 key, for a JWKS document."""
    x, y = _coordinates(key)
    return {"kty": "EC", "crv": "P-384", "x": x, "y": y, "kid": kid, "alg": ALGORITHM, "use": "sig"}


class TokenSigner:
    """An ES384 signing key with its ``kid``.

    Args:
        private_key: A P-384 private key.
        kid: Key id; defaults to the key's RFC 7638 thumbprint.

    Raises:
        UsageError: the key is not a P-384 EC key.
    """

    def __init__(self, private_key: ec.EllipticCurvePrivateKey, *, kid: str | None = None) -> None:
        if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(
            private_key.curve, ec.SECP384R1
        ):
            raise UsageError("token signing keys must be EC P-384 (ES384)")
        self.private_key = private_key
        self.kid = kid or jwk_thumbprint(private_key.public_key())

    def __repr__(self) -> str:
        return f"TokenSigner(kid={self.kid!r})"

    @classmethod
    def generate(cls, *, kid: str | None = None) -> TokenSigner:
        """A new random P-384 key."""
        return cls(ec.generate_private_key(ec.SECP384R1()), kid=kid)

    @classmethod
    def from_pem(cls, pem: bytes, *, kid: str | None = None) -> TokenSigner:
        """Load an unencrypted PKCS#8 or SEC1 PEM private key.

        Raises:
            UsageError: not a P-384 private key.
        """
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"cannot load the token signing key: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise UsageError("token signing keys must be EC P-384 (ES384)")
        return cls(key, kid=kid)

    @classmethod
    def load_or_create(
        cls, path: str | os.PathLike[str] | None = None, *, kid: str | None = None
    ) -> TokenSigner:
        """Load the key at ``path`` (default ``$CCAI_HOME/token-signing-key.pem``), creating it
        (mode 0600 in a 0700 directory, whatever the umask) when absent.

        Creation never replaces a file: when two processes create the key at once, both end up
        with the one that was published first.

        Raises:
            UsageError: the file exists but is not a P-384 private key, or cannot be written.
        """
        file = Path(path) if path is not None else ccai_home() / _KEY_FILE
        try:
            return cls.from_pem(file.read_bytes(), kid=kid)
        except FileNotFoundError:
            pass
        signer = cls.generate(kid=kid)
        try:
            private_dir(file.parent)
            atomic_write(file, signer.private_pem(), mode=0o600, replace=False)
        except FileExistsError:
            return cls.from_pem(file.read_bytes(), kid=kid)
        except OSError as exc:
            raise UsageError(f"cannot write the token signing key {file}: {exc.strerror}") from None
        return signer

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (store it with mode 0600)."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The public key."""
        return self.private_key.public_key()

    def jwk(self) -> dict[str, str]:
        """The public JWK."""
        return public_jwk(self.public_key, kid=self.kid)


def jwks(keys: Iterable[TokenSigner | tuple[str, ec.EllipticCurvePublicKey]]) -> dict[str, Any]:
    """A JWKS document (RFC 7517 §5) publishing the public halves of ``keys``.

    Args:
        keys: Signers, or ``(kid, public key)`` pairs (for keys being rotated out).

    Returns:
        ``{"keys": [{"kty": "EC", "crv": "P-384", "x", "y", "kid", "alg": "ES384", "use": "sig"}, …]}``.
    """
    out: list[dict[str, str]] = []
    for item in keys:
        if isinstance(item, TokenSigner):
            out.append(item.jwk())
        else:
            kid, key = item
            out.append(public_jwk(key, kid=kid))
    return {"keys": out}


def _ec_key_from_jwk(jwk: Mapping[str, Any]) -> ec.EllipticCurvePublicKey | None:
    if jwk.get("kty") == "EC" and jwk.get("crv") == "P-384" and "x" in jwk and "y" in jwk:
        try:
            x = int.from_bytes(b64url_decode(str(jwk["x"])), "big")
            y = int.from_bytes(b64url_decode(str(jwk["y"])), "big")
            return ec.EllipticCurvePublicNumbers(x, y, ec.SECP384R1()).public_key()
        except ValueError:
            raise TokenError("JWKS holds an invalid P-384 key", index=str(jwk.get("kid"))) from None
    x5c = jwk.get("x5c")
    if isinstance(x5c, list) and x5c:
        # NRAS publishes its keys as x5c certificates (gpu-evidence.md §10).
        try:
            cert = x509.load_der_x509_certificate(base64.b64decode(str(x5c[0]), validate=True))
        except (ValueError, binascii.Error):
            raise TokenError("JWKS x5c certificate is not valid", index=str(jwk.get("kid"))) from None
        key = cert.public_key()
        if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP384R1):
            return key
    return None


def keys_from_jwks(document: Mapping[str, Any]) -> dict[str, ec.EllipticCurvePublicKey]:
    """``kid`` → P-384 public key, from a JWKS document (``x``/``y`` or ``x5c[0]``).

    Keys of other types are skipped: ES384 is the only algorithm accepted.

    Raises:
        TokenError: the document is not a JWKS, or a P-384 entry is invalid.
    """
    entries = document.get("keys") if isinstance(document, Mapping) else None
    if not isinstance(entries, list):
        raise TokenError("not a JWKS document (no 'keys' list)")
    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    for jwk in entries:
        if not isinstance(jwk, Mapping) or not isinstance(jwk.get("kid"), str):
            continue
        if jwk.get("alg") not in (None, ALGORITHM):
            continue
        key = _ec_key_from_jwk(jwk)
        if key is not None:
            keys[str(jwk["kid"])] = key
    return keys
