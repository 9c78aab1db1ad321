"""Token signing keys (EC P-384) and the JWKS document that publishes them.

Two kinds of key, never interchangeable (docs/tokens.md, "Development key"):

* the **production key** (``$CCAI_HOME/token-signing-key.pem``; ``kid`` = RFC 7638 thumbprint)
  signs tokens for evidence from real hardware only;
* the **development key** (``$CCAI_HOME/token-dev-signing-key.pem``; ``kid`` =
  ``ccai-dev-<thumbprint>``, published with ``"x-ccai-development": true``) signs tokens for
  simulated evidence only, and :func:`~ccai.token.verify_token` refuses its tokens unless the caller
  passes ``allow_simulated=True``.

A production signer may not use a ``ccai-dev-`` ``kid``, a development signer must, and one key
may not be published as both.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ccai._files import atomic_write, private_dir
from ccai._home import ccai_home
from ccai._json import load_json
from ccai.errors import TokenError, UsageError
from ccai.token._jws import ALGORITHM, b64url_decode, b64url_encode

__all__ = [
    "DEVELOPMENT_KID_PREFIX",
    "DEVELOPMENT_MARKER",
    "TokenSigner",
    "is_development_kid",
    "jwk_thumbprint",
    "jwks",
    "keys_from_jwks",
    "public_jwk",
]

#: Every development key's ``kid`` starts with this; production ``kid`` values may not.
DEVELOPMENT_KID_PREFIX = "ccai-dev-"
#: JWK member that marks a development key in a JWKS document.
DEVELOPMENT_MARKER = "x-ccai-development"
_KEY_FILE = "token-signing-key.pem"
_DEV_KEY_FILE = "token-dev-signing-key.pem"
_COORDINATE = 48
_JWKS_DEPTH = 8


def is_development_kid(kid: str) -> bool:
    """Whether ``kid`` names a development key (it starts with ``ccai-dev-``)."""
    return kid.startswith(DEVELOPMENT_KID_PREFIX)


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


def public_jwk(key: ec.EllipticCurvePublicKey, *, kid: str) -> dict[str, Any]:
    """The public JWK of a P-384 key, for a JWKS document.

    A development ``kid`` (``ccai-dev-…``) also gets ``"x-ccai-development": true``.
    """
    x, y = _coordinates(key)
    jwk: dict[str, Any] = {
        "kty": "EC",
        "crv": "P-384",
        "x": x,
        "y": y,
        "kid": kid,
        "alg": ALGORITHM,
        "use": "sig",
    }
    if is_development_kid(kid):
        jwk[DEVELOPMENT_MARKER] = True
    return jwk


class TokenSigner:
    """An ES384 signing key with its ``kid``: a production key, or a development key for tokens
    of simulated evidence.

    Args:
        private_key: A P-384 private key.
        kid: Key id; defaults to the key's RFC 7638 thumbprint, prefixed ``ccai-dev-`` for a
            development key.
        development: This is the development key (signs simulated evidence only).

    Raises:
        UsageError: the key is not a P-384 EC key, or ``kid`` does not match the kind of key
            (a ``ccai-dev-`` prefix exactly for development keys).
    """

    def __init__(
        self, private_key: ec.EllipticCurvePrivateKey, *, kid: str | None = None, development: bool = False
    ) -> None:
        if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(
            private_key.curve, ec.SECP384R1
        ):
            raise UsageError("token signing keys must be EC P-384 (ES384)")
        if kid is None:
            kid = jwk_thumbprint(private_key.public_key())
            if development:
                kid = DEVELOPMENT_KID_PREFIX + kid
        if not isinstance(kid, str) or not kid:
            raise UsageError("a token signing key needs a non-empty kid")
        if development and not is_development_kid(kid):
            raise UsageError(
                f"a development key's kid must start with {DEVELOPMENT_KID_PREFIX!r}", actual=kid
            )
        if not development and is_development_kid(kid):
            raise UsageError(
                f"the kid prefix {DEVELOPMENT_KID_PREFIX!r} is reserved for development keys", actual=kid
            )
        self.private_key = private_key
        self.kid = kid
        self.development = development

    def __repr__(self) -> str:
        kind = ", development=True" if self.development else ""
        return f"TokenSigner(kid={self.kid!r}{kind})"

    @classmethod
    def generate(cls, *, kid: str | None = None, development: bool = False) -> TokenSigner:
        """A new random P-384 key."""
        return cls(ec.generate_private_key(ec.SECP384R1()), kid=kid, development=development)

    @classmethod
    def from_pem(cls, pem: bytes, *, kid: str | None = None, development: bool = False) -> TokenSigner:
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
        return cls(key, kid=kid, development=development)

    @classmethod
    def load_or_create(
        cls, path: str | os.PathLike[str] | None = None, *, kid: str | None = None, development: bool = False
    ) -> TokenSigner:
        """Load the key at ``path``, creating it (mode 0600 in a 0700 directory, whatever the umask)
        when absent.

        The default path is ``$CCAI_HOME/token-signing-key.pem`` for the production key and
        ``$CCAI_HOME/token-dev-signing-key.pem`` for the development key: two files, two keys.
        Creation never replaces a file: when two processes create the key at once, both end up
        with the one that was published first.

        Raises:
            UsageError: the file exists but is not a P-384 private key, or cannot be written.
        """
        default = _DEV_KEY_FILE if development else _KEY_FILE
        file = Path(path) if path is not None else ccai_home() / default
        try:
            return cls.from_pem(file.read_bytes(), kid=kid, development=development)
        except FileNotFoundError:
            pass
        signer = cls.generate(kid=kid, development=development)
        try:
            private_dir(file.parent)
            atomic_write(file, signer.private_pem(), mode=0o600, replace=False)
        except FileExistsError:
            return cls.from_pem(file.read_bytes(), kid=kid, development=development)
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

    def jwk(self) -> dict[str, Any]:
        """The public JWK (with ``"x-ccai-development": true`` for a development key)."""
        return public_jwk(self.public_key, kid=self.kid)


def jwks(keys: Iterable[TokenSigner | tuple[str, ec.EllipticCurvePublicKey]]) -> dict[str, Any]:
    """A JWKS document (RFC 7517 §5) publishing the public halves of ``keys``.

    Development keys (``ccai-dev-`` kids) are published with ``"x-ccai-development": true``;
    verifiers refuse their tokens unless asked for simulation by name.

    Args:
        keys: Signers, or ``(kid, public key)`` pairs (for keys being rotated out).

    Returns:
        ``{"keys": [{"kty": "EC", "crv": "P-384", "x", "y", "kid", "alg": "ES384", "use": "sig"}, …]}``.

    Raises:
        UsageError: two entries share a ``kid``, or one key is published both as a development and
            as a production key.
    """
    out: list[dict[str, Any]] = []
    kinds: dict[str, bool] = {}
    for item in keys:
        if isinstance(item, TokenSigner):
            jwk = item.jwk()
        else:
            kid, key = item
            jwk = public_jwk(key, kid=kid)
        if any(jwk["kid"] == other["kid"] for other in out):
            raise UsageError("a JWKS cannot name two keys with one kid", actual=jwk["kid"])
        development = is_development_kid(jwk["kid"])
        thumbprint = f"{jwk['x']}.{jwk['y']}"
        if kinds.setdefault(thumbprint, development) != development:
            raise UsageError("one key cannot be both a development and a production key", actual=jwk["kid"])
        out.append(jwk)
    return {"keys": out}


@dataclass(frozen=True, slots=True)
class JwksKeys:
    """A JWKS document read for verification.

    Attributes:
        keys: ``kid`` → P-384 key, for every usable signature key (development keys included).
        development: The kids of development keys (``ccai-dev-`` prefix or the JWK marker).
        refused: ``kid`` → why that entry may not verify signatures.
    """

    keys: Mapping[str, ec.EllipticCurvePublicKey] = field(default_factory=dict)
    development: frozenset[str] = frozenset()
    refused: Mapping[str, str] = field(default_factory=dict)


def _coordinate(jwk: Mapping[str, Any], name: str) -> int:
    value = jwk.get(name)
    if not isinstance(value, str):
        raise ValueError(f"'{name}' is missing")
    try:
        raw = b64url_decode(value)
    except TokenError:
        raise ValueError(f"'{name}' is not base64url") from None
    if len(raw) != _COORDINATE:
        raise ValueError(f"'{name}' is not 48 bytes")  # RFC 7518 §6.2.1.2: full length
    return int.from_bytes(raw, "big")


def _usable_key(jwk: Mapping[str, Any]) -> ec.EllipticCurvePublicKey:
    """The P-384 signature-verification key of one JWK.

    Raises:
        ValueError: why this JWK may not verify ES384 signatures (one line).
    """
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise ValueError(f"use is {use!r}, not 'sig'")
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        raise ValueError("key_ops does not allow 'verify'")
    if jwk.get("alg") not in (None, ALGORITHM):
        raise ValueError(f"alg is {jwk.get('alg')!r}, not {ALGORITHM}")
    if jwk.get("kty") not in (None, "EC") or ("x" in jwk and jwk.get("kty") != "EC"):
        raise ValueError(f"kty is {jwk.get('kty')!r}, not 'EC'")
    if jwk.get("crv") not in (None, "P-384") or ("x" in jwk and jwk.get("crv") != "P-384"):
        raise ValueError(f"crv is {jwk.get('crv')!r}, not 'P-384'")
    if "d" in jwk:
        raise ValueError("the JWKS publishes a private key")
    key: ec.EllipticCurvePublicKey | None = None
    if "x" in jwk or "y" in jwk:
        numbers = ec.EllipticCurvePublicNumbers(_coordinate(jwk, "x"), _coordinate(jwk, "y"), ec.SECP384R1())
        try:
            key = numbers.public_key()
        except ValueError:
            raise ValueError("x/y is not a point on P-384") from None
    x5c = jwk.get("x5c")
    if x5c is not None:
        # NRAS publishes its keys as x5c certificates (gpu-evidence.md §10).
        if not isinstance(x5c, list) or not x5c or not isinstance(x5c[0], str):
            raise ValueError("x5c is not a list of certificates")
        try:
            cert_key = x509.load_der_x509_certificate(base64.b64decode(x5c[0], validate=True)).public_key()
        except (ValueError, binascii.Error):
            raise ValueError("x5c[0] is not a DER certificate") from None
        if not isinstance(cert_key, ec.EllipticCurvePublicKey) or not isinstance(
            cert_key.curve, ec.SECP384R1
        ):
            raise ValueError("x5c[0] does not hold an EC P-384 key")
        if key is not None and key.public_numbers() != cert_key.public_numbers():
            raise ValueError("x/y and x5c[0] hold different keys")
        key = cert_key
    if key is None:
        raise ValueError("neither x/y nor x5c")
    return key


def read_jwks(document: Mapping[str, Any] | str | bytes) -> JwksKeys:
    """Read a JWKS document for verification: usable keys, development kids, refused entries.

    An entry is refused (never used to verify) when its ``use`` is not ``sig``, its ``key_ops``
    lack ``verify``, its ``alg`` is not ES384, it is not an EC P-384 key, its coordinates are not
    canonical 48-byte values on the curve, it carries a private key, its ``kid`` appears twice, or
    its key is published under both a development and a production ``kid``.

    Raises:
        TokenError: the document is not a JWKS (or not strict JSON, when given as text).
    """
    if isinstance(document, str | bytes):
        document = load_json(document, what="JWKS", max_depth=_JWKS_DEPTH, error=TokenError)
    entries = document.get("keys") if isinstance(document, Mapping) else None
    if not isinstance(entries, list):
        raise TokenError("not a JWKS document (no 'keys' list)")
    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    development: set[str] = set()
    refused: dict[str, str] = {}
    for jwk in entries:
        if not isinstance(jwk, Mapping) or not isinstance(jwk.get("kid"), str) or not jwk["kid"]:
            continue  # no token can name it
        kid: str = jwk["kid"]
        if kid in keys or kid in refused:
            keys.pop(kid, None)
            refused[kid] = "the JWKS names two keys with this kid"
            continue
        marker = jwk.get(DEVELOPMENT_MARKER, False)
        if not isinstance(marker, bool):
            refused[kid] = f"{DEVELOPMENT_MARKER} is not a boolean"
            continue
        try:
            keys[kid] = _usable_key(jwk)
        except ValueError as exc:
            refused[kid] = str(exc).splitlines()[0] if str(exc) else "not a P-384 key"
            continue
        if marker or is_development_kid(kid):
            development.add(kid)
    # One key under a development and a production kid would let the development key (the one
    # more likely to sit on a laptop) sign production tokens: refuse both entries.
    by_point: dict[tuple[int, int], list[str]] = {}
    for kid, key in keys.items():
        numbers = key.public_numbers()
        by_point.setdefault((numbers.x, numbers.y), []).append(kid)
    for kids in by_point.values():
        if len({kid in development for kid in kids}) > 1:
            for kid in kids:
                del keys[kid]
                refused[kid] = "one key is published as both a development and a production key"
    return JwksKeys(keys=keys, development=frozenset(development & set(keys)), refused=refused)


def keys_from_jwks(
    document: Mapping[str, Any] | str | bytes, *, allow_development: bool = False
) -> dict[str, ec.EllipticCurvePublicKey]:
    """``kid`` → P-384 public key, from a JWKS document (``x``/``y`` or ``x5c[0]``).

    Only signature keys for ES384 are returned (see :func:`read_jwks` for what is refused).
    Development keys are left out unless ``allow_development`` is set.

    Raises:
        TokenError: the document is not a JWKS.
    """
    read = read_jwks(document)
    return {kid: key for kid, key in read.keys.items() if allow_development or kid not in read.development}
