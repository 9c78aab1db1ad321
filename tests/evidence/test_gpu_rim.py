"""RIM XML: every manifest in the vectors parses; hostile or broken XML is refused.

Expected values are read from the XML independently with regular expressions (no lxml), plus
the facts gpu-evidence.md §16.4 and NVAT's unit tests state for specific files.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from ccai.errors import MalformedEvidence
from ccai.evidence import Rim, parse_rim

NVAT_UT = "nvtrust/NVIDIA_attestation-sdk@73c032e/nv-attestation-sdk-cpp/unit-tests/testdata"
SAMPLES = "nvtrust/NVIDIA_nvtrust@0281730/guest_tools/gpu_verifiers/local_gpu_verifier/src/verifier/samples"
SHA384_NS = "http://www.w3.org/2001/04/xmlenc#sha384"


def rim_files(vectors: Path) -> list[Path]:
    files = sorted(p for p in (vectors / "nvtrust").rglob("*") if p.suffix in (".xml", ".swidtag"))
    assert len(files) == 35
    return files


def test_every_rim_parses_to_values_read_independently(vectors: Path) -> None:
    for path in rim_files(vectors):
        text = path.read_text()
        rim = parse_rim(path.read_bytes())
        assert rim.raw == path.read_bytes()
        assert rim.colloquial_version == re.search(r'colloquialVersion="([^"]+)"', text).group(1)  # type: ignore[union-attr]
        assert rim.product == re.search(r' product="([^"]+)"', text).group(1)  # type: ignore[union-attr]
        assert rim.tag_id == re.search(r'tagId="([^"]+)"', text).group(1)  # type: ignore[union-attr]
        resources = re.findall(r"<ns0:Resource [^>]*>", text)
        assert len(rim.measurements) == len(resources) == 64
        assert len(rim.active_measurements) == sum('active="True"' in r for r in resources)
        assert len(rim.certificates) == text.count("<ds:X509Certificate>")
        for res, m in zip(resources, rim.measurements, strict=True):
            assert m.index == int(re.search(r'index="(\d+)"', res).group(1))  # type: ignore[union-attr]
            assert m.alternatives == len(m.hashes) == len(re.findall(r"ns2:Hash\d+=", res))
            assert m.hashes[0].hex() == re.search(r'ns2:Hash0="([0-9a-f]+)"', res).group(1)  # type: ignore[union-attr]
            assert m.hash_algorithm == SHA384_NS
            assert m.size == 48
        assert rim.firmware_manufacturer_id == "5703"


def test_vbios_rims_match_their_file_names(vectors: Path) -> None:
    prod = sorted((vectors / SAMPLES).glob("*_PROD.swidtag"))
    assert len(prod) == 24
    for path in prod:
        project, sku, chip, version, _ = path.stem.split("_")
        rim = parse_rim(path.read_bytes())
        assert rim.colloquial_version.replace(".", "").upper() == version.upper()
        assert rim.product == "GH100" and rim.edition == "GPU" and rim.name == "GH100"
        assert sorted(m.index for m in rim.active_measurements) == [0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12]
        assert project and sku and chip


def test_driver_rim_550_144_03(vectors: Path) -> None:
    rim = parse_rim((vectors / NVAT_UT / "NV_GPU_DRIVER_GH100_550.144.03.xml").read_bytes())
    assert rim.colloquial_version == "550.144.03"
    assert (rim.name, rim.version, rim.tag_version) == ("GH100", "1.0", "0")
    assert (rim.entity_name, rim.entity_role) == ("NVIDIA Corporation", "softwareCreator tagCreator")
    assert (rim.edition, rim.revision, rim.payload_type) == ("GPU", "r1", "direct")
    assert (rim.binding_spec, rim.binding_spec_version) == ("RIMIM", "1.01")
    assert rim.platform_manufacturer_id == "5703" and rim.platform_model == "GH100"
    assert rim.firmware_manufacturer == "NVIDIA Corporation"
    m7 = rim.measurement(7)
    assert m7 is not None and m7.active and m7.name == "Measurement_7"
    assert m7.hashes[0].hex().startswith("4a5e4b3d") and m7.hashes[0].hex().endswith("3d49")
    m35 = rim.measurement(35)
    assert m35 is not None and m35.alternatives == 4 and len(set(m35.hashes)) == 4
    assert rim.measurement(64) is None
    common_names = [c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value for c in rim.certificates]
    assert common_names == [
        "HCC RIM L4 Signer",
        "NVIDIA Reference Value L3 GH100 002",
        "NVIDIA Reference Value GH100 CA",
        "NVIDIA CoRIM signing Root CA",
    ]


def test_driver_and_switch_rims(vectors: Path) -> None:
    driver = parse_rim((vectors / SAMPLES / "Driver_RIM_test_no_gpu.swidtag").read_bytes())
    assert driver.colloquial_version == "545.00"
    assert sorted(m.index for m in driver.active_measurements) == [7, *range(21, 41)]
    switch = parse_rim(
        (vectors / NVAT_UT / "switchVBIOSRim_NV_SWITCH_BIOS_5612_0002_890_9610550001.xml").read_bytes()
    )
    assert (switch.product, switch.edition, switch.colloquial_version) == ("LS10", "SWITCH", "96.10.55.00.01")
    assert len(switch.active_measurements) == 31


def _good(vectors: Path) -> bytes:
    return (vectors / NVAT_UT / "NV_GPU_DRIVER_GH100_550.144.03.xml").read_bytes()


def _edit(xml: bytes, old: str, new: str) -> bytes:
    assert old.encode() in xml
    return xml.replace(old.encode(), new.encode(), 1)


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        ('active="True"', 'active="true"', "neither 'True' nor 'False'"),
        ('index="1"', 'index="0"', "occurs twice"),
        ('index="1"', 'index="-1"', "not a non-negative integer"),
        ('alternatives="1"', 'alternatives="2"', "declares 2 alternatives"),
        ('alternatives="1"', 'alternatives="0"', "outside"),
        ('ns2:Hash0="0000', 'ns2:Hash0="zz00', "not hex"),
        ('colloquialVersion="550.144.03"', "", "colloquialVersion"),
        ("<ns0:Meta ", "<ns0:Mota ", "one Meta"),
        ('name="Measurement_7" size="48"', 'name="Measurement_7" size="x"', "size"),
        ("<ds:X509Certificate>MII", "<ds:X509Certificate>!!!", "X509Certificate 0"),
        ("<SoftwareIdentity ", "<SoftwareIdentityX ", "not well-formed|root element"),
    ],
)
def test_malformed_rims(vectors: Path, old: str, new: str, match: str) -> None:
    with pytest.raises(MalformedEvidence, match=match):
        parse_rim(_edit(_good(vectors), old, new))


def test_wrong_root_and_garbage() -> None:
    for bad in (b"", b"not xml", b"<a/>", b'<SoftwareIdentity xmlns="urn:other"/>', b"<x>\xff</x>"):
        with pytest.raises(MalformedEvidence):
            parse_rim(bad)


def test_doctype_and_entities_are_refused(vectors: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    xxe = (
        f'<?xml version="1.0"?><!DOCTYPE s [<!ENTITY x SYSTEM "file://{secret}">]>'
        '<SoftwareIdentity xmlns="http://standards.iso.org/iso/19770/-2/2015/schema.xsd">&x;</SoftwareIdentity>'
    ).encode()
    with pytest.raises(MalformedEvidence, match="DOCTYPE"):
        parse_rim(xxe)
    laughs = b'<!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>' + _good(
        vectors
    ).replace(b'colloquialVersion="550.144.03"', b'colloquialVersion="&b;"', 1)
    with pytest.raises(MalformedEvidence, match="DOCTYPE"):
        parse_rim(laughs)


def test_non_measurement_resources_are_ignored(vectors: Path) -> None:
    xml = _edit(_good(vectors), "</ns0:Payload>", '<ns0:Resource type="File" name="x"/></ns0:Payload>')
    rim: Rim = parse_rim(xml)
    assert len(rim.measurements) == 64


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_raise_only_malformed(data: bytes) -> None:
    with contextlib.suppress(MalformedEvidence):
        parse_rim(data)
