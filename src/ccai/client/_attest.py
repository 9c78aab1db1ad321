"""Attest a gateway: fetch its attestation document for a fresh nonce and verify it offline.

:func:`attest_gateway` runs one checklist; the first failure raises and nothing is sent to the
gateway but the nonce:

1. a fresh 32-byte nonce (or the caller's);
2. ``GET URL/.well-known/ccai/attestation?nonce=HEX`` (size-bounded, depth-limited JSON): a ccai
   evidence bundle, or ``{"bundle": …, "token": …}`` carrying one and an attestation-service token;
3. the bundle carries this nonce (constant-time) and CPU TEE evidence that binds an HPKE key;
4. :meth:`ccai.verify.Verifier.verify_bundle` against the embedded collateral, offline: pinned
   vendor roots (or ``anchors``), ``policy``, simulated evidence only with ``allow_simulated``;
5. ``GET URL/.well-known/hpke-keys`` serves the same key (constant-time), when asked.
"""

from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

import httpx

from ccai._json import load_json
from ccai.ehbp import fetch_key_config
from ccai.errors import (
    BindingError,
    CollateralUnavailable,
    EhbpError,
    MalformedEvidence,
    NonceMismatch,
    UsageError,
)
from ccai.evidence import EvidenceBundle, load_evidence_bundle
from ccai.verify import Policy, TrustAnchors, VerifiedEvidence, Verifier

__all__ = [
    "ATTESTATION_PATH",
    "MAX_DOCUMENT_BYTES",
    "GatewayAttestation",
    "attest_gateway",
    "verify_document",
]

ATTESTATION_PATH = "/.well-known/ccai/attestation"
#: Largest attestation document read (8 GPUs with embedded RIMs and OCSP stay far below).
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayAttestation:
    """A gateway's verified attestation.

    Attributes:
        url: The gateway's base URL.
        nonce: The nonce the document was bound to.
        verified: The verifier's result (claims and steps).
        hpke_public_key: The attested X25519 key the gateway decrypts with.
        simulated: True when the evidence came from virtual hardware (test PKI).
        token: The attestation service's token the document carried, unverified, if any.
    """

    url: str
    nonce: bytes
    verified: VerifiedEvidence
    hpke_public_key: bytes
    simulated: bool
    token: str | None = None

    def summary(self) -> list[tuple[str, str]]:
        """``(label, value)`` rows for people: TEE, GPUs, measurements, key, simulated or not."""
        cpu = self.verified.cpu_claims or {}
        gpus = self.verified.gpus
        models = sorted({str(g.claims.get("hwmodel", "?")) for g in gpus})
        drivers = sorted({str(g.claims.get("x-nvidia-gpu-driver-version", "?")) for g in gpus})
        matched = sum(1 for g in gpus if g.claims.get("measres") == "success")
        rows = [
            ("gateway", self.url),
            (
                "CPU TEE",
                str(cpu.get("x-ccai-tee") or self.verified.overall_claims.get("x-ccai-cpu-tee", "?")),
            ),
            ("GPUs", f"{len(gpus)} × {', '.join(models) or '-'} (driver {', '.join(drivers) or '-'})"),
            ("measurements", f"{matched}/{len(gpus)} GPUs match their RIMs; CPU policy satisfied"),
            ("HPKE key", self.hpke_public_key.hex()),
            ("nonce", self.nonce.hex()),
        ]
        if self.verified.switches:
            ppcie = self.verified.overall_claims.get("x-ccai-ppcie") or {}
            topology = ppcie.get("topology", "?") if isinstance(ppcie, dict) else "?"
            rows.insert(
                3, ("NVSwitches", f"{len(self.verified.switches)} (protected PCIe, topology {topology})")
            )
        if self.simulated:
            rows.append(("SIMULATED", "virtual TEE and GPUs, test PKI: no confidentiality"))
        return rows

    def summary_document(self) -> dict[str, Any]:
        """The summary as one JSON-friendly mapping (``--json``)."""
        return {
            "url": self.url,
            "nonce": self.nonce.hex(),
            "hpke_public_key": self.hpke_public_key.hex(),
            "simulated": self.simulated,
            "cpu": dict(self.verified.cpu_claims or {}),
            "gpus": [dict(g.claims) for g in self.verified.gpus],
            "switches": [dict(s.claims) for s in self.verified.switches],
            "token": self.token is not None,
        }


