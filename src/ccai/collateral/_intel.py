"""Intel TDX collateral: the frozen :class:`TdxCollateral`, its JSON form, and an Intel PCS client.

Collateral is kept exactly as Intel signed it: the raw ``tcbInfo`` / ``enclaveIdentity`` JSON text
(never re-serialised — the signature covers those bytes), the raw r‖s signatures, the issuer chains
as PEM and the CRLs as DER. The verifier checks all of it; nothing here is trusted.

JSON layout (``to_json`` / :func:`tdx_collateral_from_json`): the widely used dcap-qvl
``QuoteCollateralV3`` form — ``tcb_info`` (string), ``tcb_info_signature`` (hex),
``tcb_info_issuer_chain`` (PEM), ``qe_identity``, ``qe_identity_signature``,
``qe_identity_issuer_chain``, ``pck_crl`` (hex DER), ``pck_crl_issuer_chain``, ``root_ca_crl``
(hex DER). ``pck_crl`` and ``root_ca_crl`` may be absent (partial collateral).

:class:`IntelPcsClient` fetches the same items from Intel PCS v4 or a PCCS (configurable base URL).
It is the only code here that does I/O.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ccai._json import load_json
from ccai.collateral._http import HttpLimits, HttpSource, get_ok
from ccai.errors import CollateralUnavailable, MalformedEvidence
from ccai.evidence import TdxQuote, parse_pck_extensions

if TYPE_CHECKING:
    import httpx


__all__ = [
    "INTEL_PCS_URL",
    "INTEL_ROOT_CA_CRL_URL",
    "IntelPcsClient",
    "TdxCollateral",
    "raw_json_member",
    "tdx_collateral_from_json",
]

#: Intel's Provisioning Certification Service.
INTEL_PCS_URL = "https://api.trustedservices.intel.com"
#: Where Intel publishes the SGX Root CA CRL.
INTEL_ROOT_CA_CRL_URL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"


@dataclass(frozen=True, slots=True, kw_only=True)
class TdxCollateral:
    """Signed Intel collateral for one TDX platform (FMSPC), as raw documents.

    Attributes:
        tcb_info: The exact ``tcbInfo`` JSON text Intel signed.
        tcb_info_signature: Raw ECDSA P-256 r‖s (64 bytes) over ``tcb_info``.
        tcb_info_issuer_chain: PEM: Intel SGX TCB Signing certificate, then the Root CA.
        qe_identity: The exact ``enclaveIdentity`` JSON text Intel signed.
        qe_identity_signature: Raw r‖s over ``qe_identity``.
        qe_identity_issuer_chain: PEM chain of the QE identity signer.
        pck_crl: DER CRL of the PCK Platform/Processor CA, or ``None`` when not bundled.
        pck_crl_issuer_chain: PEM chain of the PCK CRL issuer, or ``None``.
        root_ca_crl: DER CRL of the Intel SGX Root CA, or ``None`` when not bundled.
    """

    tcb_info: str
    tcb_info_signature: bytes
    tcb_info_issuer_chain: str
    qe_identity: str
    qe_identity_signature: bytes
    qe_identity_issuer_chain: str
    pck_crl: bytes | None = None
    pck_crl_issuer_chain: str | None = None
    root_ca_crl: bytes | None = None

    def to_json(self) -> dict[str, str]:
        """The dcap-qvl ``QuoteCollateralV3`` JSON object (absent CRLs are left out)."""
        out = {
            "tcb_info_issuer_chain": self.tcb_info_issuer_chain,
            "tcb_info": self.tcb_info,
            "tcb_info_signature": self.tcb_info_signature.hex(),
            "qe_identity_issuer_chain": self.qe_identity_issuer_chain,
            "qe_identity": self.qe_identity,
            "qe_identity_signature": self.qe_identity_signature.hex(),
        }
        if self.pck_crl is not None:
            out["pck_crl"] = self.pck_crl.hex()
        if self.pck_crl_issuer_chain is not None:
            out["pck_crl_issuer_chain"] = self.pck_crl_issuer_chain
        if self.root_ca_crl is not None:
            out["root_ca_crl"] = self.root_ca_crl.hex()
        return out


def _crl_bytes(value: Any, name: str) -> bytes:
    # dcap-qvl writes CRLs as hex DER; accept PEM and raw bytes too.
    if isinstance(value, bytes | bytearray):
        return _crl_from_blob(bytes(value), name)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("-----BEGIN"):
            return _crl_from_blob(text.encode(), name)
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    if isinstance(value, list) and all(isinstance(b, int) for b in value):
        return bytes(value)
    raise MalformedEvidence(f"TDX collateral: {name} is not hex DER or PEM", step="collateral")


def _crl_from_blob(blob: bytes, name: str) -> bytes:
    if blob.lstrip().startswith(b"-----BEGIN"):
        try:
            return x509.load_pem_x509_crl(blob.strip()).public_bytes(Encoding.DER)
        except ValueError:
            raise MalformedEvidence(f"TDX collateral: {name} is not a PEM CRL", step="collateral") from None
    text = blob.strip()
    try:
        return bytes.fromhex(text.decode("ascii")) if text[:2] == b"30" else blob
    except (UnicodeDecodeError, ValueError):
        return blob


def tdx_collateral_from_json(data: str | bytes | Mapping[str, Any]) -> TdxCollateral:
    """Load collateral in the dcap-qvl ``QuoteCollateralV3`` JSON layout (the vectors' layout).

    ``tcb_info`` / ``qe_identity`` must be the raw signed JSON text; when a file carries the whole
    PCS response (``{"tcbInfo": …, "signature": …}``) instead, the signed member is cut out
    byte-exactly.

    Args:
        data: JSON text or an already-decoded mapping.

    Returns:
        The collateral.

    Raises:
        MalformedEvidence: not JSON, or a required field is missing or badly encoded.
    """
    try:
        obj = load_json(data, what="TDX collateral") if isinstance(data, str | bytes) else data
    except MalformedEvidence as exc:
        raise MalformedEvidence(exc.message, step="collateral") from None
    if not isinstance(obj, Mapping):
        raise MalformedEvidence("TDX collateral JSON is not an object", step="collateral")
    try:
        tcb_info, tcb_sig = _signed_member(obj["tcb_info"], "tcbInfo", obj.get("tcb_info_signature"))
        qe_identity, qe_sig = _signed_member(
            obj["qe_identity"], "enclaveIdentity", obj.get("qe_identity_signature")
        )
        tcb_chain = str(obj["tcb_info_issuer_chain"])
        qe_chain = str(obj["qe_identity_issuer_chain"])
    except KeyError as exc:
        raise MalformedEvidence(f"TDX collateral lacks {exc.args[0]!r}", step="collateral") from None
    pck_crl = obj.get("pck_crl")
    root_crl = obj.get("root_ca_crl")
    pck_chain = obj.get("pck_crl_issuer_chain")
    return TdxCollateral(
        tcb_info=tcb_info,
        tcb_info_signature=tcb_sig,
        tcb_info_issuer_chain=tcb_chain,
        qe_identity=qe_identity,
        qe_identity_signature=qe_sig,
        qe_identity_issuer_chain=qe_chain,
        pck_crl=_crl_bytes(pck_crl, "pck_crl") if pck_crl else None,
        pck_crl_issuer_chain=str(pck_chain) if pck_chain else None,
        root_ca_crl=_crl_bytes(root_crl, "root_ca_crl") if root_crl else None,
    )


def _signed_member(value: Any, member: str, signature: Any) -> tuple[str, bytes]:
    if not isinstance(value, str):
        raise MalformedEvidence(
            f"TDX collateral: {member} must be the raw signed JSON text, not a decoded object",
            step="collateral",
            hint="re-serialising JSON changes the signed bytes; keep the text exactly as Intel served it",
        )
    text = value
    if signature is None:
        # A whole PCS response body: {"tcbInfo": {...}, "signature": "hex"}.
        text = raw_json_member(value, member)
        signature = load_json(value, what=f"{member} response").get("signature")
    try:
        sig = bytes.fromhex(str(signature))
    except ValueError:
        raise MalformedEvidence(f"TDX collateral: {member} signature is not hex", step="collateral") from None
    if len(sig) != 64:
        raise MalformedEvidence(
            f"TDX collateral: {member} signature must be 64 bytes", step="collateral", actual=len(sig)
        )
    return text, sig


def raw_json_member(body: str, member: str) -> str:
    """The exact text of top-level ``member``'s value in the JSON object ``body``.

    Intel signs the bytes of the ``tcbInfo`` / ``enclaveIdentity`` value as served; this cuts them
    out without re-serialising.

    Raises:
        MalformedEvidence: ``body`` is not a JSON object holding ``member``.
    """
    decoder = json.JSONDecoder()
    try:
        # Bounded here, so the raw_decode calls below cannot recurse deeply.
        top = load_json(body, what="document")
    except MalformedEvidence as exc:
        raise MalformedEvidence(
            f"collateral JSON: cannot locate {member}: {exc.message}", step="collateral"
        ) from None
    try:
        if not isinstance(top, dict) or member not in top:
            raise ValueError(f"no member {member!r}")
        # Walk the top-level members in order, decoding each value to find where it ends.
        pos = body.index("{") + 1
        while True:
            key, pos = decoder.raw_decode(body, _skip_ws(body, pos))
            pos = _skip_ws(body, pos)
            if body[pos] != ":":
                raise ValueError("expected ':'")
            start = _skip_ws(body, pos + 1)
            _value, end = decoder.raw_decode(body, start)
            if key == member:
                return body[start:end]
            pos = _skip_ws(body, end)
            if body[pos] != ",":
                raise ValueError(f"no member {member!r}")
            pos += 1
    except (ValueError, IndexError) as exc:
        raise MalformedEvidence(
            f"collateral JSON: cannot locate {member}: {exc}", step="collateral"
        ) from None


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


class IntelPcsClient(HttpSource):
    """Fetch TDX collateral from Intel PCS v4 or a PCCS.

    Args:
        base_url: PCS (:data:`INTEL_PCS_URL`) or a PCCS base URL (e.g. ``https://pccs.local:8081``).
        root_ca_crl_url: Where to get the Root CA CRL; ``None`` uses the PCCS ``rootcacrl`` endpoint
            for a non-Intel base URL and Intel's published CRL otherwise.
        client: An ``httpx.Client`` to use (tests pass one with an in-memory transport).
        timeout: Seconds per network read.
        limits: Response size and deadline of each request (default :class:`HttpLimits`).
    """

    def __init__(
        self,
        base_url: str = INTEL_PCS_URL,
        *,
        root_ca_crl_url: str | None = None,
        client: httpx.Client | None = None,
        timeout: float = 10.0,
        limits: HttpLimits | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        if root_ca_crl_url is None:
            is_intel = self.base_url == INTEL_PCS_URL
            root_ca_crl_url = (
                INTEL_ROOT_CA_CRL_URL if is_intel else f"{self.base_url}/sgx/certification/v4/rootcacrl"
            )
        self.root_ca_crl_url = root_ca_crl_url
        super().__init__(client=client, timeout=timeout, follow_redirects=True, limits=limits)

    def _get(self, url: str, what: str) -> httpx.Response:
        return get_ok(self._client, url, what=what, limits=self.limits)

    @staticmethod
    def _chain(response: httpx.Response, *names: str) -> str:
        for name in names:
            value = response.headers.get(name)
            if value:
                return urllib.parse.unquote(value)
        raise CollateralUnavailable(f"response lacks the {names[0]} header", step="collateral")

    def _signed_json(
        self, url: str, what: str, member: str, chain_headers: tuple[str, ...]
    ) -> tuple[str, bytes, str]:
        """A signed PCS JSON document: (the exact bytes of ``member``, signature, issuer chain PEM)."""
        response = self._get(url, what)
        body = response.text
        try:
            signature = bytes.fromhex(load_json(body, what="body")["signature"])
            raw = raw_json_member(body, member)
        except (ValueError, KeyError, TypeError, MalformedEvidence) as exc:
            raise CollateralUnavailable(f"malformed {what} response: {exc}", step="collateral") from None
        return raw, signature, self._chain(response, *chain_headers)

    def tdx_tcb_info(self, fmspc: bytes) -> tuple[str, bytes, str]:
        """TDX TCB Info for ``fmspc``: (raw signed JSON, signature, issuer chain PEM).

        Raises:
            CollateralUnavailable: network error, non-200 status or a malformed response.
        """
        return self._signed_json(
            f"{self.base_url}/tdx/certification/v4/tcb?fmspc={fmspc.hex()}",
            "TDX TCB Info",
            "tcbInfo",
            ("TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"),
        )

    def tdx_qe_identity(self) -> tuple[str, bytes, str]:
        """The TD QE identity: (raw signed JSON, signature, issuer chain PEM).

        Raises:
            CollateralUnavailable: network error, non-200 status or a malformed response.
        """
        return self._signed_json(
            f"{self.base_url}/tdx/certification/v4/qe/identity",
            "TD QE Identity",
            "enclaveIdentity",
            ("SGX-Enclave-Identity-Issuer-Chain",),
        )

    def pck_crl(self, ca: str) -> tuple[bytes, str]:
        """The PCK CRL of ``ca`` (``"platform"`` or ``"processor"``): (DER, issuer chain PEM).

        Raises:
            CollateralUnavailable: network error or non-200 status.
        """
        response = self._get(f"{self.base_url}/sgx/certification/v4/pckcrl?ca={ca}&encoding=der", "PCK CRL")
        return _crl_from_blob(response.content, "pck_crl"), self._chain(response, "SGX-PCK-CRL-Issuer-Chain")

    def root_ca_crl(self) -> bytes:
        """The Intel SGX Root CA CRL (DER).

        Raises:
            CollateralUnavailable: network error or non-200 status.
        """
        return _crl_from_blob(self._get(self.root_ca_crl_url, "Root CA CRL").content, "root_ca_crl")

    def tdx_collateral(self, quote: TdxQuote) -> TdxCollateral:
        """Everything needed to verify ``quote`` offline.

        Raises:
            CollateralUnavailable: any item cannot be fetched.
        """
        leaf = quote.pck_chain[0]
        fmspc = parse_pck_extensions(leaf).fmspc
        ca = (
            "processor" if len(quote.pck_chain) > 1 and "Processor" in _cn(quote.pck_chain[1]) else "platform"
        )
        tcb_info, tcb_sig, tcb_chain = self.tdx_tcb_info(fmspc)
        qe_identity, qe_sig, qe_chain = self.tdx_qe_identity()
        pck_crl, pck_chain = self.pck_crl(ca)
        return TdxCollateral(
            tcb_info=tcb_info,
            tcb_info_signature=tcb_sig,
            tcb_info_issuer_chain=tcb_chain,
            qe_identity=qe_identity,
            qe_identity_signature=qe_sig,
            qe_identity_issuer_chain=qe_chain,
            pck_crl=pck_crl,
            pck_crl_issuer_chain=pck_chain,
            root_ca_crl=self.root_ca_crl(),
        )


def _cn(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""
