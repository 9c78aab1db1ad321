"""The guest side of RCAR: :class:`KbsClient` and :func:`fetch_resource`.

The client makes an ephemeral EC P-256 tee key, asks for a challenge, has evidence collected that
commits to the runtime-data ``{"nonce", "tee-pubkey"}``, posts it, and decrypts the resource JWE
with the tee key. The private key never leaves the process. Two evidence encodings:

* ``"composite"`` (default): a ccai composite bundle whose bound key is
  ``runtime_data_hash(runtime-data)`` — the caller's ``evidence`` function, e.g.
  ``ccai.attest.collect_composite`` on real or virtual hardware (the kbs stage does not import the
  collection stage);
* ``"trustee"``: Trustee's own ``{"primary_evidence", "additional_evidence"}`` — the caller's
  :class:`TrusteeEvidenceProvider`, e.g. ``ccai.attest.TrusteeAttester``; the client computes the
  two digests exactly as Trustee's client does (:mod:`ccai.kbs._trustee`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import httpx

from ccai.errors import CollateralUnavailable, PolicyViolation, UsageError, VerificationError
from ccai.kbs._broker import DEVTOOLS_HINT, check_resource_name
from ccai.kbs._jose import PrivateTeeKey, decrypt_jwe, private_jwk_pair, runtime_data_hash
from ccai.kbs._trustee import device_runtime_hash, primary_report_data
from ccai.sealed import Kek, kek_from_jwk

__all__ = [
    "PROTOCOL_VERSION",
    "BrokerKey",
    "EvidenceFunction",
    "KbsClient",
    "KbsRefused",
    "TrusteeEvidenceProvider",
    "fetch_kek",
    "fetch_resource",
]

PROTOCOL_VERSION = "0.4.0"
#: ``evidence(nonce, bound_key) -> bundle JSON bytes``: collect composite evidence for the 32-byte
#: nonce with ``bound_key`` (48 bytes) as the bundle's ``hpke_public_key``.
EvidenceFunction = Callable[[bytes, bytes], bytes]
EvidenceFormat = Literal["composite", "trustee"]


@runtime_checkable
class TrusteeEvidenceProvider(Protocol):
    """Evidence in Trustee's encoding (the counterpart of Trustee's ``EvidenceProvider``)."""

    def additional_evidence(self, runtime_data_hash: bytes) -> str:
        """The devices' evidence (JSON string, ``""`` for none) for the device runtime-data digest."""
        ...

    def primary_evidence(self, report_data: bytes) -> Mapping[str, Any]:
        """The CPU TEE's evidence carrying ``report_data`` (the primary runtime-data digest)."""
        ...


