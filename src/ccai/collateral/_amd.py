"""AMD SEV-SNP collateral: the frozen :class:`SnpCollateral`, loaders, and an AMD KDS client.

SNP collateral is a handful of certificates: the VCEK (per chip and TCB) or the VLEK (per cloud
provider), optionally the ASK/ASVK and ARK as served by KDS ``cert_chain``, and optionally the
ARK-signed CRL. The verifier pins the ARKs itself; whatever is supplied here is only a candidate.

KDS endpoints (AMD "Versioned Chip Endorsement Key (VCEK) Certificate and KDS Interface
Specification" #57230): ``/vcek/v1/{product}/{hwid}?blSPL=…`` (VCEK, DER), ``/{vcek|vlek}/v1/
{product}/cert_chain`` (PEM ASK|ASVK ‖ ARK) and ``/{vcek|vlek}/v1/{product}/crl`` (DER). VLEKs
are not served publicly: the cloud provider hands them to the guest (certificate table / auxblob).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ccai.collateral._http import HttpLimits, HttpSource, get_ok
from ccai.errors import CollateralUnavailable, MalformedEvidence
from ccai.evidence import SnpProduct, SnpReport, load_certificate, load_pem_certificates

if TYPE_CHECKING:
    import httpx


__all__ = [
    "AMD_KDS_URL",
    "AmdKdsClient",
    "SnpCollateral",
    "load_certificates",
    "snp_collateral_from_certificates",
    "snp_collateral_from_json",
]

#: AMD's Key Distribution Service.
AMD_KDS_URL = "https://kdsintf.amd.com"


@dataclass(frozen=True, slots=True, kw_only=True)
class SnpCollateral:
    """Certificates (DER) for verifying SEV-SNP reports of one chip or one cloud provider.

    Attributes:
        vcek: The VCEK certificate, if the report is VCEK-signed.
        vlek: The VLEK certificate, if the report is VLEK-signed.
        ask: An ASK (VCEK chain) supplied with the evidence; checked against the pinned ARK.
        asvk: An ASVK (VLEK chain) supplied with the evidence; checked against the pinned ARK.
        ark: An ARK supplied with the evidence; must equal the pinned ARK.
        crl: The ARK-signed CRL (DER) revoking ASKs/ASVKs, when bundled.
    """

    vcek: bytes | None = None
    vlek: bytes | None = None
    ask: bytes | None = None
    asvk: bytes | None = None
    ark: bytes | None = None
    crl: bytes | None = None

    def to_json(self) -> dict[str, str]:
        """A JSON object of base64 DER values (absent items left out)."""
        out: dict[str, str] = {}
        for name in ("vcek", "vlek", "ask", "asvk", "ark", "crl"):
            value = getattr(self, name)
            if value is not None:
                out[name] = base64.b64encode(value).decode()
        return out


def snp_collateral_from_json(data: Mapping[str, Any]) -> SnpCollateral:
    """Inverse of :meth:`SnpCollateral.to_json`.

    Raises:
        MalformedEvidence: unknown keys or values that are not base64.
    """
    known = {"vcek", "vlek", "ask", "asvk", "ark", "crl"}
    if set(data) - known:
        raise MalformedEvidence(
            f"SNP collateral has unknown keys: {sorted(set(data) - known)}", step="collateral"
        )
    try:
        values = {k: base64.b64decode(str(v), validate=True) for k, v in data.items()}
    except ValueError:
        raise MalformedEvidence("SNP collateral values must be base64 DER", step="collateral") from None
    return SnpCollateral(**values)


def load_certificates(blob: bytes) -> list[x509.Certificate]:
    """Load one DER certificate or any number of PEM certificates.

    Every certificate is decoded completely (:func:`ccai.evidence.load_certificate`), so a malformed
    one is refused here rather than half-way through the chain check.

    Raises:
        MalformedEvidence: neither PEM nor DER certificates, or one that does not fully decode.
    """
    if b"-----BEGIN CERTIFICATE-----" in blob:
        return list(load_pem_certificates(blob, what="AMD certificates", step="collateral"))
    return [load_certificate(blob, what="AMD certificate", step="collateral")]


def _cn(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def snp_collateral_from_certificates(
    certs: Iterable[x509.Certificate], *, crl: bytes | None = None
) -> SnpCollateral:
    """Sort certificates into VCEK / VLEK / ASK / ASVK / ARK by their AMD subject common names
    (``SEV-VCEK``, ``SEV-VLEK``, ``SEV-<P>``, ``SEV-VLEK-<P>``, ``ARK-<P>``).

    Raises:
        MalformedEvidence: a certificate that is none of these, or two of one kind.
    """
    slots: dict[str, bytes] = {}
    for cert in certs:
        cn = _cn(cert)
        if cn == "SEV-VCEK":
            kind = "vcek"
        elif cn == "SEV-VLEK":
            kind = "vlek"
        elif cn.startswith("ARK-"):
            kind = "ark"
        elif cn.startswith("SEV-VLEK-"):
            kind = "asvk"
        elif cn.startswith("SEV-"):
            kind = "ask"
        else:
            raise MalformedEvidence(f"not an AMD SEV certificate: CN={cn!r}", step="collateral")
        der = cert.public_bytes(Encoding.DER)
        if kind in slots and slots[kind] != der:
            raise MalformedEvidence(f"two different {kind.upper()} certificates supplied", step="collateral")
        slots[kind] = der
    return SnpCollateral(crl=crl, **slots)


class AmdKdsClient(HttpSource):
    """Fetch VCEKs, certificate chains and CRLs from AMD KDS.

    Args:
        base_url: KDS (:data:`AMD_KDS_URL`) or a caching proxy with the same paths.
        client: An ``httpx.Client`` to use (tests pass one with an in-memory transport).
        timeout: Seconds per network read.
        limits: Response size and deadline of each request (default :class:`HttpLimits`).
    """

    def __init__(
        self,
        base_url: str = AMD_KDS_URL,
        *,
        client: httpx.Client | None = None,
        timeout: float = 10.0,
        limits: HttpLimits | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        super().__init__(client=client, timeout=timeout, follow_redirects=True, limits=limits)

    def _get(self, url: str, what: str) -> bytes:
        return get_ok(self._client, url, what=what, limits=self.limits).content

    def vcek(self, product: SnpProduct, chip_id: bytes, tcb: Mapping[str, int]) -> bytes:
        """The VCEK (DER) of ``chip_id`` at TCB ``tcb`` (KDS SPL names, e.g. from
        :meth:`SnpTcbVersion.as_dict`). Turin uses the first 8 bytes of CHIP_ID and needs ``fmcSPL``.

        Raises:
            CollateralUnavailable: network error or non-200 status.
        """
        hwid = chip_id[:8] if product is SnpProduct.TURIN else chip_id
        names = ["blSPL", "teeSPL", "snpSPL", "ucodeSPL"]
        if product is SnpProduct.TURIN:
            names.insert(0, "fmcSPL")
        query = "&".join(f"{n}={int(tcb[n])}" for n in names)
        return self._get(f"{self.base_url}/vcek/v1/{product.value}/{hwid.hex()}?{query}", "VCEK")

    def cert_chain(self, product: SnpProduct, *, key: str = "vcek") -> tuple[bytes, bytes]:
        """(ASK or ASVK, ARK) as DER, for ``key`` ``"vcek"`` or ``"vlek"``.

        Raises:
            CollateralUnavailable: network error, non-200 status or not two PEM certificates.
        """
        pem = self._get(f"{self.base_url}/{key}/v1/{product.value}/cert_chain", "AMD cert_chain")
        try:
            first, second = load_certificates(pem)
        except (ValueError, MalformedEvidence):
            raise CollateralUnavailable(
                "KDS cert_chain is not two PEM certificates", step="collateral"
            ) from None
        return first.public_bytes(Encoding.DER), second.public_bytes(Encoding.DER)

    def crl(self, product: SnpProduct, *, key: str = "vcek") -> bytes:
        """The ARK-signed CRL (DER) for ``product``.

        Raises:
            CollateralUnavailable: network error or non-200 status.
        """
        return self._get(f"{self.base_url}/{key}/v1/{product.value}/crl", "AMD CRL")

    def snp_collateral(
        self, report: SnpReport, product: SnpProduct, *, with_crl: bool = True
    ) -> SnpCollateral:
        """The VCEK, chain and CRL for a VCEK-signed ``report``.

        Raises:
            CollateralUnavailable: anything cannot be fetched, or the report is VLEK-signed
                (VLEKs come from the cloud provider, not from KDS).
        """
        if report.signing_key != 0:
            raise CollateralUnavailable(
                "KDS serves VCEKs only; a VLEK-signed report needs the provider's VLEK", step="collateral"
            )
        vcek = self.vcek(product, report.chip_id, report.tcb("reported", product).as_dict())
        ask, ark = self.cert_chain(product)
        return SnpCollateral(vcek=vcek, ask=ask, ark=ark, crl=self.crl(product) if with_crl else None)
