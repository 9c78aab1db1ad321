"""token stage of ccai: verified evidence → signed detached EAT; token verification; JWKS.

See docs/tokens.md. Tokens are ES384 only: ccai never signs with HS256 or ``alg: none`` and
refuses both (and every other algorithm) when verifying. Tokens of simulated evidence are signed
with a separate development key (``ccai-dev-`` kid) and refused unless ``allow_simulated=True``.

Keys and tokens from elsewhere: :class:`JwksClient` fetches an issuer's JWKS by URL (bounded,
cached for a TTL, refetched once on an unknown ``kid``) and :class:`AttestationServiceClient`
asks an attestation service (``ccai serve attestation`` or NRAS) for a token; both go through
``ccai.collateral``'s bounded HTTP base and raise ``CollateralUnavailable`` when they cannot ask.
"""

from __future__ import annotations

from ccai.token._eat import (
    DEFAULT_ISSUER,
    DEFAULT_LIFETIME,
    DetachedEat,
    VerifiedToken,
    issue_failure_token,
    issue_token,
    parse_detached_eat,
    submod_digest,
    verify_submod_digests,
    verify_token,
)
from ccai.token._jws import sign_es384, unverified_header, verify_es384
from ccai.token._keys import (
    DEVELOPMENT_KID_PREFIX,
    TokenSigner,
    is_development_kid,
    jwk_thumbprint,
    jwks,
    keys_from_jwks,
    public_jwk,
)
from ccai.token._remote import (
    DEFAULT_JWKS_TTL,
    JWKS_PATH,
    AttestationServiceClient,
    JwksClient,
    ServiceAnswer,
)

__all__ = [
    "DEFAULT_ISSUER",
    "DEFAULT_JWKS_TTL",
    "DEFAULT_LIFETIME",
    "DEVELOPMENT_KID_PREFIX",
    "JWKS_PATH",
    "AttestationServiceClient",
    "DetachedEat",
    "JwksClient",
    "ServiceAnswer",
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