class KbsRefused(PolicyViolation):
    """The broker refused (HTTP 401/403/404); ``reason`` is its named reason."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(f"the key broker refused ({status} {reason}): {detail}", actual=reason)
        self.status, self.reason = status, reason


def _check(response: httpx.Response) -> Any:
    if response.status_code in (400, 401, 403, 404, 413):
        try:
            body = response.json()
            reason, detail = str(body.get("error")), str(body.get("detail"))[:300]
        except ValueError:
            reason, detail = "error", response.text[:200]
        raise KbsRefused(response.status_code, reason, detail)
    if response.status_code != 200:
        raise CollateralUnavailable(f"the key broker answered HTTP {response.status_code}")
    return response.json()


class KbsClient:
    """One guest's RCAR conversation with a broker.

    Args:
        url: The broker's base URL.
        evidence: Collects the evidence: an :data:`EvidenceFunction` (composite) or a
            :class:`TrusteeEvidenceProvider` (``evidence_format="trustee"``).
        tee: The ``tee`` named in the auth request (``tdx``, ``snp``).
        evidence_format: ``"composite"`` (ccai bundle) or ``"trustee"`` (Trustee's encoding).
        devtools: The guest driver reports CC DevTools mode (unsigned; it only lets the broker
            name a refusal ``devtools_on``).
        timeout: HTTP timeout in seconds.
        http: An httpx client to use (default: one of the client's own).

    Raises:
        UsageError: ``evidence`` does not fit ``evidence_format``.
    """

    def __init__(
        self,
        url: str,
        *,
        evidence: EvidenceFunction | TrusteeEvidenceProvider,
        tee: str = "tdx",
        evidence_format: EvidenceFormat = "composite",
        devtools: bool = False,
        timeout: float = 60.0,
        http: httpx.Client | None = None,
    ) -> None:
        if evidence_format not in ("composite", "trustee"):
            raise UsageError("evidence_format is composite or trustee", actual=str(evidence_format))
        if (evidence_format == "trustee") != isinstance(evidence, TrusteeEvidenceProvider):
            raise UsageError(
                "evidence_format='trustee' takes a TrusteeEvidenceProvider "
                "(e.g. ccai.attest.TrusteeAttester); 'composite' an evidence function"
            )
        self.url = url.rstrip("/")
        self._evidence = evidence
        self.tee, self.evidence_format, self.devtools = tee, evidence_format, devtools
        self._http = http or httpx.Client(timeout=timeout)
        self._key: PrivateTeeKey | None = None
        self.token: str | None = None

    def close(self) -> None:
        """Close the HTTP client."""
        self._http.close()

    def __enter__(self) -> KbsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def attest(self) -> str:
        """Run auth + attest with a fresh tee key; returns the attestation-result token.

        Raises:
            KbsRefused: the broker refused; CollateralUnavailable: it could not be reached.
        """
        try:
            challenge = _check(
                self._http.post(
                    self.url + "/kbs/v0/auth",
                    json={"version": PROTOCOL_VERSION, "tee": self.tee, "extra-params": {}},
                )
            )
            key, jwk = private_jwk_pair()
            runtime = {"nonce": challenge["nonce"], "tee-pubkey": jwk}
            body: dict[str, Any] = {"runtime-data": runtime, "tee-evidence": self._collect(runtime)}
            if self.devtools:
                body[DEVTOOLS_HINT] = True
            answer = _check(self._http.post(self.url + "/kbs/v0/attest", json=body))
        except httpx.HTTPError as exc:
            raise CollateralUnavailable(f"cannot reach the key broker: {type(exc).__name__}") from None
        self._key, self.token = key, str(answer["token"])
        return self.token

    def _collect(self, runtime: Mapping[str, Any]) -> Any:
        """The ``tee-evidence`` for ``runtime`` in this client's encoding."""
        if isinstance(self._evidence, TrusteeEvidenceProvider):
            # Trustee's order: the devices first, then the CPU quote over them (rcar_client.rs).
            additional = self._evidence.additional_evidence(device_runtime_hash(runtime))
            primary = self._evidence.primary_evidence(primary_report_data(runtime, additional)[:48])
            return {"primary_evidence": dict(primary), "additional_evidence": additional}
        bundle = self._evidence(base64.b64decode(runtime["nonce"]), runtime_data_hash(runtime))
        return json.loads(bundle)

    def get_resource(self, name: str) -> bytes:
        """Fetch and decrypt ``REPO/TYPE/TAG`` (attesting first if needed).

        Raises:
            KbsRefused, CollateralUnavailable, VerificationError (the JWE does not decrypt).
        """
        check_resource_name(name)
        if self.token is None or self._key is None:
            self.attest()
        if self._key is None:
            raise UsageError("no tee key")
        try:
            jwe = _check(
                self._http.get(
                    f"{self.url}/kbs/v0/resource/{name}", headers={"Authorization": f"Bearer {self.token}"}
                )
            )
        except httpx.HTTPError as exc:
            raise CollateralUnavailable(f"cannot reach the key broker: {type(exc).__name__}") from None
        if not isinstance(jwe, dict):
            raise VerificationError("the broker's answer is not a JWE")
        return decrypt_jwe(jwe, self._key)


def fetch_resource(
    url: str,
    name: str,
    *,
    evidence: EvidenceFunction | TrusteeEvidenceProvider,
    tee: str = "tdx",
    evidence_format: EvidenceFormat = "composite",
    devtools: bool = False,
) -> bytes:
    """Attest to the broker at ``url`` and return resource ``name`` (one-shot recipe).

    Raises:
        KbsRefused: refused; CollateralUnavailable: unreachable; VerificationError: bad JWE.
    """
    with KbsClient(
        url, evidence=evidence, tee=tee, evidence_format=evidence_format, devtools=devtools
    ) as client:
        return client.get_resource(name)


def fetch_kek(
    url: str,
    name: str,
    *,
    evidence: EvidenceFunction | TrusteeEvidenceProvider,
    tee: str = "tdx",
    evidence_format: EvidenceFormat = "composite",
    devtools: bool = False,
) -> Kek:
    """The sealed-model KEK stored in the broker as resource ``name``, fetched through attestation.

    ``devtools``: the guest driver reports CC DevTools mode (see :class:`KbsClient`).

    Pass the result to :func:`ccai.sealed.load_model` / :func:`ccai.sealed.load_into`, or pass a
    :class:`BrokerKey` there instead, which fetches it when the model is opened.

    Raises:
        KbsRefused, CollateralUnavailable, VerificationError: as :func:`fetch_resource`;
        UsageError: the resource is not a KEK (``ccai seal --kbs`` stores one).
    """
    value = fetch_resource(
        url, name, evidence=evidence, tee=tee, evidence_format=evidence_format, devtools=devtools
    )
    return kek_from_jwk(value, what=f"broker resource {name}")


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerKey:
    """A sealed model's KEK held by a key broker: a :class:`ccai.sealed.KeySource`.

    Pass it wherever a KEK is accepted (``load_model(sealed, BrokerKey(...))``): each time the
    sealed stage opens the model, :meth:`kek` runs RCAR with fresh evidence and returns the KEK the
    broker released into this process; nothing is written to disk.

    Args:
        url: The broker's base URL.
        resource: ``REPO/TYPE/TAG`` of the KEK (``ccai seal --kbs`` stores one).
        evidence: The evidence function (composite) or a :class:`TrusteeEvidenceProvider`.
        tee: The ``tee`` of the auth request.
        evidence_format: ``"composite"`` or ``"trustee"``.
        devtools: The guest driver reports CC DevTools mode (see :class:`KbsClient`).
    """

    url: str
    resource: str
    evidence: EvidenceFunction | TrusteeEvidenceProvider = field(repr=False)
    tee: str = "tdx"
    evidence_format: EvidenceFormat = "composite"
    devtools: bool = False

    def __post_init__(self) -> None:
        check_resource_name(self.resource)

    def kek(self) -> Kek:
        """Attest to the broker and return the KEK it releases.

        Raises:
            KbsRefused, CollateralUnavailable, VerificationError, UsageError: as :func:`fetch_kek`.
        """
        value = fetch_resource(
            self.url,
            self.resource,
            evidence=self.evidence,
            tee=self.tee,
            evidence_format=self.evidence_format,
            devtools=self.devtools,
        )
        return kek_from_jwk(value, what=f"broker resource {self.resource}")
