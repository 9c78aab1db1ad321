"""NVIDIA evidence JSON and PEM chains: every vector file parses, round-trips, and bad input fails cleanly."""

from __future__ import annotations

import base64
import contextlib
import json
from pathlib import Path

import pytest
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from ccai.errors import MalformedEvidence
from ccai.evidence import (
    GpuEvidence,
    device_arch,
    dump_evidence_json,
    parse_cert_chain,
    parse_evidence_json,
    vbios_rim_id,
)

NVAT = "nvtrust/NVIDIA_attestation-sdk@73c032e"
PPCIE = "nvtrust/NVIDIA_nvtrust@0281730/guest_tools/ppcie-verifier-sdk-cpp/tests/data"
E97B = "e97b23a1718095a0e9e35edca810768c70a6a5a389b705e753b197912bc11576"
N931 = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb"
N476 = "4760e30534a0621357d458b1a7936551b5dc4cd1e69718adf7ed9fb0252a537e"

# file, item count, arch, nonce, driver, VBIOS (gpu-evidence.md §16.2)
FILES = [
    (
        f"{NVAT}/common-test-data/serialized_test_evidence/hopper_evidence.json",
        1,
        "HOPPER",
        E97B,
        "590.12",
        "96.00.A5.00.01",
    ),
    (
        f"{NVAT}/nv-attestation-sdk-cpp/unit-tests/testdata/evidence_hopper_590_12.json",
        1,
        "HOPPER",
        E97B,
        "590.12",
        "96.00.A5.00.01",
    ),
    (
        f"{NVAT}/common-test-data/serialized_test_evidence/multi_gpu_hopper.json",
        4,
        "HOPPER",
        E97B,
        "590.12",
        "96.00.A5.00.01",
    ),
    (
        f"{NVAT}/common-test-data/serialized_test_evidence/hopper_evidence_cert_hold.json",
        1,
        "HOPPER",
        N931,
        "570.86.10",
        "96.00.AF.00.01",
    ),
    (
        f"{NVAT}/common-test-data/serialized_test_evidence/switch_evidence_ls10.json",
        1,
        "LS10",
        N931,
        None,
        "96.10.55.00.01",
    ),
    (f"{NVAT}/common-test-data/serialized_test_evidence/multi_switch_ls10.json", 4, "LS10", N931, None, None),
    (f"{PPCIE}/gpu_evidence.json", 8, "HOPPER", N476, "590.12", "96.00.A5.00.01"),
    (f"{PPCIE}/switch_evidence.json", 4, "LS10", N476, None, None),
]


@pytest.mark.parametrize(
    ("rel", "count", "arch", "nonce", "driver", "vbios"), FILES, ids=lambda v: str(v)[-30:]
)
def test_vector_files_parse(
    vectors: Path, rel: str, count: int, arch: str, nonce: str, driver: str | None, vbios: str | None
) -> None:
    data = (vectors / rel).read_bytes()
    items = parse_evidence_json(data)
    assert len(items) == count
    raw_items = json.loads(data)
    for item, raw in zip(items, raw_items, strict=True):
        assert item.arch == arch
        assert item.nonce.hex() == nonce
        report = item.parse_report()
        assert report.nonce == item.nonce  # the nonce the file declares is the one the GPU signed
        assert device_arch(report) == arch
        if driver is not None:
            assert report.opaque_data.driver_version == driver
        if vbios is not None:
            assert report.opaque_data.vbios_version == vbios
        # Producers that add unsigned versions agree with the signed ones.
        assert item.driver_version in (None, report.opaque_data.driver_version)
        assert item.vbios_version in (None, report.opaque_data.vbios_version)
        assert item.version == raw.get("version")
        chain = item.certificates()
        assert len(chain) == 5
        root_cn = chain[-1].subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        assert root_cn == "NVIDIA Device Identity CA"
        assert vbios_rim_id(report).startswith("NV_SWITCH_BIOS_" if arch == "LS10" else "NV_GPU_VBIOS_")
        # Round trip: dump writes exactly the JSON object NVIDIA's tools wrote.
        assert json.loads(dump_evidence_json([item]))[0] == raw


def test_ppcie_gpu_reports_list_the_switch_pdis(vectors: Path) -> None:
    gpus = parse_evidence_json((vectors / PPCIE / "gpu_evidence.json").read_bytes())
    switches = parse_evidence_json((vectors / PPCIE / "switch_evidence.json").read_bytes())
    switch_pdis = {s.parse_report().opaque_data.device_pdi for s in switches}
    assert len(switch_pdis) == 4
    for gpu in gpus:
        opaque = gpu.parse_report().opaque_data
        assert opaque.feature_flag == 2 and opaque.protected_pcie_status == 0xAA
        links = {pdi[::-1] for pdi in opaque.switch_pdis or () if any(pdi)}  # GPU side is byte-reversed
        assert links == switch_pdis


