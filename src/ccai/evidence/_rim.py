"""NVIDIA reference integrity manifests (RIMs): ISO SWID 2015 XML with an enveloped XMLDSig.

This module only *reads* a RIM; it does not check its signature or certificate chain (that is the
verifier's job, and the signature must be checked on :attr:`Rim.raw`, never on a re-serialisation).

Structure (gpu-evidence.md §7.1)::

    SoftwareIdentity  name="GH100" tagId=… version="1.0" tagVersion="0"
      Entity          name="NVIDIA Corporation" role="softwareCreator tagCreator"
      Meta            colloquialVersion="550.144.03" product="GH100" edition="GPU" revision="r1" …
                      ns1:FirmwareManufacturerId="5703" … (TCG RIM information model attributes)
      Payload
        Resource      type="Measurement" index="0..63" active="True|False" alternatives="N"
                      {…xmlenc#sha384}Hash0 … Hash{N-1} name=… size="48"
      ds:Signature    … ds:KeyInfo/ds:X509Data/ds:X509Certificate × 4 (signer first)

The XML parser never resolves entities, never loads a DTD and never touches the network; a
document with a DOCTYPE is rejected outright.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from cryptography import x509
from lxml import etree

from ccai.errors import MalformedEvidence
from ccai.evidence._certs import load_certificate

__all__ = ["SWID_NS", "TCG_RIM_NS", "XMLDSIG_NS", "Rim", "RimMeasurement", "parse_rim"]

SWID_NS = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd"
TCG_RIM_NS = (
    "https://trustedcomputinggroup.org/resource/tcg-reference-integrity-manifest-rim-information-model/"
)
XMLDSIG_NS = "http://www.w3.org/2000/09/xmldsig#"

_HASH_ATTR = re.compile(r"Hash(0|[1-9][0-9]*)")
_MAX_ALTERNATIVES = 64
_MAX_INT_DIGITS = 18


@dataclass(frozen=True, slots=True, kw_only=True)
class RimMeasurement:
    """One ``Resource type="Measurement"`` of a RIM: the golden value(s) for one index.

    Attributes:
        index: RIM index (0-based; compared with SPDM measurement block ``index + 1``).
        active: Whether the index is checked (``active="True"``).
        alternatives: How many acceptable values the RIM lists.
        hashes: The acceptable values ``Hash0 … Hash{alternatives-1}``, in order.
        hash_algorithm: The namespace URI of the hash attributes, naming the algorithm
            (``http://www.w3.org/2001/04/xmlenc#sha384``).
        size: The declared value size in bytes (a runtime value must have this size).
        name: The resource name, e.g. ``MixedMeasurement_21``.
    """

    index: int
    active: bool
    alternatives: int
    hashes: tuple[bytes, ...]
    hash_algorithm: str
    size: int
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Rim:
    """A parsed (not verified) NVIDIA RIM.

    Attributes:
        raw: The document exactly as given (what the XMLDSig covers).
        tag_id: ``SoftwareIdentity/@tagId``.
        name: ``SoftwareIdentity/@name`` (``GH100``, ``GB100``, ``LS10``).
        version: ``SoftwareIdentity/@version`` (the tag's version, ``1.0``).
        tag_version: ``SoftwareIdentity/@tagVersion``.
        entity_name: ``Entity/@name`` (``NVIDIA Corporation``).
        entity_role: ``Entity/@role``.
        colloquial_version: ``Meta/@colloquialVersion``: the driver or VBIOS version the RIM is for.
        product: ``Meta/@product`` (``GH100`` …): must match the report's chip.
        edition: ``Meta/@edition`` (``GPU`` or ``SWITCH``).
        revision: ``Meta/@revision``.
        payload_type: ``Meta/@PayloadType``.
        binding_spec: ``Meta/@ns1:BindingSpec``.
        binding_spec_version: ``Meta/@ns1:BindingSpecVersion``.
        platform_manufacturer_id: ``Meta/@ns1:PlatformManufacturerId``.
        platform_manufacturer_str: ``Meta/@ns1:PlatformManufacturerStr``.
        platform_model: ``Meta/@ns1:PlatformModel``.
        firmware_manufacturer: ``Meta/@ns1:FirmwareManufacturer``.
        firmware_manufacturer_id: ``Meta/@ns1:FirmwareManufacturerId`` (the ``oemid`` claim, ``5703``).
        meta: Every ``Meta`` attribute as ``(Clark name, value)`` pairs, in document order.
        measurements: Every measurement resource, in document order.
        certificates: The ``ds:X509Certificate`` values of the signature's KeyInfo, signer first.
    """

    raw: bytes
    tag_id: str
    name: str
    version: str
    tag_version: str | None
    entity_name: str | None
    entity_role: str | None
    colloquial_version: str
    product: str
    edition: str | None
    revision: str | None
    payload_type: str | None
    binding_spec: str | None
    binding_spec_version: str | None
    platform_manufacturer_id: str | None
    platform_manufacturer_str: str | None
    platform_model: str | None
    firmware_manufacturer: str | None
    firmware_manufacturer_id: str | None
    meta: tuple[tuple[str, str], ...]
    measurements: tuple[RimMeasurement, ...]
    certificates: tuple[x509.Certificate, ...]

    def measurement(self, index: int) -> RimMeasurement | None:
        """The measurement with RIM index ``index``, or ``None``."""
        for m in self.measurements:
            if m.index == index:
                return m
        return None

    @property
    def active_measurements(self) -> tuple[RimMeasurement, ...]:
        """The measurements with ``active="True"``."""
        return tuple(m for m in self.measurements if m.active)


def _q(local: str) -> str:
    return f"{{{SWID_NS}}}{local}"


def _fail(message: str, *, index: int | None = None) -> MalformedEvidence:
    return MalformedEvidence(f"RIM: {message}", step="parse", index=index)


def _required(el: etree._Element, attr: str, where: str) -> str:
    value = el.get(attr)
    if value is None or not value.strip():
        raise _fail(f"{where} lacks the {attr} attribute")
    return value


def _int_attr(el: etree._Element, attr: str, where: str) -> int:
    value = _required(el, attr, where)
    # Bounded length: int() refuses more than 4300 digits with a ValueError, and no RIM needs 19.
    if not value.isascii() or not value.isdigit() or len(value) > _MAX_INT_DIGITS:
        raise _fail(f"{where} {attr}={value[:40]!r} is not a non-negative integer")
    return int(value)


def _measurement(el: etree._Element, n: int) -> RimMeasurement:
    where = f"Resource {n}"
    index = _int_attr(el, "index", where)
    active_text = _required(el, "active", where)
    # Exact strings, as NVIDIA's verifiers compare them (gpu-evidence.md §8).
    if active_text not in ("True", "False"):
        raise _fail(f"{where} active={active_text!r} is neither 'True' nor 'False'", index=index)
    alternatives = _int_attr(el, "alternatives", where)
    if not 1 <= alternatives <= _MAX_ALTERNATIVES:
        raise _fail(f"{where} alternatives={alternatives} is outside 1..{_MAX_ALTERNATIVES}", index=index)
    found: dict[int, tuple[str, str]] = {}
    for key, value in el.attrib.items():
        qname = etree.QName(key)
        m = _HASH_ATTR.fullmatch(qname.localname)
        if m is None:
            continue
        k = int(m.group(1))
        if k in found:
            raise _fail(f"{where} has Hash{k} twice", index=index)
        found[k] = (qname.namespace or "", str(value))
    if sorted(found) != list(range(alternatives)):
        raise _fail(
            f"{where} declares {alternatives} alternatives but has Hash attributes {sorted(found)}",
            index=index,
        )
    algorithms = {ns for ns, _ in found.values()}
    if len(algorithms) != 1:
        raise _fail(f"{where} mixes hash namespaces {sorted(algorithms)}", index=index)
    hashes: list[bytes] = []
    for k in range(alternatives):
        text = found[k][1]
        try:
            hashes.append(bytes.fromhex(text))
        except ValueError:
            raise _fail(f"{where} Hash{k} is not hex", index=index) from None
    return RimMeasurement(
        index=index,
        active=active_text == "True",
        alternatives=alternatives,
        hashes=tuple(hashes),
        hash_algorithm=algorithms.pop(),
        size=_int_attr(el, "size", where),
        name=el.get("name") or "",
    )


def _certificates(root: etree._Element) -> tuple[x509.Certificate, ...]:
    certs: list[x509.Certificate] = []
    for n, el in enumerate(root.iterfind(f"{{{XMLDSIG_NS}}}Signature//{{{XMLDSIG_NS}}}X509Certificate")):
        text = "".join((el.text or "").split())
        try:
            der = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _fail(f"X509Certificate {n} is not base64: {exc}", index=n) from None
        certs.append(load_certificate(der, what=f"RIM: X509Certificate {n}", index=n))
    return tuple(certs)


def parse_rim(xml: bytes) -> Rim:
    """Parse an NVIDIA RIM (SWID XML). The signature is **not** verified here.

    Args:
        xml: The RIM document bytes.

    Returns:
        The manifest's identity, metadata, measurements and embedded certificates.

    Raises:
        MalformedEvidence: not well-formed XML, a DOCTYPE, not a SWID ``SoftwareIdentity``, a
            missing ``Meta``/``colloquialVersion``/``product``, a malformed or duplicated
            measurement resource, or an undecodable embedded certificate.
    """
    raw = bytes(xml)
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False
    )
    try:
        root = etree.fromstring(raw, parser)
    except etree.XMLSyntaxError as exc:
        raise _fail(f"not well-formed XML: {exc}") from None
    if root is None:
        raise _fail("empty document")
    # lxml-stubs lack DocInfo.doctype; it is "" when the document has no DOCTYPE.
    doctype = str(getattr(root.getroottree().docinfo, "doctype", ""))
    if doctype:
        raise _fail("a DOCTYPE is not allowed in a RIM (entity and DTD tricks are refused)")
    if root.tag != _q("SoftwareIdentity"):
        raise _fail(f"root element is {root.tag!r}, expected SWID SoftwareIdentity")

    metas = root.findall(_q("Meta"))
    if len(metas) != 1:
        raise _fail(f"expected one Meta element, found {len(metas)}")
    meta = metas[0]
    entity = root.find(_q("Entity"))
    payloads = root.findall(_q("Payload"))
    if len(payloads) != 1:
        raise _fail(f"expected one Payload element, found {len(payloads)}")

    measurements: list[RimMeasurement] = []
    seen: set[int] = set()
    for n, el in enumerate(payloads[0].iterfind(_q("Resource"))):
        if el.get("type") != "Measurement":
            continue  # only measurement resources carry reference values
        m = _measurement(el, n)
        if m.index in seen:
            raise _fail(f"measurement index {m.index} occurs twice", index=m.index)
        seen.add(m.index)
        measurements.append(m)

    def tcg(attr: str) -> str | None:
        return meta.get(f"{{{TCG_RIM_NS}}}{attr}")

    return Rim(
        raw=raw,
        tag_id=_required(root, "tagId", "SoftwareIdentity"),
        name=_required(root, "name", "SoftwareIdentity"),
        version=_required(root, "version", "SoftwareIdentity"),
        tag_version=root.get("tagVersion"),
        entity_name=None if entity is None else entity.get("name"),
        entity_role=None if entity is None else entity.get("role"),
        colloquial_version=_required(meta, "colloquialVersion", "Meta"),
        product=_required(meta, "product", "Meta"),
        edition=meta.get("edition"),
        revision=meta.get("revision"),
        payload_type=meta.get("PayloadType"),
        binding_spec=tcg("BindingSpec"),
        binding_spec_version=tcg("BindingSpecVersion"),
        platform_manufacturer_id=tcg("PlatformManufacturerId"),
        platform_manufacturer_str=tcg("PlatformManufacturerStr"),
        platform_model=tcg("PlatformModel"),
        firmware_manufacturer=tcg("FirmwareManufacturer"),
        firmware_manufacturer_id=tcg("FirmwareManufacturerId"),
        meta=tuple((str(k), str(v)) for k, v in meta.attrib.items()),
        measurements=tuple(measurements),
        certificates=_certificates(root),
    )
