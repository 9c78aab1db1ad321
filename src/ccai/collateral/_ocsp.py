"""OCSP client: builds the request NVIDIA's responder expects and POSTs it (gpu-evidence.md §6.3).

The request carries one CertID hashed with SHA-384 (as NVIDIA's Python verifier sends it) and a
32-byte nonce extension. The client returns the DER response unchecked: validation (signature,
responder, CertID, times, nonce) is the verifier's job (``ccai.verify._ocsp_check``). It only
refuses answers that are not a fully decodable OCSP response
(:func:`ccai.evidence.load_ocsp_response`), or that carry no status, because those mean
"revocation status unavailable".
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from ccai.collateral._chain import not_served
from ccai.collateral._http import DEFAULT_TIMEOUT, HttpLimits, HttpSource, expect_ok, send
from ccai.errors import CollateralError, CollateralUnavailable
from ccai.evidence import load_ocsp_response

if TYPE_CHECKING:
    import httpx


__all__ = ["DEFAULT_OCSP_URL", "OCSP_NONCE_SIZE", "OcspClient", "build_ocsp_request", "new_ocsp_nonce"]

#: NVIDIA's OCSP responder (certificates advertise the http:// form; both work).
DEFAULT_OCSP_URL = "https://ocsp.ndis.nvidia.com"
#: Nonce length NVIDIA's Python verifier uses.
OCSP_NONCE_SIZE = 32
_REQUEST_TYPE = "application/ocsp-request"
_RESPONSE_TYPE = "application/ocsp-response"


def new_ocsp_nonce() -> bytes:
    """A fresh random OCSP request nonce (32 bytes)."""
    return secrets.token_bytes(OCSP_NONCE_SIZE)


def build_ocsp_request(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    *,
    nonce: bytes | None,
    algorithm: hashes.HashAlgorithm | None = None,
) -> bytes:
    """The DER OCSPRequest for one certificate.

    Args:
        cert: The certificate to ask about.
        issuer: Its issuer.
        nonce: Nonce extension value, or None for no nonce (caching responders such as NVIDIA's
            Trust Outpost ignore nonces).
        algorithm: CertID hash; SHA-384 by default, as NVIDIA's verifier sends.

    Returns:
        The DER-encoded request.
    """
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm or hashes.SHA384())
    if nonce is not None:
        # NVIDIA's verifier marks the nonce critical; RFC 8954 leaves it non-critical. Responders
        # that do not implement nonces ignore non-critical extensions, so non-critical is safer.
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


class OcspClient(HttpSource):
    """Fetches OCSP responses from one responder over HTTP(S).

    Implements the ``ocsp`` half of :class:`~ccai.collateral.CollateralSource`; ``rim`` raises
    :class:`CollateralUnavailable` so the client can sit in a :class:`SourceChain`.

    Args:
        url: Responder URL (default NVIDIA's).
        service_key: Optional NVIDIA service key, sent as ``Authorization: Bearer``.
        timeout: Seconds per network read.
        client: An httpx client to reuse (its lifetime stays with the caller).
        limits: Response size and deadline of each request (default :class:`HttpLimits`).
    """

    def __init__(
        self,
        url: str = DEFAULT_OCSP_URL,
        *,
        service_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        client: httpx.Client | None = None,
        limits: HttpLimits | None = None,
    ) -> None:
        super().__init__(client=client, timeout=timeout, service_key=service_key, limits=limits)
        self.url = url

    def __repr__(self) -> str:
        return f"OcspClient({self.url!r})"

    def rim(self, rim_id: str) -> bytes:
        """An OCSP responder serves no RIMs.

        Raises:
            CollateralUnavailable: always.
        """
        raise not_served(f"RIM {rim_id} not available from an OCSP responder")

    def ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, *, nonce: bytes | None) -> bytes:
        """POST an OCSP request for ``cert`` and return the DER response.

        Args:
            cert: The certificate to ask about.
            issuer: Its issuer.
            nonce: The request nonce (see :func:`new_ocsp_nonce`), or None.

        Returns:
            The DER OCSPResponse, with ``responseStatus`` successful.

        Raises:
            CollateralUnavailable: network error, HTTP error status, a body that is not a decodable
                OCSP response, or a responder status other than successful.
        """
        body = build_ocsp_request(cert, issuer, nonce=nonce)
        headers = self._headers(**{"Content-Type": _REQUEST_TYPE, "Accept": _RESPONSE_TYPE})
        what = f"OCSP request for serial {cert.serial_number:x} to {self.url}"
        response = send(
            self._client,
            self._client.build_request("POST", self.url, content=body, headers=headers),
            what=what,
            limits=self.limits,
        )
        expect_ok(response, what=what)
        try:
            parsed = load_ocsp_response(response.content, what=f"{what}: the answer", step="collateral")
        except CollateralError as exc:
            raise CollateralUnavailable(exc.message) from None
        if parsed.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL:
            raise CollateralUnavailable(
                f"{what}: responder answered {parsed.response_status.name.lower()}",
                expected="successful",
                actual=parsed.response_status.name.lower(),
            )
        return response.content
