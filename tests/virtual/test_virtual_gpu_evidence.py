"""Virtual GPU evidence: chains, reports, RIMs and faults, checked with the same tools as real evidence."""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
from signxml.exceptions import InvalidSignature as XmlInvalidSignature
from signxml.verifier import XMLVerifier

from ccai.device import Architecture, CcMode, MultiGpuMode
from ccai.errors import CollateralUnavailable, MalformedEvidence
from ccai.evidence import (
    AttestationReport,
    driver_rim_id,
    load_report,
    parse_attestation_report,
    parse_rim,
    vbios_rim_id,
)
from ccai.virtual import VirtualFault, VirtualGpuBackend

NOW = datetime(2026, 6, 1, tzinfo=UTC)
NONCE = bytes.fromhex("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")
FWID_OIDS = {
    Architecture.HOPPER: x509.ObjectIdentifier("2.23.133.5.4.1"),
    Architecture.BLACKWELL: x509.ObjectIdentifier("2.23.133.5.4.1.1"),
}
FLAVOURS = [
    (Architecture.HOPPER, "GH100"),
    (Architecture.BLACKWELL, "GB100"),
    (Architecture.BLACKWELL, "GB202"),
]
TESTDATA = "NVIDIA_attestation-sdk@73c032e/nv-attestation-sdk-cpp/unit-tests/testdata"
REAL_REPORTS = {
    "GH100": f"nvtrust/{TESTDATA}/hopperAttestationReport.txt",
    "GB100": f"nvtrust/{TESTDATA}/sample_attestation_data/gpu/blackwellAttestationReport.txt",
    "GB202": "nvtrust/confidential-containers_trustee@b28d3fe/deps/verifier/test_data/nvidia/"
    "blackwellAttestationReport.txt",
}


def _chain(backend: VirtualGpuBackend, index: int = 0) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(backend.certificate_chain(index))


def _verify_chain(chain: list[x509.Certificate], root_pem: bytes, now: datetime = NOW) -> None:
    root = x509.load_pem_x509_certificate(root_pem)
    verifier = PolicyBuilder().store(Store([root])).time(now).max_chain_depth(8).build_client_verifier()
    verifier.verify(chain[0], chain[1:-1])


def _verify_report(report: AttestationReport, leaf: x509.Certificate) -> None:
    key = leaf.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    r = int.from_bytes(report.signature[:48], "big")
    s = int.from_bytes(report.signature[48:], "big")
    key.verify(encode_dss_signature(r, s), report.signed_bytes, ec.ECDSA(hashes.SHA384()))


def _fwid_from_leaf(leaf: x509.Certificate, arch: Architecture) -> bytes:
    ext = leaf.extensions.get_extension_for_oid(FWID_OIDS[arch]).value
    assert isinstance(ext, x509.UnrecognizedExtension)
    if arch is Architecture.HOPPER:
        return ext.value[-48:]  # NVIDIA's tools take the last 48 bytes (gpu-evidence.md §6.2)
    # Blackwell: [6] fwids → first entry's OCTET STRING (after the sha384 OID).
    marker = bytes.fromhex("0609608648016503040202") + b"\x04\x30"
    start = ext.value.index(marker) + len(marker)
    return ext.value[start : start + 48]


@pytest.fixture(params=FLAVOURS, ids=[chip for _, chip in FLAVOURS])
def backend(request: pytest.FixtureRequest) -> VirtualGpuBackend:
    arch, chip = request.param
    return VirtualGpuBackend.create(gpus=2, architecture=arch, chip=chip)


# -- certificate chain ---------------------------------------------------------------------------


def test_chain_builds_to_the_test_root(backend: VirtualGpuBackend) -> None:
    chain = _chain(backend, 1)
    assert len(chain) == 5
    anchors = backend.trust_anchors()
    assert chain[-1] == x509.load_pem_x509_certificate(anchors.device_root_pem)
    _verify_chain(chain, anchors.device_root_pem)
    for cert in chain:
        assert cert.signature_hash_algorithm is not None
        assert cert.signature_hash_algorithm.name == "sha384"
        key = cert.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        assert key.curve.name == "secp384r1"
    assert "ccai TEST" in chain[-1].subject.rfc4514_string()
    cn = chain[0].subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert cn == f"{backend.model.cert_chip} A01 GSP FMC LF"


