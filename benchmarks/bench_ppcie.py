"""Median time of a full protected-PCIe verification: 8 GPUs + 4 NVSwitches verified as one system.

Arms (median wall and process-CPU time of --runs after a warm-up — on a shared machine the CPU
time is the steadier figure; "cold" empties the verifier's device-chain and RIM caches
before every run — the first verification of a new board or firmware; "warm" keeps them — every
later request of a long-running verifier such as the attestation service):

* ``virtual HGX, verify_ppcie``: :meth:`ccai.verify.Verifier.verify_ppcie` over the virtual HGX
  board's evidence (``ccai gpu init --simulate --gpus 8 --switches 4 --ppcie``): every GPU's and
  every switch's chain, signature, nonce, OCSP (the dev responder's answers, gathered once and
  passed in), RIMs and measurements, PPCIe mode, topology, claims and the default PPCIe policy.
  With ``--no-revocation`` as well: the same without OCSP responses.
* ``virtual HGX, verify_bundle``: :meth:`ccai.verify.Verifier.verify_bundle` of a TDX guest's
  composite bundle carrying the 8 GPUs and 4 switches (collateral embedded, JSON round trip).
* ``NVIDIA's real HGX evidence``: NVIDIA's 8-GPU + 4-switch PPCIe test evidence
  (``ppcie-verifier-sdk-cpp/tests/data``) at its pinned time. The RIMs for its firmware (driver
  590.12, VBIOS 96.00.A5.00.01, switch BIOS 96.10.73.00.01) are not public offline, so this arm
  times what is verifiable offline: steps (1)–(4) of every device (chain → pinned NVIDIA root,
  signature over the raw report, contents and FWID, nonce) and the topology rule over the PDIs.

Collateral I/O is not timed (gathered once); evidence collection is not timed (collected once: a
verifier does not care whether a nonce is new). Prints numbers; asserts nothing about time.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_ppcie.py [--runs 50] [--vectors tests/vectors]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from ccai._time import utcnow
from ccai.attest import (
    collect_composite,
    collect_gpu_evidence,
    collect_switch_evidence,
    gather_composite_collateral,
)
from ccai.collateral import (
    GpuCollateral,
    cpu_collateral_section,
    embed_collateral,
    gather_gpu_collateral,
)
from ccai.device import MultiGpuMode
from ccai.evidence import dump_evidence_bundle, load_evidence_bundle, parse_evidence_json
from ccai.verify import (
    Appraisal,
    PpcieTopology,
    TrustAnchors,
    Verifier,
    default_composite_policy,
    default_ppcie_policy,
)
from ccai.virtual import VirtualGpuBackend, open_virtual_vm, settings_for_virtual_gpu

REAL = "nvtrust/NVIDIA_nvtrust@0281730/guest_tools/ppcie-verifier-sdk-cpp/tests/data"
#: NVIDIA's LS10 and GH100 certificates of that evidence are valid then (tests/verify/test_switch_vectors.py).
REAL_PIN = datetime(2026, 7, 1, tzinfo=UTC)


class _InProcessSource:
    """RIMs from the virtual hardware, OCSP answers from the dev collateral server's responder."""

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


def _median_ms(
    call: Callable[[], object], runs: int, *, before: Callable[[], None] | None = None
) -> tuple[float, float]:
    """Median wall and process-CPU milliseconds of ``call`` (``before`` runs untimed each time)."""
    for _ in range(3):
        if before is not None:
            before()
        call()
    wall, cpu = [], []
    for _ in range(runs):
        if before is not None:
            before()
        w, c = time.perf_counter(), time.process_time()
        call()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return statistics.median(wall) * 1000, statistics.median(cpu) * 1000


def _row(name: str, verifier: Verifier, call: Callable[[], object], runs: int) -> None:
    cold, cold_cpu = _median_ms(call, runs, before=verifier.caches.clear)
    warm, warm_cpu = _median_ms(call, runs)
    print(f"{name:<62}{cold:>10.2f}{cold_cpu:>10.2f}{warm:>10.2f}{warm_cpu:>10.2f}")


