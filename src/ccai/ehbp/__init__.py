"""ehbp stage of ccai: the Encrypted HTTP Body Protocol, wire-compatible with Tinfoil's EHBP.

Request and response bodies are encrypted end to end between a client and the server holding an
X25519 key (HPKE base mode, X25519 / HKDF-SHA256 / AES-256-GCM; the response under keys derived
OHTTP-style from the request's context), in length-prefixed frames, while headers stay in clear
for proxies. docs/confidential-serving.md ("Encrypted bodies") describes the protocol and its
limits; landscape.md §5 the reference.

* :class:`ServerKey` and :class:`KeyConfig`: the server's key and its RFC 9458 key configuration
  (``/.well-known/hpke-keys``).
* :class:`EhbpMiddleware`: pure ASGI middleware for the server side (no buffering; refuses
  plaintext outside its exempt paths; the 422 key-configuration problem for a stale key;
  :meth:`EhbpMiddleware.rotate` replaces the key at runtime).
* :class:`EhbpTransport` / :class:`AsyncEhbpTransport`: httpx transports for the client side,
  pinned to a key that an attestation authenticated; optional re-key on the 422 problem.
* Errors: one class per EHBP error code, all :class:`ccai.errors.EhbpError` with ``.code``.

The key this package pins is only as trustworthy as the channel that delivered it:
``ccai.client`` takes it from a verified attestation that binds it.
"""

from __future__ import annotations

from ccai.ehbp._client import (
    AsyncEhbpTransport,
    AsyncRekey,
    EhbpTransport,
    Rekey,
    fetch_key_config,
    key_config_from_response,
)
from ccai.ehbp._errors import (
    AeadDecryptFailed,
    ChunkTooLarge,
    DuplicateResponseNonce,
    FramingTruncated,
    HpkeSetupFailed,
    InvalidEncapsulatedKey,
    InvalidInput,
    InvalidKeyConfig,
    InvalidResponseNonce,
    KeyConfigMismatch,
    MissingResponseNonce,
    SequenceOverflow,
    UnsupportedSuite,
)
from ccai.ehbp._protocol import (
    ENCAPSULATED_KEY_HEADER,
    FRAME_SIZE,
    KEY_CONFIG_PROBLEM_TYPE,
    KEYS_MEDIA_TYPE,
    KEYS_PATH,
    MAX_FRAME_LENGTH,
    RESPONSE_NONCE_HEADER,
    KeyConfig,
    ServerKey,
)
from ccai.ehbp._server import (
    DEFAULT_EXEMPT_PATHS,
    ENCRYPTION_REQUIRED_PROBLEM_TYPE,
    EhbpMiddleware,
    KeyProvider,
)
from ccai.errors import EhbpError

__all__ = [
    "DEFAULT_EXEMPT_PATHS",
    "ENCAPSULATED_KEY_HEADER",
    "ENCRYPTION_REQUIRED_PROBLEM_TYPE",
    "FRAME_SIZE",
    "KEYS_MEDIA_TYPE",
    "KEYS_PATH",
    "KEY_CONFIG_PROBLEM_TYPE",
    "MAX_FRAME_LENGTH",
    "RESPONSE_NONCE_HEADER",
    "AeadDecryptFailed",
    "AsyncEhbpTransport",
    "AsyncRekey",
    "ChunkTooLarge",
    "DuplicateResponseNonce",
    "EhbpError",
    "EhbpMiddleware",
    "EhbpTransport",
    "FramingTruncated",
    "HpkeSetupFailed",
    "InvalidEncapsulatedKey",
    "InvalidInput",
    "InvalidKeyConfig",
    "InvalidResponseNonce",
    "KeyConfig",
    "KeyConfigMismatch",
    "KeyProvider",
    "MissingResponseNonce",
    "Rekey",
    "SequenceOverflow",
    "ServerKey",
    "UnsupportedSuite",
    "fetch_key_config",
    "key_config_from_response",
]