def test_chain_is_not_nvidia_trusted(backend: VirtualGpuBackend, vectors: Path) -> None:
    nvidia_root = (
        vectors
        / "nvtrust/NVIDIA_nvtrust@0281730/guest_tools/gpu_verifiers/local_gpu_verifier/src/verifier/certs"
        / "verifier_device_root.pem"
    ).read_bytes()
    with pytest.raises(VerificationError):
        _verify_chain(_chain(backend), nvidia_root)


def test_leaf_fwid_matches_the_report(backend: VirtualGpuBackend) -> None:
    leaf = _chain(backend)[0]
    report = parse_attestation_report(backend.attestation_report(0, NONCE))
    assert report.opaque_data.fwid is not None
    assert _fwid_from_leaf(leaf, backend.model.architecture) == report.opaque_data.fwid


def test_hopper_fwid_extension_carries_the_brom_key() -> None:
    backend = VirtualGpuBackend.create()
    leaf, brom = _chain(backend)[:2]
    ext = leaf.extensions.get_extension_for_oid(FWID_OIDS[Architecture.HOPPER]).value
    assert isinstance(ext, x509.UnrecognizedExtension)
    spki = brom.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert spki in ext.value


def test_ocsp_material_is_reachable(backend: VirtualGpuBackend) -> None:
    chain = _chain(backend)
    pki = backend.pki
    for child, parent in itertools.pairwise(chain):
        cred = pki.issuer_of(child)
        assert cred is not None
        assert cred.certificate == parent
        assert cred.private_key.public_key() == parent.public_key()
    assert pki.issuer_of(x509.load_pem_x509_certificate(backend.trust_anchors().rim_root_pem)) is not None
    assert backend.revoked_serials() == frozenset()


# -- attestation report --------------------------------------------------------------------------


def test_report_parses_and_verifies(backend: VirtualGpuBackend) -> None:
    raw = backend.attestation_report(1, NONCE)
    report = parse_attestation_report(raw)
    assert report.nonce == NONCE
    assert len(report.signature) == 96
    assert report.signed_bytes + report.signature == raw
    _verify_report(report, _chain(backend, 1)[0])
    opaque = report.opaque_data
    status = backend.status()
    assert opaque.driver_version == status.driver_version
    assert opaque.vbios_version == status.gpus[1].vbios_version
    assert opaque.project == backend.model.project
    assert opaque.chip_sku == backend.model.chip_sku
    assert opaque.nvdec0_status == backend.model.nvdec0_status
    assert opaque.opaque_data_version == 1
    assert opaque.feature_flag == 1  # two GPUs: multi-GPU passthrough
    assert opaque.chip_info == backend.model.chip_info
    assert [b.index for b in report.measurements] == list(range(1, 65))
    assert [b.value for b in report.measurements] == list(backend.measurements(1))
    assert all(len(b.value) == 48 for b in report.measurements)


def test_report_is_not_signed_by_another_gpu(backend: VirtualGpuBackend) -> None:
    report = parse_attestation_report(backend.attestation_report(0, NONCE))
    with pytest.raises(InvalidSignature):
        _verify_report(report, _chain(backend, 1)[0])


def test_rim_ids_match_the_evidence_derivation(backend: VirtualGpuBackend) -> None:
    report = parse_attestation_report(backend.attestation_report(0, NONCE))
    assert backend.rim_ids(0) == (driver_rim_id(report), vbios_rim_id(report))