def _virtual(runs: int, *, revocation: bool) -> None:
    home = Path(tempfile.mkdtemp(prefix="ccai-bench-ppcie-"))
    os.environ["CCAI_HOME"] = str(home)
    backend = VirtualGpuBackend.create(
        home=home, gpus=8, multi_gpu_mode=MultiGpuMode.PROTECTED_PCIE, switches=4, seed=b"bench-ppcie"
    )
    nonce = os.urandom(32)
    gpus = collect_gpu_evidence(backend, nonce)
    switches = collect_switch_evidence(backend, nonce)
    now = utcnow()
    collateral = gather_gpu_collateral(
        [*gpus, *switches], _InProcessSource(backend), now=now, check_revocation=revocation
    )
    if not revocation:
        collateral = GpuCollateral(rims=collateral.rims, ocsp={}, ocsp_checked=False)
    roots = backend.trust_anchors()
    cpu, _ = open_virtual_vm(tee="tdx", gpus=8, home=home)
    anchors = TrustAnchors.simulated_test_pki(
        gpu_device_root=roots.device_root_pem,
        gpu_rim_root=roots.rim_root_pem,
        sgx_root=cpu.trust_anchors().sgx_root,
    )
    verifier = Verifier(
        anchors=anchors,
        allow_simulated=True,
        check_revocation=revocation,
        policy=default_ppcie_policy(allow_simulated=True, allow_unchecked_revocation=not revocation),
        at=now,
    )

    def ppcie() -> object:
        verified = verifier.verify_ppcie(
            gpus, switches, nonce=nonce, gpu_collateral=collateral, switch_collateral=collateral
        )
        assert len(verified.gpus) == 8 and len(verified.switches) == 4
        return verified

    label = "OCSP checked" if revocation else "revocation not checked"
    _row(f"virtual HGX, verify_ppcie ({label})", verifier, ppcie, runs)
    if not revocation:
        return
    bundle = collect_composite(nonce=nonce, cpu=cpu, gpu=backend, switches=backend)
    coll = gather_composite_collateral(bundle, now=now, gpu_source=_InProcessSource(backend))
    coll = dataclasses.replace(coll, cpu=cpu_collateral_section(cpu.collateral(now)))
    loaded = load_evidence_bundle(dump_evidence_bundle(embed_collateral(bundle, coll)))
    bundle_verifier = Verifier(
        anchors=anchors,
        allow_simulated=True,
        check_revocation=True,
        policy=default_composite_policy(allow_simulated=True, ppcie=True),
        at=now,
    )

    def composite() -> object:
        verified = bundle_verifier.verify_bundle(loaded, expected_nonce=nonce)
        assert len(verified.switches) == 4
        return verified

    _row("virtual HGX in a TDX guest, verify_bundle (OCSP checked)", bundle_verifier, composite, runs)


def _real(runs: int, vectors: Path) -> None:
    base = vectors / REAL
    if not base.is_dir():
        print(f"{'NVIDIA real HGX evidence':<62}{'(vectors not found: ' + str(base) + ')'}")
        return
    gpus = parse_evidence_json((base / "gpu_evidence.json").read_bytes())
    switches = parse_evidence_json((base / "switch_evidence.json").read_bytes())
    verifier = Verifier.offline(at=REAL_PIN)
    topology = PpcieTopology(gpus=8, switches=4)

    def evidence_steps() -> object:
        authenticated_gpus = verifier.authenticate_gpu(gpus, nonce=gpus[0].nonce)
        authenticated_switches = verifier.authenticate_switch(switches, nonce=switches[0].nonce)
        gpu_claims = tuple(
            {
                "x-nvidia-gpu-switch-pdis": sorted(
                    {p[::-1].hex().upper() for p in a.report.opaque_data.switch_pdis or () if any(p)}
                )
            }
            for a in authenticated_gpus
        )
        switch_claims = tuple(
            {
                "x-ccai-switch-pdi": (a.report.opaque_data.device_pdi or b"").hex().upper(),
                "x-ccai-switch-gpu-pdis": sorted(
                    {p.hex().upper() for p in a.report.opaque_data.switch_gpu_pdis or () if any(p)}
                ),
            }
            for a in authenticated_switches
        )
        failures = topology.evaluate(Appraisal(overall={}, gpus=gpu_claims, switches=switch_claims))
        assert not failures, failures
        return failures

    _row("NVIDIA real HGX (8+4), steps (1)-(4) of every device + topology", verifier, evidence_steps, runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument(
        "--vectors", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "vectors"
    )
    args = parser.parse_args()
    import cryptography

    print(
        f"Python {platform.python_version()}, cryptography {cryptography.__version__}, "
        f"{os.cpu_count()} CPU(s); median of {args.runs} runs, milliseconds per whole system"
    )
    print(f"{'arm':<62}{'cold':>10}{'cold cpu':>10}{'warm':>10}{'warm cpu':>10}")
    _virtual(args.runs, revocation=True)
    _virtual(args.runs, revocation=False)
    _real(args.runs, args.vectors)


if __name__ == "__main__":
    main()