def _sample(n: int = 0) -> GpuEvidence:
    return GpuEvidence(
        arch="HOPPER",
        nonce=bytes([n]) * 32,
        report=bytes(range(256)) * 3,
        certificate_chain=b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )


def test_round_trip_with_and_without_optional_keys() -> None:
    items = (
        _sample(1),
        GpuEvidence(
            arch="BLACKWELL",
            nonce=b"\x02" * 32,
            report=b"r",
            certificate_chain=b"c",
            version="1.0",
            driver_version="595.58.03",
            vbios_version="98.02.81.00.01",
        ),
    )
    text = dump_evidence_json(items)
    assert parse_evidence_json(text) == items
    doc = json.loads(text)
    assert list(doc[0]) == ["arch", "nonce", "evidence", "certificate"]
    assert doc[1]["version"] == "1.0"


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.builds(
            GpuEvidence,
            arch=st.sampled_from(["HOPPER", "BLACKWELL", "LS10"]),
            nonce=st.binary(min_size=32, max_size=32),
            report=st.binary(min_size=1, max_size=200),
            certificate_chain=st.binary(min_size=1, max_size=200),
            version=st.none() | st.just("1.0"),
            driver_version=st.none() | st.text(min_size=1, max_size=12),
            vbios_version=st.none() | st.text(min_size=1, max_size=14),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_round_trip_property(items: list[GpuEvidence]) -> None:
    assert parse_evidence_json(dump_evidence_json(items)) == tuple(items)


def _doc(**overrides: object) -> bytes:
    obj: dict[str, object] = {
        "arch": "HOPPER",
        "nonce": "00" * 32,
        "evidence": base64.b64encode(b"report").decode(),
        "certificate": base64.b64encode(b"pem").decode(),
    }
    for key, value in overrides.items():
        if value is None:
            obj.pop(key)
        else:
            obj[key] = value
    return json.dumps([obj]).encode()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"{}", "non-empty list"),
        (b"[]", "non-empty list"),
        (b"[1]", "not an object"),
        (_doc(nonce=None), "lacks nonce"),
        (_doc(evidence=None, certificate=None), "lacks evidence, certificate"),
        (_doc(extra="x"), "unknown keys extra"),
        (_doc(nonce="zz"), "not hex"),
        (_doc(nonce=5), "not hex"),
        (_doc(nonce="00" * 31), "31 bytes"),
        (_doc(evidence="***"), "not valid base64"),
        (_doc(evidence=""), "non-empty base64"),
        (_doc(arch=7), "'arch'"),
        (_doc(version=1), "'version' must be a string"),
    ],
)
def test_bad_evidence_json(data: bytes, match: str) -> None:
    with pytest.raises(MalformedEvidence, match=match):
        parse_evidence_json(data)


@settings(max_examples=150, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    )
)
def test_any_json_raises_only_malformed(doc: object) -> None:
    with contextlib.suppress(MalformedEvidence):
        parse_evidence_json(json.dumps(doc).encode())


# -- PEM chains ------------------------------------------------------------------------------


def test_every_chain_in_the_vectors_parses_leaf_first(vectors: Path) -> None:
    chains = [p for p in (vectors / "nvtrust").rglob("*.txt") if "ert" in p.name and "claims" not in p.name]
    assert len(chains) == 10
    for path in chains:
        certs = parse_cert_chain(path.read_bytes())
        assert len(certs) == 5
        leaf_cn = certs[0].subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        assert isinstance(leaf_cn, str) and leaf_cn.endswith("FMC LF")
        assert certs[-1].subject == certs[-1].issuer  # the device root closes the chain


def test_chain_tolerates_nul_padding_but_not_garbage(vectors: Path) -> None:
    lgv = "nvtrust/NVIDIA_nvtrust@0281730/guest_tools/gpu_verifiers/local_gpu_verifier/src/verifier"
    root = (vectors / lgv / "certs/verifier_device_root.pem").read_bytes()
    assert len(parse_cert_chain(root + b"\0" * 100)) == 1
    assert len(parse_cert_chain(root + b"\n" + root)) == 2
    bad = [
        b"",
        b"garbage",
        root + b"trailing text",
        b"junk\n" + root,
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        root.replace(b"-----END CERTIFICATE-----", b"-----END PUBLIC KEY-----"),
    ]
    for data in bad:
        with pytest.raises(MalformedEvidence):
            parse_cert_chain(data)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=600))
def test_random_chain_bytes_raise_only_malformed(data: bytes) -> None:
    with contextlib.suppress(MalformedEvidence):
        parse_cert_chain(b"-----BEGIN CERTIFICATE-----\n" + data + b"\n-----END CERTIFICATE-----\n")