def test_single_gpu_and_ppcie_feature_flags() -> None:
    single = VirtualGpuBackend.create(gpus=1)
    assert parse_attestation_report(single.attestation_report(0, NONCE)).opaque_data.feature_flag == 0
    ppcie = VirtualGpuBackend.create(gpus=8, multi_gpu_mode=MultiGpuMode.PROTECTED_PCIE)
    opaque = parse_attestation_report(ppcie.attestation_report(7, NONCE)).opaque_data
    assert opaque.feature_flag == 2
    assert opaque.protected_pcie_status == 0xAA
    assert opaque.switch_pdis is not None
    assert len(opaque.switch_pdis) == 18


@pytest.mark.parametrize("chip", sorted(REAL_REPORTS))
def test_virtual_report_takes_the_real_parser_path(chip: str, vectors: Path) -> None:
    """Same structure as a real report of the same chip: request, block framing, TLV types and order
    (real 575.32 GB100 predates opaque version 1, so CHIP_INFO/FEATURE_FLAG are the only additions)."""
    real = parse_attestation_report(load_report((vectors / REAL_REPORTS[chip]).read_bytes()))
    arch = Architecture.HOPPER if chip == "GH100" else Architecture.BLACKWELL
    virtual = parse_attestation_report(
        VirtualGpuBackend.create(architecture=arch, chip=chip).attestation_report(0, real.nonce)
    )
    for attr in ("spdm_version", "request_response_code", "param1", "param2", "slot_id"):
        if hasattr(real.request, attr):
            assert getattr(virtual.request, attr) == getattr(real.request, attr), attr
    assert virtual.raw[:4] == real.raw[:4]
    assert virtual.raw[36] == real.raw[36]
    assert virtual.raw[37:45] == real.raw[37:45]  # response header incl. 64 blocks, record length 3520
    assert [
        (b.index, b.measurement_specification, b.value_type, len(b.value)) for b in virtual.measurements
    ] == [(b.index, b.measurement_specification, b.value_type, len(b.value)) for b in real.measurements]
    real_types = [(f.type, len(f.value)) for f in real.opaque_data if f.type != 3]  # driver length varies
    virtual_types = [(f.type, len(f.value)) for f in virtual.opaque_data if f.type != 3]
    if chip == "GB100":
        real_types = [t for t in real_types if t[0] != 34]
        virtual_types = [t for t in virtual_types if t[0] not in (34, 35, 36)]
    assert virtual_types == real_types
    assert virtual.opaque_data.gpu_info == real.opaque_data.gpu_info
    assert virtual.opaque_data.project == real.opaque_data.project


# -- RIMs ---------------------------------------------------------------------------------------


def test_rims_verify_with_signxml_and_match_the_report(backend: VirtualGpuBackend) -> None:
    report = parse_attestation_report(backend.attestation_report(0, NONCE))
    runtime = {b.index - 1: b.value for b in report.measurements}
    status = backend.status()
    seen: dict[int, str] = {}
    for rim_id, version in zip(
        backend.rim_ids(0), (status.driver_version, status.gpus[0].vbios_version), strict=True
    ):
        xml = backend.rim(rim_id)
        rim = parse_rim(xml)
        signer = rim.certificates[0]
        XMLVerifier().verify(xml, x509_cert=signer.public_bytes(serialization.Encoding.PEM).decode())
        assert len(rim.certificates) == 4
        assert rim.colloquial_version == version
        assert rim.product == backend.model.chip
        for parent, child in zip(rim.certificates[1:], rim.certificates, strict=False):
            child.verify_directly_issued_by(parent)
            assert child.not_valid_before_utc <= NOW <= child.not_valid_after_utc
        assert rim.certificates[-1] == x509.load_pem_x509_certificate(backend.trust_anchors().rim_root_pem)
        for m in rim.active_measurements:
            assert m.index not in seen, "an index may be active in only one RIM"
            seen[m.index] = rim_id
            if m.index == 35 and report.opaque_data.nvdec0_status == 0x55:
                assert runtime[35] not in m.hashes  # NVDEC0 disabled: verifiers must skip index 35
                continue
            assert runtime[m.index] in m.hashes, m.index
            assert m.size == 48
    # Every non-zero runtime block is covered by exactly one RIM.
    assert {i for i, v in runtime.items() if any(v)} <= set(seen)


