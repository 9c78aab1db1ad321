"""client stage of ccai: the verifying client of a confidential gateway.

:func:`attest_gateway` fetches the gateway's attestation document for a fresh nonce and verifies it
offline with :class:`ccai.verify.Verifier` (pinned vendor roots, the caller's policy, simulated
evidence only by name), checking that it binds the gateway's HPKE key. :func:`connect` and
:func:`connect_async` return the official ``openai`` clients with that key pinned in an EHBP
transport (``ccai.ehbp``): every request body is encrypted to the attested key, and a gateway whose
key changes is attested again before a request is retried. docs/confidential-serving.md
("Verifying client").
"""

from __future__ import annotations

from ccai.client._attest import (
    ATTESTATION_PATH,
    MAX_DOCUMENT_BYTES,
    GatewayAttestation,
    attest_gateway,
    verify_document,
)
from ccai.client._connect import VerifiedAsyncOpenAI, VerifiedOpenAI, connect, connect_async

__all__ = [
    "ATTESTATION_PATH",
    "MAX_DOCUMENT_BYTES",
    "GatewayAttestation",
    "VerifiedAsyncOpenAI",
    "VerifiedOpenAI",
    "attest_gateway",
    "connect",
    "connect_async",
    "verify_document",
]