def _fetch_document(client: httpx.Client, url: str, nonce: bytes) -> bytes:
    try:
        with client.stream("GET", url + ATTESTATION_PATH, params={"nonce": nonce.hex()}) as response:
            if response.status_code != 200:
                raise CollateralUnavailable(
                    f"the gateway answered HTTP {response.status_code} for its attestation document"
                )
            data = bytearray()
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) > MAX_DOCUMENT_BYTES:
                    raise MalformedEvidence(f"attestation document larger than {MAX_DOCUMENT_BYTES} bytes")
            return bytes(data)
    except httpx.HTTPError as exc:
        raise CollateralUnavailable(f"cannot fetch the attestation document from {url}: {exc}") from None


def _parse_document(data: bytes) -> tuple[EvidenceBundle, str | None]:
    doc = load_json(data, what="attestation document")
    if not isinstance(doc, dict):
        raise MalformedEvidence("the attestation document is not a JSON object", step="parse")
    if "bundle" in doc and "format" not in doc:
        token = doc.get("token")
        if token is not None and not isinstance(token, str):
            raise MalformedEvidence("the attestation document's token is not a string", step="parse")
        return load_evidence_bundle(json.dumps(doc["bundle"]).encode()), token
    return load_evidence_bundle(data), None


def verify_document(
    url: str,
    data: bytes,
    *,
    nonce: bytes,
    anchors: TrustAnchors | None = None,
    policy: Policy | None = None,
    allow_simulated: bool = False,
) -> GatewayAttestation:
    """Steps 3 and 4 of the checklist on a fetched document (no I/O).

    Raises:
        NonceMismatch, BindingError, SimulatedEvidenceRejected, VerificationError, EvidenceError,
        CollateralError: as the step that failed.
    """
    bundle, token = _parse_document(data)
    # (3) freshness and binding, before anything costly
    if not hmac.compare_digest(bundle.nonce, nonce):
        raise NonceMismatch("the attestation document is not bound to this client's nonce", step="nonce")
    if bundle.cpu is None:
        raise BindingError("the attestation document has no CPU TEE evidence: nothing binds the HPKE key")
    if bundle.hpke_public_key is None or len(bundle.hpke_public_key) != 32:
        raise BindingError("the attestation document binds no X25519 HPKE key")
    # (4) the full verification, offline against the embedded collateral
    verifier = Verifier(anchors=anchors, policy=policy, allow_simulated=allow_simulated)
    verified = verifier.verify_bundle(bundle, expected_nonce=nonce)
    return GatewayAttestation(
        url=url,
        nonce=nonce,
        verified=verified,
        hpke_public_key=bundle.hpke_public_key,
        simulated=verified.simulated,
        token=token,
    )


def attest_gateway(
    url: str,
    *,
    anchors: TrustAnchors | None = None,
    policy: Policy | None = None,
    allow_simulated: bool = False,
    nonce: bytes | None = None,
    timeout: float = 30.0,
    check_key_endpoint: bool = True,
    http_client: httpx.Client | None = None,
) -> GatewayAttestation:
    """Fetch and verify a gateway's attestation document (the module's checklist).

    Args:
        url: The gateway's base URL (``http(s)://host:port``).
        anchors: Trust anchors (default: the pinned vendor roots).
        policy: The appraisal policy (measurements, versions, TCB).
        allow_simulated: Accept evidence from virtual hardware (needs test-PKI ``anchors``).
        nonce: The 32-byte nonce to use (default: a fresh random one).
        timeout: Seconds for each HTTP request.
        check_key_endpoint: Also require ``/.well-known/hpke-keys`` to serve the attested key.
        http_client: The client to fetch with (default: a new one).

    Returns:
        The verified attestation, holding the attested HPKE key.

    Raises:
        CollateralUnavailable: the document could not be fetched.
        Error: the verification step that failed (see :func:`verify_document`).
    """
    base = url.rstrip("/")
    nonce = secrets.token_bytes(32) if nonce is None else nonce
    if len(nonce) != 32:
        raise UsageError(f"the nonce must be 32 bytes, not {len(nonce)}")
    client = http_client if http_client is not None else httpx.Client(timeout=timeout, follow_redirects=False)
    try:
        # (1) and (2)
        data = _fetch_document(client, base, nonce)
        attestation = verify_document(
            base, data, nonce=nonce, anchors=anchors, policy=policy, allow_simulated=allow_simulated
        )
        # (5) the key the gateway serves is the key it attested
        if check_key_endpoint:
            try:
                served = fetch_key_config(base, client=client)
            except (EhbpError, httpx.HTTPError) as exc:
                raise BindingError(f"the gateway's key configuration is unusable: {exc}") from None
            if not hmac.compare_digest(served.public_key, attestation.hpke_public_key):
                raise BindingError(
                    "the gateway serves another HPKE key than the one its attestation binds",
                    step="hpke-keys",
                    expected=attestation.hpke_public_key.hex(),
                    actual=served.public_key.hex(),
                )
        return attestation
    finally:
        if http_client is None:
            client.close()
