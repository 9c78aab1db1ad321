"""Driver and VBIOS RIMs of the virtual CC GPU: SWID 2015 XML with an enveloped XMLDSig.

The document copies the structure, attribute order and namespaces of NVIDIA's RIMs
(gpu-evidence.md §7.1) and is signed like them (§7.2): C14N 1.1, ECDSA-SHA384 with a raw ``r‖s``
SignatureValue, SHA-384 digest, a single ``URI=""`` reference, and the 4-certificate signing
chain (L4 signer first, root last) in ``ds:KeyInfo/ds:X509Data``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from xml.sax.saxutils import quoteattr

from cryptography.hazmat.primitives import serialization
from lxml import etree
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod
from signxml.signer import XMLSigner

from ccai.virtual._gpu_model import VirtualGpuModel
from ccai.virtual._gpu_pki import PkiCredential
from ccai.virtual._gpu_report import GoldenMeasurement

__all__ = ["build_rim"]

_SWID_NS = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd"
_SHA384_NS = "http://www.w3.org/2001/04/xmlenc#sha384"
_TCG_NS = "https://trustedcomputinggroup.org/resource/tcg-reference-integrity-manifest-rim-information-model/"


def _resource(g: GoldenMeasurement, component: str) -> str:
    active = g.component == component
    alts = g.alternatives if active else (bytes(48),)
    name = g.name if active else f"Measurement_{g.index}"
    hashes = " ".join(f'ns2:Hash{k}="{value.hex()}"' for k, value in enumerate(alts))
    return (
        f'        <ns0:Resource type="Measurement" index="{g.index}" active="{active}" '
        f'alternatives="{len(alts)}" {hashes} name={quoteattr(name)} size="48"/>\n'
    )


def build_rim(
    model: VirtualGpuModel,
    *,
    component: str,
    version: str,
    golden: Sequence[GoldenMeasurement],
    signer: PkiCredential,
    chain: Sequence[bytes],
    product: str | None = None,
    edition: str = "GPU",
) -> bytes:
    """Build and sign one RIM.

    Args:
        model: GPU model (``product``/``name`` attributes).
        component: ``"driver"`` or ``"vbios"``: which golden entries are active in this RIM.
        version: ``colloquialVersion`` (driver version, or VBIOS version upper-case).
        golden: The 64 golden entries (:func:`~ccai.virtual._gpu_report.golden_measurements`).
        signer: The L4 signer key and certificate.
        chain: PEM certificates to embed, L4 first, root last.
        product: ``product``/``name`` (default the model's chip; ``LS10`` for NVSwitch BIOS RIMs).
        edition: ``Meta/@edition``: ``GPU`` or ``SWITCH``.

    Returns:
        The signed XML document (UTF-8, no XML declaration, like NVIDIA's files).
    """
    tag_id = hashlib.sha384(
        f"ccai virtual rim\x00{model.chip}\x00{component}\x00{version}".encode()
    ).hexdigest()
    product = product or model.rim_product
    text = (
        f'<SoftwareIdentity xmlns="{_SWID_NS}" xmlns:ns0="{_SWID_NS}" xmlns:ns2="{_SHA384_NS}" '
        f'corpus="false" name="{product}" patch="false" supplemental="false" tagId="{tag_id}" '
        'version="1.0" tagVersion="0">\n'
        '    <ns0:Entity name="ccai TEST (not NVIDIA)" role="softwareCreator tagCreator"/>\n'
        f'    <ns0:Meta xmlns:ns1="{_TCG_NS}" colloquialVersion={quoteattr(version)} edition="{edition}" '
        f'product="{product}" revision="r1" PayloadType="direct" ns1:BindingSpec="RIMIM" '
        'ns1:BindingSpecVersion="1.01" ns1:PlatformManufacturerId="5703" '
        'ns1:PlatformManufacturerStr="ccai TEST (not NVIDIA)" '
        f'ns1:PlatformModel="{product}" ns1:FirmwareManufacturer="ccai TEST (not NVIDIA)" '
        'ns1:FirmwareManufacturerId="5703"/>\n'
        f'    <ns0:Payload xmlns:SHA384="{_SHA384_NS}">\n'
        + "".join(_resource(g, component) for g in golden)
        + "    </ns0:Payload>\n</SoftwareIdentity>"
    )
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=False)
    root = etree.fromstring(text.encode(), parser)
    signer_xml = XMLSigner(
        signature_algorithm=SignatureMethod.ECDSA_SHA384,
        digest_algorithm=DigestAlgorithm.SHA384,
        c14n_algorithm=CanonicalizationMethod.CANONICAL_XML_1_1,
    )
    key_pem = signer.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    signed = signer_xml.sign(root, key=key_pem, cert=[c.decode() for c in chain])
    return bytes(etree.tostring(signed, encoding="utf-8"))
