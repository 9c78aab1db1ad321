"""NVIDIA attestation reports: every real GPU and NVSwitch vector parses to its known values.

Expected values come from sources independent of the parser: NVAT's parse oracles
(``spdm_parsed_output.json`` …), Trustee's parsed claims of the GB202 report, and the vector table
of gpu-evidence.md §16. Signatures are checked with ``cryptography`` over ``signed_bytes``, which
proves that ``signed_bytes`` is exactly what the device signed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ccai.errors import MalformedEvidence, UnsupportedEvidence
from ccai.evidence import (
    AttestationReport,
    device_arch,
    driver_rim_id,
    load_report,
    parse_attestation_report,
    parse_cert_chain,
    vbios_rim_id,
)

NVAT_UT = "nvtrust/NVIDIA_attestation-sdk@73c032e/nv-attestation-sdk-cpp/unit-tests/testdata"
SAD = f"{NVAT_UT}/sample_attestation_data"
LGV = "nvtrust/NVIDIA_nvtrust@0281730/guest_tools/gpu_verifiers/local_gpu_verifier/src/verifier"
LGV0 = "nvtrust/NVIDIA_nvtrust@0ab869a/guest_tools/gpu_verifiers/local_gpu_verifier/src/verifier"
TRU = "nvtrust/confidential-containers_trustee@b28d3fe/deps/verifier/test_data/nvidia"

N931 = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb"
N4CF = "4cff7f5380ead8fad8ec2c531c110aca4302a88f603792801a8ca29ee151af2e"


@dataclass(frozen=True)
class Case:
    report: str
    chain: str
    nonce_prefix: str
    driver: str | None
    vbios: str
    blocks: int
    driver_rim: str | None
    vbios_rim: str
    arch: str
    signature_ok: bool = True
    has_fwid: bool = True


# gpu-evidence.md §16.1 and §16.3 (values read from NVIDIA's documentation of the vectors).
CASES = [
    Case(
        f"{NVAT_UT}/hopperAttestationReport.txt",
        f"{NVAT_UT}/hopperCertChain.txt",
        "5bb22e37",
        "580.159.03",
        "96.00.74.00.20",
        64,
        "NV_GPU_DRIVER_GH100_580.159.03",
        "NV_GPU_VBIOS_1010_0205_862_9600740020",
        "HOPPER",
    ),
    Case(
        f"{LGV}/samples/hopperAttestationReport.txt",
        f"{LGV}/samples/hopperCertChain.txt",
        N931,
        "550.90.07",
        "96.00.9F.00.01",
        64,
        "NV_GPU_DRIVER_GH100_550.90.07",
        "NV_GPU_VBIOS_1010_0200_882_96009F0001",
        "HOPPER",
    ),
    Case(
        f"{LGV0}/samples/attestationReport.txt",
        f"{LGV0}/samples/gpuAkCertChain.txt",
        N4CF,
        "545.00",
        "96.00.5E.00.01",
        64,
        "NV_GPU_DRIVER_GH100_545.00",
        "NV_GPU_VBIOS_1010_0200_882_96005E0001",
        "HOPPER",
        has_fwid=False,
    ),
    Case(
        f"{SAD}/gpu/hopperAttestationReport.txt",
        f"{SAD}/gpu/hopperCertChain.txt",
        "27a32824",
        "535.86.09",
        "96.00.5E.00.01",
        64,
        "NV_GPU_DRIVER_GH100_535.86.09",
        "NV_GPU_VBIOS_1010_0200_882_96005E0001",
        "HOPPER",
        has_fwid=False,
    ),
    Case(
        f"{SAD}/gpu/hopperAttestationReportExpired.txt",
        f"{SAD}/gpu/hopperCertChainExpired.txt",
        N931,
        "570.124.03",
        "96.00.5E.00.04",
        64,
        "NV_GPU_DRIVER_GH100_570.124.03",
        "NV_GPU_VBIOS_1010_0205_862_96005E0004",
        "HOPPER",
    ),
    Case(
        f"{SAD}/gpu/hopperAttestationReportInvalidSignature.txt",
        f"{SAD}/gpu/hopperCertChain.txt",
        N931,
        "560.00",
        "96.00.A5.00.01",
        64,
        "NV_GPU_DRIVER_GH100_560.00",
        "NV_GPU_VBIOS_G520_0200_885_9600A50001",
        "HOPPER",
        signature_ok=False,
    ),
    Case(
        f"{SAD}/gpu/blackwellAttestationReport.txt",
        f"{SAD}/gpu/blackwellCertChain.txt",
        N931,
        "575.32",
        "97.00.88.00.0F",
        64,
        "NV_GPU_CC_DRIVER_GB100_575.32",
        "NV_GPU_VBIOS_G525_0220_886_970088000F",
        "BLACKWELL",
    ),
    Case(
        f"{TRU}/blackwellAttestationReport.txt",
        f"{TRU}/blackwell_cert_chain_case1.txt",
        N4CF,
        "595.58.03",
        "98.02.81.00.01",
        64,
        "NV_GPU_CC_DRIVER_GB202_595.58.03",
        "NV_GPU_VBIOS_G153_0210_895_9802810001",
        "BLACKWELL",
    ),
    Case(
        f"{NVAT_UT}/switchAttestationReport.txt",
        f"{NVAT_UT}/switchCertChain.txt",
        N931,
        None,
        "96.10.55.00.01",
        31,
        None,
        "NV_SWITCH_BIOS_5612_0002_890_9610550001",
        "LS10",
        has_fwid=False,
    ),
    Case(
        f"{SAD}/switch/switchAttestationReport.txt",
        f"{SAD}/switch/switchCertChain.txt",
        N931,
        None,
        "96.10.55.00.01",
        31,
        None,
        "NV_SWITCH_BIOS_5612_0002_890_9610550001",
        "LS10",
        has_fwid=False,
    ),
    Case(
        f"{SAD}/switch/switchAttestationReportInvalidSignature.txt",
        f"{SAD}/switch/switchCertChain.txt",
        "ea038ed5",
        None,
        "96.10.52.00.00",
        31,
        None,
        "NV_SWITCH_BIOS_5612_0002_890_9610520000",
        "LS10",
        signature_ok=False,
        has_fwid=False,
    ),
]


def load(vectors: Path, rel: str) -> AttestationReport:
    return parse_attestation_report(load_report((vectors / rel).read_bytes()))


def signature_verifies(report: AttestationReport, chain_pem: bytes) -> bool:
    leaf = parse_cert_chain(chain_pem)[0]
    sig = encode_dss_signature(
        int.from_bytes(report.signature[:48], "big"), int.from_bytes(report.signature[48:], "big")
    )
    key = leaf.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    try:
        key.verify(sig, report.signed_bytes, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        return False
    return True


@pytest.mark.parametrize(
    "case", CASES, ids=lambda c: c.report.split("@")[0][8:] + "/" + c.report.rsplit("/", 1)[1]
)
def test_real_report_fields(vectors: Path, case: Case) -> None:
    report = load(vectors, case.report)
    opaque = report.opaque_data
    assert report.nonce.hex().startswith(case.nonce_prefix)
    assert report.request.nonce == report.nonce == report.raw[4:36]
    assert opaque.driver_version == case.driver
    assert opaque.vbios_version == case.vbios
    assert len(report.measurements) == case.blocks
    assert [b.index for b in report.measurements] == list(range(1, case.blocks + 1))
    assert all(b.measurement_specification == 1 and b.value_type == 1 for b in report.measurements)
    assert all(len(b.value) == 48 for b in report.measurements)
    assert device_arch(report) == case.arch
    assert vbios_rim_id(report) == case.vbios_rim
    if case.driver_rim is None:
        with pytest.raises(UnsupportedEvidence):
            driver_rim_id(report)
    else:
        assert driver_rim_id(report) == case.driver_rim
    assert (opaque.fwid is not None) == case.has_fwid
    assert opaque.device == ("switch" if case.arch == "LS10" else "gpu")
    # signed_bytes is everything but the 96-byte signature, and it is what the device signed.
    assert report.signed_bytes + report.signature == report.raw
    assert len(report.signature) == 96
    assert signature_verifies(report, (vectors / case.chain).read_bytes()) is case.signature_ok


def _oracle_hex(value: str) -> bytes:
    assert value.startswith("0x")
    return bytes.fromhex(value[2:])


@pytest.mark.parametrize(
    ("report_rel", "oracle", "req_oracle"),
    [
        (f"{NVAT_UT}/hopperAttestationReport.txt", "spdm_parsed_output.json", "spdm_req_parsed_output.json"),
        (
            f"{NVAT_UT}/switchAttestationReport.txt",
            "switch_spdm_parsed_output.json",
            "switch_spdm_req_parsed_output.json",
        ),
    ],
)
def test_matches_nvat_parse_oracles(vectors: Path, report_rel: str, oracle: str, req_oracle: str) -> None:
    report = load(vectors, report_rel)
    want = json.loads((vectors / NVAT_UT / oracle).read_text())
    want_req = json.loads((vectors / NVAT_UT / req_oracle).read_text())
    req, resp, opaque = report.request, report.response, report.opaque_data

    assert int(want_req["SPDMVersion"], 16) == req.spdm_version
    assert int(want_req["RequestResponseCode"], 16) == req.request_response_code
    assert int(want_req["Param1"], 16) == req.param1
    assert int(want_req["Param2"], 16) == req.param2
    assert _oracle_hex(want_req["Nonce"]) == req.nonce
    assert int(want_req["SlotIDParam"], 16) == req.slot_id

    assert int(want["SPDMVersion"], 16) == resp.spdm_version
    assert int(want["RequestResponseCode"], 16) == resp.request_response_code
    assert int(want["Param1"], 16) == resp.param1
    assert int(want["Param2"], 16) == resp.param2
    assert want["NumberOfBlocks"] == len(resp.measurements)
    assert want["MeasurementRecordLength"] == len(resp.measurement_record)
    assert _oracle_hex(want["Nonce"]) == resp.nonce
    assert want["OpaqueLength"] == len(opaque.raw)
    assert _oracle_hex(want["Signature"]) == report.signature

    blocks = want["MeasurementRecord"]["MeasurementBlocks"]
    assert len(blocks) == len(resp.measurements)
    for key, block in blocks.items():
        got = report.measurement(int(key))
        assert got is not None
        assert block["DMTFSpecMeasurementValueType"] == got.value_type
        assert block["DMTFSpecMeasurementValueSize"] == len(got.value)
        assert _oracle_hex(block["DMTFSpecMeasurementValue"]) == got.value

    fields = want["OpaqueData"]["OpaqueDataField"]
    # NVAT splits the switch's SWITCH_GPU_PDIS TLV into two entries (PDIs and ports).
    wire_names = {f"OPAQUE_FIELD_ID_{f.name}" for f in opaque}
    # The GPU oracle predates the OPAQUE_DATA_VERSION / FEATURE_FLAG TLVs (checked in
    # test_opaque_versions_and_flags); every field it lists must be there with its value.
    extra = wire_names - (set(fields) - {"OPAQUE_FIELD_ID_SWITCH_PORT"})
    assert extra <= {"OPAQUE_FIELD_ID_OPAQUE_DATA_VERSION", "OPAQUE_FIELD_ID_FEATURE_FLAG"}
    assert set(fields) - {"OPAQUE_FIELD_ID_SWITCH_PORT"} <= wire_names
    for name, value in fields.items():
        short = name.removeprefix("OPAQUE_FIELD_ID_")
        if short == "MSRSCNT":
            assert opaque.measurement_counts == tuple(value)
        elif short == "DISABLED_PORTS":
            assert opaque.disabled_ports == tuple(value)
        elif short == "SWITCH_GPU_PDIS":
            assert opaque.switch_gpu_pdis == tuple(_oracle_hex(v) for v in value)
        elif short == "SWITCH_PORT":
            assert opaque.switch_ports == b"".join(_oracle_hex(v) for v in value)
        else:
            field = opaque.get(short)
            assert field is not None, short
            assert field.value == _oracle_hex(value), short


def test_matches_trustee_claims_for_gb202(vectors: Path) -> None:
    report = load(vectors, f"{TRU}/blackwellAttestationReport.txt")
    claims = json.loads((vectors / TRU / "blackwellAttestationReport-claims.txt").read_text())
    config, opaque = claims["config"], report.opaque_data
    assert opaque.board_id == int.from_bytes(bytes.fromhex(config["board_id"]), "little")
    assert opaque.chip_info == config["chip_info"]
    assert opaque.chip_sku == config["chip_sku"]
    assert opaque.chip_sku_mod == config["chip_sku_mod"]
    assert opaque.cprinfo == bytes.fromhex(config["cpr_info"])
    assert opaque.driver_version == config["driver_version"]
    assert opaque.feature_flag == 0 and config["feature_flag"] == "SPT"
    assert opaque.fwid == bytes.fromhex(config["fwid"])
    assert opaque.gpu_info == bytes.fromhex(config["gpu_info"])
    assert opaque.nvdec0_status == 0xAA and config["nvdec0_status"] == "enabled"
    assert opaque.opaque_data_version == config["opaque_data_version"]
    assert opaque.project == config["project"]
    assert opaque.project_sku == config["project_sku"]
    assert opaque.get("PROJECT_SKU_MOD") is not None
    assert opaque.get("PROJECT_SKU_MOD").value == bytes.fromhex(config["project_sku_mod"])  # type: ignore[union-attr]
    assert opaque.sys_enable_status == bytes.fromhex(config["sys_enable_status"])
    assert opaque.vbios_version == config["vbios_version"]
    counts = opaque.measurement_counts
    assert counts is not None
    assert {str(i + 1): c for i, c in enumerate(counts)} == config["measurement_count"]
    assert {str(b.index): b.value.hex() for b in report.measurements} == claims["measurements"]


def test_opaque_versions_and_flags(vectors: Path) -> None:
    hopper580 = load(vectors, f"{NVAT_UT}/hopperAttestationReport.txt").opaque_data
    assert (hopper580.opaque_data_version, hopper580.feature_flag, hopper580.chip_info) == (1, 0, None)
    assert hopper580.nvdec0_status == 0x55 and hopper580.protected_pcie_status == 0x55
    assert [f.type for f in hopper580] == [6, 14, 15, 16, 17, 18, 19, 3, 4, 12, 13, 11, 20, 21, 34, 36]
    gb100 = load(vectors, f"{SAD}/gpu/blackwellAttestationReport.txt").opaque_data
    assert (gb100.opaque_data_version, gb100.feature_flag, gb100.chip_info) == (0, None, None)
    ppcie = load(vectors, f"{SAD}/gpu/hopperAttestationReportInvalidSignature.txt").opaque_data
    assert ppcie.protected_pcie_status == 0xAA
    pdis = ppcie.switch_pdis
    assert pdis is not None and len(pdis) == 18 and all(len(p) == 8 for p in pdis)
    old = load(vectors, f"{LGV0}/samples/attestationReport.txt").opaque_data
    assert old.opaque_data_version is None and old.feature_flag is None and old.fwid is None
    switch = load(vectors, f"{NVAT_UT}/switchAttestationReport.txt").opaque_data
    assert switch.device_pdi == bytes.fromhex("203eb31ad9ed0008")
    assert switch.switch_position_id == bytes.fromhex("0200")
    assert switch.switch_lock_status == bytes.fromhex("0100")
    assert switch.driver_version is None and switch.switch_pdis is None


def test_measurement_lookup(vectors: Path) -> None:
    report = load(vectors, f"{NVAT_UT}/hopperAttestationReport.txt")
    first = report.measurement(1)
    assert first is report.measurements[0]
    assert report.measurement(64) is report.measurements[63]
    assert report.measurement(0) is None and report.measurement(65) is None
    assert not first.is_raw_bitstream


def test_trailing_byte_is_rejected_and_stripped_report_verifies(vectors: Path) -> None:
    raw = load_report((vectors / TRU / "hopper_coco_report1.txt").read_bytes())
    with pytest.raises(MalformedEvidence, match="trailing"):
        parse_attestation_report(raw)
    assert raw[-1] == 0
    report = parse_attestation_report(raw[:-1])
    assert report.opaque_data.driver_version == "580.95.05"
    assert report.opaque_data.vbios_version == "96.00.74.00.1A"
    assert report.nonce.hex().startswith("87d8e24a")
    assert signature_verifies(report, (vectors / TRU / "hopper_coco_certs1.txt").read_bytes())


@pytest.mark.parametrize("case", [CASES[0], CASES[8]], ids=["gpu", "switch"])
def test_every_truncation_is_malformed(vectors: Path, case: Case) -> None:
    raw = load_report((vectors / case.report).read_bytes())
    for length in range(len(raw)):
        with pytest.raises(MalformedEvidence):
            parse_attestation_report(raw[:length])


def test_load_report_binary_and_hex(vectors: Path) -> None:
    text = (vectors / NVAT_UT / "hopperAttestationReport.txt").read_bytes()
    raw = load_report(text)
    assert load_report(raw) == raw
    spaced = b"\n  ".join(text.strip()[i : i + 64] for i in range(0, len(text.strip()), 64)) + b"\r\n"
    assert load_report(spaced) == raw
    assert load_report(text.upper()) == raw
    for bad in (b"", b"   \n", text.strip()[:-1], b"hello world", b"\x00\x01\x02"):
        with pytest.raises(MalformedEvidence):
            load_report(bad)