def test_tampered_rim_fails_signxml() -> None:
    backend = VirtualGpuBackend.create()
    xml = backend.rim(backend.rim_ids(0)[0])
    signer = parse_rim(xml).certificates[0]
    tampered = xml.replace(b'colloquialVersion="570.124.06"', b'colloquialVersion="570.124.07"')
    assert tampered != xml
    with pytest.raises(XmlInvalidSignature):
        XMLVerifier().verify(tampered, x509_cert=signer.public_bytes(serialization.Encoding.PEM).decode())


def test_unknown_rim_id_is_collateral_unavailable() -> None:
    with pytest.raises(CollateralUnavailable):
        VirtualGpuBackend.create().rim("NV_GPU_DRIVER_GH100_1.2.3")


# -- devtools and faults ------------------------------------------------------------------------


def _mismatches(backend: VirtualGpuBackend, index: int = 0) -> set[int]:
    """Golden indices whose runtime value no RIM alternative matches (NVDEC0 rule applied)."""
    report = parse_attestation_report(backend.attestation_report(index, NONCE))
    bad = set()
    for rim_id in backend.rim_ids(index):
        for m in parse_rim(backend.rim(rim_id)).active_measurements:
            if m.index == 35 and report.opaque_data.nvdec0_status == 0x55:
                continue
            if report.measurements[m.index].value not in m.hashes:
                bad.add(m.index)
    return bad


def test_devtools_changes_the_expected_indices(backend: VirtualGpuBackend) -> None:
    assert _mismatches(backend) == set()
    backend.set_cc_mode(CcMode.DEVTOOLS)
    assert _mismatches(backend) == set(backend.model.devtools_indices)
    assert backend.status().devtools is True
    backend.set_cc_mode(CcMode.ON)
    assert _mismatches(backend) == set()


def test_fault_wrong_nonce() -> None:
    backend = VirtualGpuBackend.create()
    backend.inject_fault(VirtualFault.WRONG_NONCE)
    report = parse_attestation_report(VirtualGpuBackend.open().attestation_report(0, NONCE))
    assert report.nonce != NONCE
    _verify_report(report, _chain(backend)[0])  # still genuinely signed: only the binding is wrong


def test_fault_corrupt_signature() -> None:
    backend = VirtualGpuBackend.create()
    backend.inject_fault(VirtualFault.CORRUPT_SIGNATURE)
    report = parse_attestation_report(backend.attestation_report(0, NONCE))
    assert report.nonce == NONCE
    with pytest.raises(InvalidSignature):
        _verify_report(report, _chain(backend)[0])


def test_fault_expired_certificate() -> None:
    backend = VirtualGpuBackend.create()
    backend.inject_fault(VirtualFault.EXPIRED_CERTIFICATE)
    chain = _chain(backend)
    assert chain[0].not_valid_after_utc < datetime.now(UTC)
    with pytest.raises(VerificationError, match=r"(?i)expired|validity|not valid"):
        _verify_chain(chain, backend.trust_anchors().device_root_pem, datetime.now(UTC))
    # The report is signed by the expired leaf's key, so only the validity check fails.
    _verify_report(parse_attestation_report(backend.attestation_report(0, NONCE)), chain[0])
    backend.inject_fault(None)
    _verify_chain(_chain(backend), backend.trust_anchors().device_root_pem, datetime.now(UTC))


def test_fault_revoked_certificate() -> None:
    backend = VirtualGpuBackend.create(gpus=2)
    backend.inject_fault(VirtualFault.REVOKED_CERTIFICATE)
    reopened = VirtualGpuBackend.open()
    chains = [_chain(reopened, i) for i in range(2)]
    assert reopened.revoked_serials() == {c[1].serial_number for c in chains}
    record = reopened.pki.revocation(chains[0][1])
    assert record is not None
    assert record.issuer == chains[0][2].subject
    assert reopened.pki.revocation(chains[0][2]) is None
    _verify_chain(chains[0], reopened.trust_anchors().device_root_pem)  # path validation alone passes


