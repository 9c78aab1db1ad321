"""The dev collateral server for the virtual CC GPU, on loopback: RIM service, OCSP, gather, revocation."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from ccai._time import utcnow
from ccai.collateral import (
    CollateralCache,
    default_gpu_source,
    gather_gpu_collateral,
    ocsp_key,
    ocsp_targets,
)
from ccai.device._virtual import VirtualFault, VirtualGpuBackend
from ccai.errors import CertificateRevoked, CollateralUnavailable
from ccai.evidence import GpuEvidence, parse_rim
from ccai.verify._ocsp_check import OcspCertStatus, check_chain_ocsp, check_ocsp

pytest.importorskip(
    "fastapi", reason="needs the dev collateral server, the [service] extra: pip install 'ccai[service]'"
)
from ccai.service._dev_collateral import (
    create_dev_collateral_app,
    run_in_background,
    settings_for_virtual_gpu,
)


def _evidence(backend: VirtualGpuBackend, index: int = 0) -> GpuEvidence:
    nonce = secrets.token_bytes(32)
    return GpuEvidence(
        arch="HOPPER",
        nonce=nonce,
        report=backend.attestation_report(index, nonce),
        certificate_chain=backend.certificate_chain(index),
    )


@pytest.fixture
def backend() -> VirtualGpuBackend:
    return VirtualGpuBackend.create(gpus=2)


@pytest.fixture
def server(backend: VirtualGpuBackend) -> Iterator[str]:
    with run_in_background(create_dev_collateral_app(settings_for_virtual_gpu(backend))) as url:
        yield url


def test_rim_service_shape(backend: VirtualGpuBackend, server: str) -> None:
    driver_id, vbios_id = backend.rim_ids(0)
    body = httpx.get(f"{server}/v1/rim/{driver_id}").json()
    assert set(body) == {"id", "rim", "sha256", "last_updated", "rim_format", "request_id"}
    assert body["id"] == driver_id and body["rim_format"] == "TCG"
    missing = httpx.get(f"{server}/v1/rim/NV_GPU_DRIVER_GH100_1.0")
    assert missing.status_code == 404 and missing.json() == {"message": "RIM_NOT_FOUND"}
    assert httpx.get(f"{server}/v1/rim/ids").json()["ids"] == sorted([driver_id, vbios_id])


def test_gather_online_then_all_good(backend: VirtualGpuBackend, server: str) -> None:
    items = [_evidence(backend, 0), _evidence(backend, 1)]
    source = default_gpu_source(rim_service_url=server, ocsp_url=f"{server}/ocsp", cache=CollateralCache())
    now = utcnow()
    collateral = gather_gpu_collateral(items, source, now=now)
    assert set(collateral.rims) == set(backend.rim_ids(0))
    # Two GPUs: BROM each + shared Provisioner/Identity (4), and the shared RIM chain (L4, L3, CA).
    device_chains = [items[0].certificates(), items[1].certificates()]
    rim_chain = parse_rim(next(iter(collateral.rims.values()))).certificates
    expected = {ocsp_key(c) for chain in device_chains for c, _ in ocsp_targets(chain, skip_leaf=True)}
    expected |= {ocsp_key(c) for c, _ in ocsp_targets(rim_chain, skip_leaf=False)}
    assert set(collateral.ocsp) == expected
    assert set(collateral.ocsp_nonces) == expected  # all fetched fresh, all echoed their nonce
    for chain in [*device_chains, rim_chain]:
        statuses = check_chain_ocsp(chain, collateral, now=now, skip_leaf=chain is not rim_chain)
        assert len(statuses) == 3
        assert all(s.status is OcspCertStatus.GOOD and s.nonce_checked for s in statuses)


def test_revoked_certificate_fault_via_real_responder(backend: VirtualGpuBackend) -> None:
    backend.inject_fault(VirtualFault.REVOKED_CERTIFICATE)
    faulty = VirtualGpuBackend.open(backend.home)
    with run_in_background(create_dev_collateral_app(settings_for_virtual_gpu(faulty))) as url:
        item = _evidence(faulty)
        now = utcnow()
        collateral = gather_gpu_collateral(
            [item], default_gpu_source(rim_service_url=url, ocsp_url=url), now=now
        )
    chain = item.certificates()
    brom, provisioner = chain[1], chain[2]
    with pytest.raises(CertificateRevoked, match="keyCompromise"):
        check_ocsp(collateral.ocsp[ocsp_key(brom)], brom, provisioner, now=now)
    with pytest.raises(CertificateRevoked) as info:
        check_chain_ocsp(chain, collateral, now=now, skip_leaf=True)
    assert info.value.actual == "revoked: keyCompromise"
    # Missing responses are "unavailable", not a verification failure.
    empty = type(collateral)(rims=collateral.rims, ocsp={})
    with pytest.raises(CollateralUnavailable, match="no OCSP response"):
        check_chain_ocsp(chain, empty, now=now, skip_leaf=True)


def test_offline_with_nothing_is_unavailable(backend: VirtualGpuBackend) -> None:
    with pytest.raises(CollateralUnavailable):
        gather_gpu_collateral([_evidence(backend)], default_gpu_source(offline=True), now=utcnow())
    # Without revocation checking only the RIMs are needed; a RIM directory provides them.
    collateral = gather_gpu_collateral(
        [_evidence(backend)], _RimsOnly(backend), now=utcnow(), check_revocation=False
    )
    assert not collateral.ocsp_checked and not collateral.ocsp


def test_stale_ocsp_is_refused_at_gather(backend: VirtualGpuBackend, server: str) -> None:
    source = default_gpu_source(rim_service_url=server, ocsp_url=server)
    with pytest.raises(CollateralUnavailable, match="stale"):
        gather_gpu_collateral([_evidence(backend)], source, now=utcnow() + timedelta(hours=2))


class _RimsOnly:
    def __init__(self, backend: VirtualGpuBackend) -> None:
        self.backend = backend

    def rim(self, rim_id: str) -> bytes:
        return self.backend.rim(rim_id)

    def ocsp(self, cert: object, issuer: object, *, nonce: bytes | None) -> bytes:
        raise CollateralUnavailable("no OCSP here")
