"""Small value types shared across stages."""

from __future__ import annotations

from typing import NewType

__all__ = ["Digest", "KeyId", "Nonce"]

#: A verifier nonce: 32 random bytes.
Nonce = NewType("Nonce", bytes)
#: A cryptographic digest (SHA-256/384/512 output bytes).
Digest = NewType("Digest", bytes)
#: Identifier of a key (JWK ``kid``, key-encryption-key id).
KeyId = NewType("KeyId", str)
