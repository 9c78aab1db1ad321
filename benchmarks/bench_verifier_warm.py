"""Warm per-request CPU of the service's verification path, in process: what repeated requests cost.

The attestation service keeps one :class:`~ccai.verify.Verifier` (and its caches) for all requests
and fetches collateral through one shared, freshness-aware cache. This measures that path without
HTTP: virtual-GPU evidence (a fresh nonce per call), RIMs and OCSP responses from ccai's dev
collateral server behind a :class:`~ccai.collateral.CollateralCache`, then ``verify_gpu`` +
``issue_token``; and ``verify_bundle`` of a TDX + 1 GPU bundle with its collateral embedded. Prints
the median wall and CPU milliseconds per call, how many OCSP responses were fetched, and (with
``--profile``) the functions the CPU time goes to. Asserts nothing.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_verifier_warm.py [--runs 200] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import os
import pstats
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ccai._time import utcnow
from ccai.attest import collect_composite, gather_composite_collateral
from ccai.collateral import (
    CollateralCache,
    cpu_collateral_section,
    default_gpu_source,
    embed_collateral,
)
from ccai.evidence import GpuEvidence, dump_evidence_bundle, load_evidence_bundle
from ccai.token import TokenSigner, issue_token
from ccai.verify import Verifier
from ccai.virtual import (
    create_dev_collateral_app,
    open_virtual_vm,
    run_in_background,
    settings_for_virtual_gpu,
    virtual_trust_anchors,
)


class _Counting:
    """Counts the OCSP requests that reach the origin (a cache miss)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.ocsp_fetches = 0

    def rim(self, rim_id: str) -> bytes:
        return bytes(self.inner.rim(rim_id))

    def ocsp(self, cert: Any, issuer: Any, *, nonce: bytes | None) -> bytes:
        self.ocsp_fetches += 1
        return bytes(self.inner.ocsp(cert, issuer, nonce=nonce))


def _measure(call: Callable[[], object], runs: int) -> tuple[float, float]:
    for _ in range(5):
        call()
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(runs):
        w, c = time.perf_counter(), time.process_time()
        call()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return statistics.median(wall) * 1000, statistics.median(cpu) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    os.environ["CCAI_HOME"] = tempfile.mkdtemp(prefix="ccai-bench-")
    home = Path(os.environ["CCAI_HOME"])
    cpu_tee, gpu = open_virtual_vm(tee="tdx", gpus=1, home=home, seed="bench-verifier-warm")
    anchors = virtual_trust_anchors(gpu=True, tdx=True)
    dev = TokenSigner.generate(development=True)
    with run_in_background(create_dev_collateral_app(settings_for_virtual_gpu(gpu, tee=cpu_tee))) as url:
        origin = _Counting(default_gpu_source(rim_service_url=url, ocsp_url=f"{url}/ocsp"))
        from ccai.collateral import CachedSource

        verifier = Verifier(
            anchors=anchors, allow_simulated=True, gpu_source=CachedSource(origin, CollateralCache())
        )

        def gpu_call() -> object:
            nonce = secrets.token_bytes(32)
            item = GpuEvidence(
                arch="HOPPER",
                nonce=nonce,
                report=gpu.attestation_report(0, nonce),
                certificate_chain=gpu.certificate_chain(0),
            )
            return issue_token(verifier.verify_gpu([item], nonce=nonce), signing_key=dev, now=utcnow())

        # Evidence collection (the virtual GPU signing a report) is not the verifier's cost:
        # measure it alone and subtract.
        def collect_only() -> object:
            nonce = secrets.token_bytes(32)
            return gpu.attestation_report(0, nonce)

        nonce = secrets.token_bytes(32)
        bundle = collect_composite(nonce=nonce, cpu=cpu_tee, gpu=gpu)
        now = utcnow()
        coll = gather_composite_collateral(bundle, now=now, gpu_source=origin)
        coll = dataclasses.replace(coll, cpu=cpu_collateral_section(cpu_tee.collateral(now)))
        loaded = load_evidence_bundle(dump_evidence_bundle(embed_collateral(bundle, coll)))

        def bundle_call() -> object:
            return issue_token(
                verifier.verify_bundle(loaded, expected_nonce=nonce), signing_key=dev, now=utcnow()
            )

        fetched_before = origin.ocsp_fetches
        collect = _measure(collect_only, args.runs)
        gpu_wall, gpu_cpu = _measure(gpu_call, args.runs)
        fetched = origin.ocsp_fetches - fetched_before
        b_wall, b_cpu = _measure(bundle_call, args.runs)
        print(f"runs per arm: {args.runs}; OCSP fetches from the origin during the GPU arm: {fetched}")
        print(f"{'arm':<54}{'wall ms':>10}{'cpu ms':>10}")
        arm = "verify_gpu + issue_token (1 GPU, net of collection)"
        print(f"{arm:<54}{gpu_wall - collect[0]:>10.2f}{gpu_cpu - collect[1]:>10.2f}")
        print(f"{'verify_bundle + issue_token (TDX + 1 GPU)':<54}{b_wall:>10.2f}{b_cpu:>10.2f}")
        if args.profile:
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(args.runs):
                gpu_call()
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