def test_fault_measurement_drift(backend: VirtualGpuBackend) -> None:
    backend.inject_fault(VirtualFault.MEASUREMENT_DRIFT)
    assert _mismatches(backend) == {backend.model.drift_index}
    _verify_report(parse_attestation_report(backend.attestation_report(0, NONCE)), _chain(backend)[0])


# -- determinism --------------------------------------------------------------------------------


def _fingerprint(backend: VirtualGpuBackend) -> list[object]:
    chain = _chain(backend)
    return [
        [
            (c.subject, c.serial_number, c.public_key(), c.not_valid_before_utc, c.not_valid_after_utc)
            for c in chain
        ],
        backend.measurements(0),
        backend.rim_ids(0),
        hashlib.sha256(backend.trust_anchors().rim_root_pem).hexdigest(),
    ]


def test_same_seed_same_pki_and_measurements(tmp_path: Path) -> None:
    a = VirtualGpuBackend.create(home=tmp_path / "a", seed="alpha")
    b = VirtualGpuBackend.create(home=tmp_path / "b", seed=b"alpha")
    c = VirtualGpuBackend.create(home=tmp_path / "c", seed="beta")
    assert _fingerprint(a) == _fingerprint(b)
    assert a.certificate_chain(0) == b.certificate_chain(0)  # deterministic ECDSA: byte-identical
    assert _fingerprint(a)[0] != _fingerprint(c)[0]
    assert a.measurements(0) == c.measurements(0)  # golden values depend on chip and versions only


def test_versions_change_the_golden_values() -> None:
    a = VirtualGpuBackend.create(driver_version="570.124.06")
    before = a.golden_measurements()
    b = VirtualGpuBackend.create(driver_version="575.57.08")
    after = b.golden_measurements()
    changed = {g.index for g, h in zip(before, after, strict=True) if g.alternatives != h.alternatives}
    assert changed == set(a.model.driver_indices)


def test_cache_is_reused_and_damage_tolerated(ccai_home: Path) -> None:
    first = VirtualGpuBackend.create(gpus=2)
    chain = first.certificate_chain(1)
    caches = list(ccai_home.glob("virtual-pki-*.json"))
    assert len(caches) == 1
    assert VirtualGpuBackend.open().certificate_chain(1) == chain
    caches[0].write_text("garbage")
    assert VirtualGpuBackend.open().certificate_chain(1) == chain


@pytest.mark.parametrize(
    "offset",
    [
        4,  # request nonce
        36,  # request SlotIDParam
        41,  # response NumberOfBlocks
        45 + 7,  # first measurement value
        45 + 55 * 63 + 3,  # last block's MeasurementSize
        3565,  # responder nonce
        3597,  # OpaqueLength
        3599 + 4,  # first opaque value (VBIOS_VERSION)
        -97,  # last opaque byte (FEATURE_FLAG)
    ],
)
def test_every_signed_region_is_covered(offset: int) -> None:
    backend = VirtualGpuBackend.create()
    raw = bytearray(backend.attestation_report(0, NONCE))
    leaf = _chain(backend)[0]
    _verify_report(parse_attestation_report(bytes(raw)), leaf)
    raw[offset] ^= 0x01
    try:
        report = parse_attestation_report(bytes(raw))
    except MalformedEvidence:
        return  # a flipped length or count breaks the framing instead, which is also a rejection
    with pytest.raises(InvalidSignature):
        _verify_report(report, leaf)


def test_cache_holds_no_per_boot_leaves(ccai_home: Path) -> None:
    backend = VirtualGpuBackend.create()
    backend.certificate_chain(0)
    cache = next(ccai_home.glob("virtual-pki-*.json"))
    before = cache.read_bytes()
    for _ in range(3):
        backend.set_cc_mode(CcMode.ON)  # each switch is a new boot with a new leaf
        VirtualGpuBackend.open().certificate_chain(0)
    assert cache.read_bytes() == before
    assert b"leaf:" not in before
