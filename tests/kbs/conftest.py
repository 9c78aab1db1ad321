"""Key-broker fixtures: a broker under real uvicorn on loopback (SQLite or PostgreSQL), the virtual
TDX guest with two virtual H100s, and the evidence function that collects its composite evidence."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="needs the [service] extra")

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from tests.service.conftest import postgres_url, serve  # noqa: F401  (fixture re-export)

from ccai._time import utcnow
from ccai.attest import collect_composite, gather_composite_collateral
from ccai.collateral import cpu_collateral_section, embed_collateral
from ccai.evidence import EvidenceBundle, dump_evidence_bundle
from ccai.kbs import KbsSettings, create_kbs_app, read_admin_credential
from ccai.virtual import (
    VirtualCpuTee,
    VirtualGpuBackend,
    create_dev_collateral_app,
    open_virtual_vm,
    run_in_background,
    settings_for_virtual_gpu,
    virtual_trust_anchors,
)

POLICY = {"format": "ccai-policy/1", "allow_simulated": True, "gpus": {"count": 2}}


class InProcessSource:
    """GPU collateral for the virtual GPUs, answered in-process (RIMs and OCSP)."""

    def __init__(self, backend: VirtualGpuBackend) -> None:
        self.backend = backend
        self.responder = settings_for_virtual_gpu(backend).responder

    def rim(self, rim_id: str) -> bytes:
        return self.backend.rim(rim_id)

    def ocsp(self, cert: x509.Certificate, issuer: x509.Certificate, *, nonce: bytes | None) -> bytes:
        builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA384())
        if nonce:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        return self.responder.respond(builder.build().public_bytes(Encoding.DER))


def make_evidence(
    cpu: VirtualCpuTee,
    gpu: VirtualGpuBackend,
    *,
    gpus_from: EvidenceBundle | None = None,
    switches: bool = False,
) -> Callable[[bytes, bytes], bytes]:
    """The guest's evidence function: collect composite evidence with collateral embedded
    (``switches``: the virtual HGX's NVSwitches too)."""

    def evidence(nonce: bytes, bound_key: bytes) -> bytes:
        bundle = collect_composite(
            nonce=nonce, cpu=cpu, gpu=gpu, hpke_public_key=bound_key, switches=gpu if switches else None
        )
        if gpus_from is not None:
            bundle = dataclasses.replace(bundle, gpus=gpus_from.gpus)
        now = utcnow()
        coll = gather_composite_collateral(bundle, now=now, gpu_source=InProcessSource(gpu))
        coll = dataclasses.replace(coll, cpu=cpu_collateral_section(cpu.collateral(now)))
        return dump_evidence_bundle(embed_collateral(bundle, coll))

    return evidence


@pytest.fixture
def vm(ccai_home: Path) -> tuple[VirtualCpuTee, VirtualGpuBackend]:
    return open_virtual_vm(tee="tdx", gpus=2, home=ccai_home)


def broker_app(
    home: Path,
    *,
    simulated: bool = True,
    database_url: str | None = None,
    collateral_url: str | None = None,
) -> Any:
    """A broker app; offline, or with ``collateral_url`` (the dev collateral server) as its Intel
    PCS, NVIDIA RIM service and OCSP responder (Trustee-encoded evidence carries no collateral)."""
    online: dict[str, Any] = {"offline": True}
    if collateral_url is not None:
        online = {
            "pcs_url": collateral_url,
            "rim_service_url": collateral_url,
            "ocsp_url": f"{collateral_url}/ocsp",
        }
    settings = KbsSettings.build(
        database_url=database_url or f"sqlite+aiosqlite:///{home / 'kbs.db'}",
        allow_simulated=simulated,
        master_key_file=home / "kbs-master.keys",
        admin_credential_file=home / "kbs-admin.token",
        **online,
    )
    anchors = virtual_trust_anchors(gpu=True, tdx=True) if simulated else None
    return create_kbs_app(settings, anchors=anchors)


@dataclasses.dataclass
class Admin:
    base: str
    home: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": "Bearer " + read_admin_credential(self.home / "kbs-admin.token")}

    def put(self, name: str, value: bytes) -> int:
        r = httpx.post(f"{self.base}/kbs/v0/resource/{name}", content=value, headers=self.headers)
        assert r.status_code == 200, r.text
        return int(r.json()["version"])

    def policy(self, name: str, doc: dict[str, Any], **target: str) -> None:
        r = httpx.put(
            f"{self.base}/kbs/v0/admin/policy/{name}",
            json={"document": json.dumps(doc), **target},
            headers=self.headers,
        )
        assert r.status_code == 200, r.text

    def audit(self) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.base}/kbs/v0/admin/audit", headers=self.headers)
        assert r.status_code == 200, r.text
        return list(r.json()["records"])


@pytest.fixture
def broker(ccai_home: Path, vm: tuple[VirtualCpuTee, VirtualGpuBackend]) -> Iterator[Admin]:
    del vm  # the virtual hardware exists before the broker reads its test-PKI anchors
    with serve(broker_app(ccai_home)) as base:
        yield Admin(base, ccai_home)


@pytest.fixture
def online_broker(ccai_home: Path, vm: tuple[VirtualCpuTee, VirtualGpuBackend]) -> Iterator[Admin]:
    """A broker that fetches collateral from the virtual hardware's dev collateral server."""
    cpu, gpu = vm
    app = create_dev_collateral_app(settings_for_virtual_gpu(gpu, tee=cpu))
    with (
        run_in_background(app) as collateral_url,
        serve(broker_app(ccai_home, collateral_url=collateral_url)) as base,
    ):
        yield Admin(base, ccai_home)
