"""Client for NVIDIA's RIM service: ``GET <base>/v1/rim/<id>`` (gpu-evidence.md §7.3).

The service answers JSON ``{"id", "rim": base64(XML), "sha256", "last_updated", "rim_format",
"request_id"}``; a missing RIM is HTTP 404 ``{"message": "RIM_NOT_FOUND"}``. The client checks that
the answer names the id it asked for (as NVAT does) and returns the XML bytes unchecked — the RIM's
XMLDSig and chain are the verifier's job.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import TYPE_CHECKING
from urllib.parse import quote

from cryptography import x509
from pydantic import BaseModel, ConfigDict, ValidationError

from ccai._json import load_json
from ccai.collateral._chain import not_served
from ccai.collateral._http import DEFAULT_TIMEOUT, HttpLimits, HttpSource, expect_ok, send
from ccai.errors import CollateralUnavailable, MalformedEvidence, UsageError

if TYPE_CHECKING:
    import httpx


__all__ = ["DEFAULT_RIM_SERVICE_URL", "RimServiceClient", "check_rim_id"]

#: NVIDIA's RIM service base URL (``/v1/rim/<id>`` is appended).
DEFAULT_RIM_SERVICE_URL = "https://rim.attestation.nvidia.com"
# RIM ids seen in the wild: NV_GPU_DRIVER_GH100_550.144.03, NV_GPU_VBIOS_1010_0200_882_96009F0001,
# NV_NIC_FIRMWARE_CX7_28.39.4082-LTS_MCX713104AC-ADA. Nothing else may reach a URL or a file name.
_RIM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}")


def check_rim_id(rim_id: str) -> str:
    """Return ``rim_id`` if it is a plausible RIM id (letters, digits, ``_ . -``), else raise.

    Raises:
        UsageError: the id could escape a URL path or a directory.
    """
    if not _RIM_ID.fullmatch(rim_id) or ".." in rim_id:
        raise UsageError(f"not a valid RIM id: {rim_id!r}")
    return rim_id


class _RimServiceAnswer(BaseModel):
    """The RIM service's JSON body (extra fields such as ``last_updated`` are tolerated)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    rim: str
    sha256: str | None = None
    rim_format: str | None = None
    request_id: str | None = None


class RimServiceClient(HttpSource):
    """Fetches RIMs from NVIDIA's RIM service, or any server with the same API.

    Implements the ``rim`` half of :class:`~ccai.collateral.CollateralSource`; ``ocsp`` raises
    :class:`CollateralUnavailable`.

    Args:
        base_url: Service base URL (``/v1/rim/<id>`` is appended).
        service_key: Optional NVIDIA service key, sent as ``Authorization: Bearer``.
        timeout: Seconds per network read.
        client: An httpx client to reuse (its lifetime stays with the caller).
        limits: Response size and deadline of each request (default :class:`HttpLimits`).
    """

    def __init__(
        self,
        base_url: str = DEFAULT_RIM_SERVICE_URL,
        *,
        service_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        client: httpx.Client | None = None,
        limits: HttpLimits | None = None,
    ) -> None:
        super().__init__(client=client, timeout=timeout, service_key=service_key, limits=limits)
        self.base_url = base_url.rstrip("/")

    def __repr__(self) -> str:
        return f"RimServiceClient({self.base_url!r})"

    def rim(self, rim_id: str) -> bytes:
        """Fetch the RIM XML for ``rim_id``.

        Returns:
            The RIM document bytes, as the service stores them.

        Raises:
            UsageError: ``rim_id`` is not a valid RIM id.
            CollateralUnavailable: network error, RIM not found, or a malformed answer.
        """
        check_rim_id(rim_id)
        url = f"{self.base_url}/v1/rim/{quote(rim_id, safe='')}"
        what = f"RIM {rim_id} from {self.base_url}"
        request = self._client.build_request("GET", url, headers=self._headers(Accept="application/json"))
        response = send(self._client, request, what=what, limits=self.limits)
        if response.status_code == 404:
            raise CollateralUnavailable(
                f"{what}: not found",
                actual=response.text[:200],
                hint="the service may not cover this driver/VBIOS yet; use --rim-dir or a collateral bundle",
            )
        expect_ok(response, what=what)
        try:
            # Decoded by load_json first: pydantic's own JSON parser has a recursion limit of its own.
            answer = _RimServiceAnswer.model_validate(load_json(response.content, what="body"))
            xml = base64.b64decode(answer.rim, validate=True)
        except (ValidationError, binascii.Error, ValueError, MalformedEvidence):
            raise CollateralUnavailable(f"{what}: the answer is not a RIM service response") from None
        if answer.id != rim_id:
            raise CollateralUnavailable(
                f"{what}: the service answered for another id", expected=rim_id, actual=answer.id
            )
        if not xml:
            raise CollateralUnavailable(f"{what}: empty RIM")
        return xml

    def ids(self) -> list[str]:
        """All RIM ids the service holds (``GET <base>/v1/rim/ids``), for coverage checks.

        Raises:
            CollateralUnavailable: network error or malformed answer.
        """
        url = f"{self.base_url}/v1/rim/ids"
        what = f"RIM ids from {self.base_url}"
        request = self._client.build_request("GET", url, headers=self._headers(Accept="application/json"))
        response = expect_ok(send(self._client, request, what=what, limits=self.limits), what=what)
        try:
            ids = load_json(response.content, what="body")["ids"]
        except (ValueError, KeyError, TypeError, MalformedEvidence):
            raise CollateralUnavailable(f"{what}: malformed answer") from None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise CollateralUnavailable(f"{what}: malformed answer")
        return ids

    def ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, *, nonce: bytes | None) -> bytes:
        """A RIM service serves no OCSP responses.

        Raises:
            CollateralUnavailable: always.
        """
        raise not_served("OCSP responses are not available from a RIM service")
