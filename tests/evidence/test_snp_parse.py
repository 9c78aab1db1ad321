"""SEV-SNP report and VCEK/VLEK extension parsing on the real vectors (tests/vectors/cpu/snp)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccai.collateral import load_certificates
from ccai.errors import EvidenceError, MalformedEvidence, UnsupportedEvidence
from ccai.evidence import (
    SnpGuestPolicy,
    SnpProduct,
    SnpSigningKey,
    SnpTcbVersion,
    parse_snp_report,
    parse_vcek_extensions,
)


def _report(vectors: Path, rel: str) -> bytes:
    raw = (vectors / "cpu" / rel).read_bytes()
    if rel.endswith(".hex"):
        raw = bytes.fromhex(raw.decode().strip())
    if "hcl-report" in rel:
        raw = raw[32 : 32 + 1184]  # Azure HCL report: SNP report at offset 32
    return raw


# (report, version, policy, signing key, VMPL, product from CPUID, reported TCB bl/tee/snp/ucode)
CASES = [
    ("snp/go-sev-guest/attestation.bin", 2, 0xB0000, SnpSigningKey.VCEK, 0, None, (2, 0, 5, 68)),
    ("snp/virtee-sev/report_milan.hex", 2, 0x30000, SnpSigningKey.VCEK, 0, None, (3, 0, 8, 115)),
    ("snp/trustee/test-report.bin", 2, 0x3001F, SnpSigningKey.VCEK, 0, None, (3, 0, 8, 115)),
    (
        "snp/trustee/test-vlek-report.bin",
        3,
        0x30000,
        SnpSigningKey.VLEK,
        1,
        SnpProduct.MILAN,
        (4, 0, 24, 217),
    ),
    ("snp/trustee/az-snp-vtpm-milan/hcl-report.bin", 2, 0x3001F, SnpSigningKey.VCEK, 0, None, (3, 0, 8, 115)),
    (
        "snp/trustee/az-snp-vtpm-genoa/hcl-report.bin",
        3,
        0x3001F,
        SnpSigningKey.VCEK,
        0,
        SnpProduct.GENOA,
        (10, 0, 23, 84),
    ),
    (
        "snp/dstack/snp_report_extracted.bin",
        3,
        0x30000,
        SnpSigningKey.VCEK,
        0,
        SnpProduct.MILAN,
        (4, 0, 23, 213),
    ),
    ("snp/teekit/sev-gcp.bin", 5, 0x30000, SnpSigningKey.VCEK, 0, SnpProduct.MILAN, (4, 0, 27, 222)),
    (
        "snp/teekit/sev-gcp-reportdata.bin",
        5,
        0x30000,
        SnpSigningKey.VCEK,
        1,
        SnpProduct.MILAN,
        (4, 0, 27, 222),
    ),
    (
        "snp/teekit/sev-gcp-x25519-bound.bin",
        5,
        0x30000,
        SnpSigningKey.VCEK,
        1,
        SnpProduct.MILAN,
        (4, 0, 27, 222),
    ),
]


@pytest.mark.parametrize(("rel", "version", "policy", "key", "vmpl", "product", "tcb"), CASES)
def test_real_reports_parse(
    vectors: Path,
    rel: str,
    version: int,
    policy: int,
    key: SnpSigningKey,
    vmpl: int,
    product: SnpProduct | None,
    tcb: tuple[int, int, int, int],
) -> None:
    raw = _report(vectors, rel)
    report = parse_snp_report(raw)
    assert report.version == version
    assert report.policy == policy
    assert report.signing_key == key
    assert report.vmpl == vmpl
    assert report.product is product
    reported = report.tcb("reported", product or SnpProduct.MILAN)
    assert (reported.boot_loader, reported.tee, reported.snp, reported.microcode) == tcb
    assert report.signed_bytes == raw[:0x2A0]
    assert report.signature_r == int.from_bytes(raw[0x2A0:0x2E8], "little")
    assert (report.launch_mit_vector is not None) == (version >= 5)
    assert (report.cpuid_fam_id is not None) == (version >= 3)


def test_policy_bits(vectors: Path) -> None:
    report = parse_snp_report(_report(vectors, "snp/go-sev-guest/attestation.bin"))
    assert report.debug
    assert report.policy_flags & SnpGuestPolicy.SMT
    assert report.policy_abi_major == 0
    assert report.report_data.startswith(bytes.fromhex("0102030405"))
    genoa = parse_snp_report(_report(vectors, "snp/trustee/az-snp-vtpm-genoa/hcl-report.bin"))
    assert (genoa.cpuid_fam_id, genoa.cpuid_mod_id, genoa.cpuid_step) == (0x19, 0x11, 1)
    assert not genoa.debug
    assert genoa.policy_abi_minor == 0x1F


def test_turin_tcb_layout() -> None:
    raw = bytes([7, 3, 1, 4, 0, 0, 0, 9])
    turin = SnpTcbVersion.decode(raw, SnpProduct.TURIN)
    assert (turin.fmc, turin.boot_loader, turin.tee, turin.snp, turin.microcode) == (7, 3, 1, 4, 9)
    assert turin.as_dict()["fmcSPL"] == 7
    milan = SnpTcbVersion.decode(raw, SnpProduct.MILAN)
    assert (milan.boot_loader, milan.tee, milan.snp, milan.microcode, milan.fmc) == (7, 3, 0, 9, None)


def test_vcek_extensions_turin(vectors: Path) -> None:
    (cert,) = load_certificates((vectors / "cpu/snp/virtee-sev/vcek_turin.der").read_bytes())
    ext = parse_vcek_extensions(cert)
    assert ext.product is SnpProduct.TURIN
    assert ext.struct_version == 1
    assert ext.fmc_spl == 0
    assert ext.ucode_spl == 9
    assert ext.hw_id == bytes.fromhex("1e550a8ee5cf9f4d")


def test_vlek_extensions(vectors: Path) -> None:
    (cert,) = load_certificates((vectors / "cpu/snp/trustee/test-vlek.der").read_bytes())
    ext = parse_vcek_extensions(cert)
    assert ext.csp_id == "CN=cc-us-east-2.amazonaws.com"
    assert ext.hw_id is None
    assert ext.product is SnpProduct.MILAN


@pytest.mark.parametrize(
    ("offset", "value", "error", "match"),
    [
        (0x08, b"\x00\x00\x00", MalformedEvidence, "bit 17"),
        (0x0F, b"\x80", MalformedEvidence, "63:26"),
        (0x4C, b"\x01", MalformedEvidence, "reserved"),
        (0x48, b"\x20", MalformedEvidence, "signer info"),
        (0x188, b"\x19", MalformedEvidence, "v2 report"),
        (0x34, b"\x02", UnsupportedEvidence, "SIGNATURE_ALGO"),
        (0x00, b"\x01", UnsupportedEvidence, "version"),
        (0x400, b"\x01", MalformedEvidence, "padding"),
    ],
)
def test_mbz_and_unsupported(
    vectors: Path, offset: int, value: bytes, error: type[Exception], match: str
) -> None:
    raw = bytearray(_report(vectors, "snp/trustee/test-report.bin"))
    raw[offset : offset + len(value)] = value
    with pytest.raises(error, match=match):
        parse_snp_report(bytes(raw))


@pytest.mark.parametrize("size", [0, 1183, 1185, 2600])
def test_wrong_size(size: int) -> None:
    with pytest.raises(MalformedEvidence, match="1184"):
        parse_snp_report(bytes(size))


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1184, max_size=1184))
def test_random_bytes_raise_only_evidence_error(data: bytes) -> None:
    with contextlib.suppress(EvidenceError):
        parse_snp_report(data)
