"""The library Verifier: authentication before collateral, per-step results, its own caches, anchors."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ccai.collateral import GpuCollateral
from ccai.errors import (
    ChainError,
    CollateralUnavailable,
    Error,
    NonceMismatch,
    SignatureError,
    SimulatedEvidenceRejected,
    UsageError,
)
from ccai.evidence import GpuEvidence, load_report, parse_attestation_report
from ccai.verify import GPU_STEPS, StepResult, TrustAnchors, Verifier, default_policy
from ccai.verify._gpu import STEP_CHAIN, STEP_REVOCATION, STEP_RIM_SELECT, STEP_SIGNATURE

REPO = Path(__file__).resolve().parents[2]
NVT0 = "nvtrust/NVIDIA_nvtrust@0ab869a/guest_tools/gpu_verifiers/local_gpu_verifier/src/verifier/samples"
NVT = "nvtrust/NVIDIA_nvtrust@0281730/guest_tools/gpu_verifiers/local_gpu_verifier/src/verifier/samples"
UT = "nvtrust/NVIDIA_attestation-sdk@73c032e/nv-attestation-sdk-cpp/unit-tests/testdata"
NONCE = bytes.fromhex("4cff7f5380ead8fad8ec2c531c110aca4302a88f603792801a8ca29ee151af2e")
PIN_2024 = datetime(2024, 6, 1, tzinfo=UTC)
DRIVER_545 = "NV_GPU_DRIVER_GH100_545.00"
VBIOS_5E01 = "NV_GPU_VBIOS_1010_0200_882_96005E0001"
SIGNATURE_SIZE = 96
REQUEST_SIZE = 37


@pytest.fixture
def h100(vectors: Path) -> GpuEvidence:
    return GpuEvidence(
        arch="HOPPER",
        nonce=NONCE,
        report=load_report((vectors / NVT0 / "attestationReport.txt").read_bytes()),
        certificate_chain=(vectors / NVT0 / "gpuAkCertChain.txt").read_bytes(),
    )


@pytest.fixture
def rims(vectors: Path) -> dict[str, bytes]:
    return {
        DRIVER_545: (vectors / NVT / "Driver_RIM_test_no_gpu.swidtag").read_bytes(),
        VBIOS_5E01: (vectors / NVT / "1010_0200_882_96005E0001_test_no_gpu.swidtag").read_bytes(),
    }


class RecordingSource:
    """A collateral source that serves given RIMs and records every request."""

    def __init__(self, rims: dict[str, bytes]) -> None:
        self.rims = rims
        self.rim_requests: list[str] = []
        self.ocsp_requests: list[tuple[str, str]] = []

    def rim(self, rim_id: str) -> bytes:
        self.rim_requests.append(rim_id)
        if rim_id not in self.rims:
            raise CollateralUnavailable(f"no RIM {rim_id}")
        return self.rims[rim_id]

    def ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, *, nonce: bytes | None) -> bytes:
        self.ocsp_requests.append((_cn(cert), _cn(issuer)))
        raise CollateralUnavailable("this source has no OCSP responder")


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value)


def _statuses(steps: tuple[StepResult, ...]) -> list[str]:
    return [s.status for s in steps]


def signed_region_offsets(raw: bytes) -> list[int]:
    """Every 7th byte of the signed region plus every structural boundary (request, response
    header, each measurement block's header and value, nonce, opaque length, each opaque TLV's
    type/length/value, the last signed byte), each boundary with its neighbours."""
    signed_end = len(raw) - SIGNATURE_SIZE
    boundaries = {0, 1, 2, 3, 4, 5, REQUEST_SIZE - 1}
    header = REQUEST_SIZE
    boundaries.update(range(header, header + 8))  # version, code, params, NumberOfBlocks, length
    record_start = header + 8
    record_end = record_start + int.from_bytes(raw[header + 5 : header + 8], "little")
    i = record_start
    while i < record_end:  # index, spec, size(2), DMTF type, DMTF size(2), value
        boundaries.update({i, i + 1, i + 2, i + 3, i + 4, i + 5, i + 7})
        i += 4 + int.from_bytes(raw[i + 2 : i + 4], "little")
    nonce = record_end
    boundaries.update({nonce, nonce + 31})
    opaque_len = nonce + 32
    boundaries.update({opaque_len, opaque_len + 1})
    i = opaque_len + 2
    while i < signed_end:  # type(2), size(2), value
        boundaries.update({i, i + 1, i + 2, i + 3, i + 4})
        i += 4 + int.from_bytes(raw[i + 2 : i + 4], "little")
    boundaries.update({signed_end - 2, signed_end - 1})
    near = {b + d for b in boundaries for d in (-1, 0, 1)}
    return sorted(o for o in near | set(range(0, signed_end, 7)) if 0 <= o < signed_end)


def flipped(item: GpuEvidence, offset: int) -> GpuEvidence:
    mutated = bytearray(item.report)
    mutated[offset] ^= 0x01
    return GpuEvidence(
        arch=item.arch, nonce=item.nonce, report=bytes(mutated), certificate_chain=item.certificate_chain
    )


# -- authentication comes first -------------------------------------------------------------------


def test_every_flipped_signed_byte_fails_at_the_signature_step_before_any_collateral(
    h100: GpuEvidence, rims: dict[str, bytes]
) -> None:
    offsets = signed_region_offsets(h100.report)
    signed_end = len(h100.report) - SIGNATURE_SIZE
    assert len(offsets) > signed_end // 7  # every region, not a handful of bytes
    source = RecordingSource(rims)
    verifier = Verifier(gpu_source=source, check_revocation=False, at=PIN_2024)
    for offset in offsets:
        with pytest.raises(SignatureError) as info:
            verifier.verify_gpu([flipped(h100, offset)], nonce=NONCE)
        assert info.value.step == STEP_SIGNATURE, offset
        assert _statuses(info.value.steps) == ["ok", "failed"] + ["not run"] * 10, offset
    # Unauthenticated reports never made the verifier ask for collateral.
    assert source.rim_requests == [] and source.ocsp_requests == []
    # The signature bytes themselves fail the same way.
    for offset in range(signed_end, len(h100.report), 5):
        with pytest.raises(SignatureError):
            verifier.verify_gpu([flipped(h100, offset)], nonce=NONCE)


def test_collateral_is_fetched_for_the_signed_rim_ids_only_after_authentication(
    h100: GpuEvidence, rims: dict[str, bytes]
) -> None:
    source = RecordingSource(rims)
    verifier = Verifier(
        gpu_source=source,
        check_revocation=False,
        at=PIN_2024,
        policy=default_policy(allow_unchecked_revocation=True),
    )
    verified = verifier.verify_gpu([h100], nonce=NONCE)
    assert sorted(source.rim_requests) == [DRIVER_545, VBIOS_5E01]
    assert _statuses(verified.steps) == ["ok"] * 12
    assert verified.steps[0] == StepResult(
        step=STEP_CHAIN, status="ok", detail="1 GPU(s): GH100 A01 GSP BROM → pinned root"
    )
    # An unbound report fails at the nonce step without a single request.
    source.rim_requests.clear()
    with pytest.raises(NonceMismatch) as info:
        verifier.verify_gpu([h100], nonce=bytes(32))
    assert source.rim_requests == [] and _statuses(info.value.steps)[:4] == ["ok", "ok", "ok", "failed"]


def test_missing_collateral_is_reported_after_the_evidence_only_steps(h100: GpuEvidence) -> None:
    with pytest.raises(CollateralUnavailable) as info:
        Verifier.offline(at=PIN_2024).verify_gpu([h100], nonce=NONCE)
    assert info.value.step == STEP_RIM_SELECT
    assert _statuses(info.value.steps) == ["ok", "ok", "ok", "ok", "not run", "failed"] + ["not run"] * 6


def test_ocsp_is_asked_for_the_built_path_in_path_order(h100: GpuEvidence, rims: dict[str, bytes]) -> None:
    certs = x509.load_pem_x509_certificates(h100.certificate_chain)
    # Intermediates reversed and the root left out: OCSP still pairs each certificate with its issuer.
    shuffled = _pem(certs[0], certs[3], certs[2], certs[1])
    item = GpuEvidence(arch="HOPPER", nonce=NONCE, report=h100.report, certificate_chain=shuffled)
    source = RecordingSource(rims)
    with pytest.raises(CollateralUnavailable) as info:
        Verifier(gpu_source=source, check_revocation=True, at=PIN_2024).verify_gpu([item], nonce=NONCE)
    assert info.value.step == STEP_REVOCATION
    names = [_cn(c) for c in certs]
    device_pairs = {p for p in source.ocsp_requests if p[0] in names}
    assert device_pairs == {(names[1], names[2]), (names[2], names[3]), (names[3], names[4])}


# -- chain shape (docs/gpu-verification.md, "Chain shape") ---------------------------------------


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(Encoding.PEM) for c in certs)


def _with_chain(item: GpuEvidence, chain: bytes) -> GpuEvidence:
    return GpuEvidence(arch=item.arch, nonce=item.nonce, report=item.report, certificate_chain=chain)


@pytest.mark.parametrize(
    "order",
    [
        pytest.param((0, 1, 2, 3), id="4 certificates, root left out"),
        pytest.param((0, 3, 1, 2, 4), id="intermediates out of order"),
        pytest.param((0, 3, 2, 1), id="out of order and root left out"),
        pytest.param((0, 4, 3, 2, 1), id="root first after the leaf (SPDM order reversed)"),
    ],
)
def test_reshaped_real_chains_that_reach_the_pinned_root_are_accepted(
    h100: GpuEvidence, rims: dict[str, bytes], order: tuple[int, ...]
) -> None:
    certs = x509.load_pem_x509_certificates(h100.certificate_chain)
    item = _with_chain(h100, _pem(*(certs[i] for i in order)))
    verifier = Verifier.offline(driver_rim=rims[DRIVER_545], vbios_rim=rims[VBIOS_5E01], at=PIN_2024)
    verified = verifier.verify_gpu([item], nonce=NONCE)
    assert verified.gpus[0].claims["hwmodel"] == "GH100 A01 GSP BROM"
    (authenticated,) = verifier.authenticate_gpu([item], nonce=NONCE)
    assert authenticated.chain.certificates == tuple(certs)  # normalised: leaf … pinned root


@pytest.mark.parametrize(
    ("order", "why"),
    [
        pytest.param((1, 0, 2, 3, 4), "not first", id="leaf not first"),
        pytest.param((0, 1, 2, 4), "does not lead", id="Identity missing"),
        pytest.param((0, 2, 3, 4), "does not lead", id="BROM missing"),
    ],
)
def test_reshaped_chains_that_do_not_make_nvidias_path_are_refused(
    h100: GpuEvidence, order: tuple[int, ...], why: str
) -> None:
    certs = x509.load_pem_x509_certificates(h100.certificate_chain)
    item = _with_chain(h100, _pem(*(certs[i] for i in order)))
    with pytest.raises(ChainError) as info:
        Verifier.offline(at=PIN_2024).verify_gpu([item], nonce=NONCE)
    assert info.value.step == STEP_CHAIN
    del why


def test_a_stray_certificate_in_the_chain_is_refused(vectors: Path, h100: GpuEvidence) -> None:
    switch = x509.load_pem_x509_certificates((vectors / UT / "switchCertChain.txt").read_bytes())
    certs = x509.load_pem_x509_certificates(h100.certificate_chain)
    item = _with_chain(h100, _pem(*certs[:4], switch[2], certs[4]))
    with pytest.raises(ChainError, match="not on the path") as info:
        Verifier.offline(at=PIN_2024).verify_gpu([item], nonce=NONCE)
    assert info.value.index == 4


# -- anchors, simulation, caches, layering ------------------------------------------------------


def test_vendor_anchors_hold_every_pinned_root() -> None:
    anchors = TrustAnchors.vendor()
    assert not anchors.simulated and anchors.gpu is not None and anchors.intel_sgx_root is not None
    assert {p.value for p in anchors.amd} == {"Milan", "Genoa", "Turin"}
    assert TrustAnchors.vendor() is anchors


def test_test_pki_anchors_from_pem_or_der_are_marked_simulated() -> None:
    from ccai.virtual import VirtualGpuBackend

    roots = VirtualGpuBackend.create().trust_anchors()
    der = x509.load_pem_x509_certificate(roots.device_root_pem).public_bytes(Encoding.DER)
    anchors = TrustAnchors.simulated_test_pki(gpu_device_root=der, gpu_rim_root=roots.rim_root_pem)
    assert anchors.simulated and anchors.gpu is not None and anchors.gpu.simulated
    with pytest.raises(UsageError):
        TrustAnchors.simulated_test_pki(gpu_device_root=der)
    with pytest.raises(UsageError):
        Verifier(allow_simulated=True)  # simulation needs the test PKI, by name


def test_virtual_gpu_evidence_needs_simulation_asked_for_by_name(ccai_home: Path) -> None:
    from ccai.attest import collect_gpu_evidence
    from ccai.virtual import VirtualGpuBackend, virtual_trust_anchors

    backend = VirtualGpuBackend.create(gpus=2)
    items = collect_gpu_evidence(backend, NONCE)

    class VirtualRims:
        def rim(self, rim_id: str) -> bytes:
            return backend.rim(rim_id)

        def ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, *, nonce: bytes | None) -> bytes:
            raise CollateralUnavailable("no responder")

    test_pki = virtual_trust_anchors(ccai_home)
    verified = Verifier.simulated(test_pki, gpu_source=VirtualRims()).verify_gpu(
        items, nonce=NONCE, reported_cc_mode="on"
    )
    assert verified.simulated and verified.gpus[1].claims["x-ccai-simulated"] is True
    for verifier in (
        Verifier(gpu_source=VirtualRims()),
        Verifier(anchors=test_pki, gpu_source=VirtualRims()),
    ):
        with pytest.raises(SimulatedEvidenceRejected) as info:
            verifier.verify_gpu(items, nonce=NONCE)
        assert _statuses(info.value.steps)[0] == "failed"


def test_caches_belong_to_one_verifier(h100: GpuEvidence, rims: dict[str, bytes]) -> None:
    collateral = GpuCollateral(rims=rims, ocsp_checked=False)
    policy = default_policy(allow_unchecked_revocation=True)
    a, b = Verifier(policy=policy, at=PIN_2024), Verifier(policy=policy, at=PIN_2024)
    a.verify_gpu([h100], nonce=NONCE, collateral=collateral)
    assert len(a.caches.device_chains) == 1 and len(a.caches.rims) == 2
    assert len(b.caches.device_chains) == 0 and len(b.caches.rims) == 0
    a.caches.clear()
    assert len(a.caches.device_chains) == 0 and len(a.caches.rims) == 0


def test_no_verifier_module_keeps_a_cache_at_module_level() -> None:
    import importlib
    import pkgutil

    import ccai.verify
    from ccai.verify._lru import LruCache

    for module in pkgutil.iter_modules(ccai.verify.__path__, "ccai.verify."):
        loaded = importlib.import_module(module.name)
        assert not [n for n, v in vars(loaded).items() if isinstance(v, LruCache)], module.name


def test_importing_verify_pulls_in_no_collection_or_virtual_hardware() -> None:
    code = (
        "import sys, ccai.verify\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[:2] in "
        "(['ccai','tee'], ['ccai','attest'], ['ccai','device'], ['ccai','virtual'], ['ccai','cli']))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": str(REPO / "src")})


def _python_files_outside_cli() -> Iterator[Path]:
    for path in sorted((REPO / "src" / "ccai").rglob("*.py")):
        if "cli" not in path.relative_to(REPO / "src" / "ccai").parts[:1]:
            yield path


def test_nothing_outside_the_cli_imports_it() -> None:
    offenders = [
        str(p.relative_to(REPO))
        for p in _python_files_outside_cli()
        if re.search(r"(from|import) ccai\.cli\b", p.read_text())
    ]
    assert offenders == []


def test_errors_from_the_verifier_carry_steps_and_a_root_error(h100: GpuEvidence) -> None:
    with pytest.raises(Error) as info:
        Verifier.offline(at=PIN_2024).verify_gpu([flipped(h100, 100)], nonce=NONCE)
    assert [s.step for s in info.value.steps] == list(GPU_STEPS)
    assert parse_attestation_report(h100.report).nonce == NONCE
