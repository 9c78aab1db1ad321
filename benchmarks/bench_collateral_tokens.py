"""Collateral and token costs: OCSP validation, gather against the dev server, EAT issue/verify.

Prints medians; asserts nothing about time. Run: ``.venv/bin/python benchmarks/bench_collateral_tokens.py``.
"""

from __future__ import annotations

import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("CCAI_HOME", tempfile.mkdtemp(prefix="ccai-bench-"))

from ccai._time import utcnow
from ccai.collateral import CollateralCache, default_gpu_source, gather_gpu_collateral
from ccai.evidence import GpuEvidence
from ccai.token import TokenSigner, issue_token, jwks, verify_token
from ccai.verify._ocsp_check import check_chain_ocsp
from ccai.verify._result import VerifiedGpu, _issue
from ccai.virtual import (
    VirtualGpuBackend,
    create_dev_collateral_app,
    run_in_background,
    settings_for_virtual_gpu,
)


def median_ms(fn: Callable[[], Any], *, runs: int) -> float:
    fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    backend = VirtualGpuBackend.create(gpus=8)
    items = []
    for i in range(8):
        nonce = secrets.token_bytes(32)
        items.append(
            GpuEvidence(
                arch="HOPPER",
                nonce=nonce,
                report=backend.attestation_report(i, nonce),
                certificate_chain=backend.certificate_chain(i),
            )
        )
    with run_in_background(create_dev_collateral_app(settings_for_virtual_gpu(backend))) as url:
        cold = median_ms(
            lambda: gather_gpu_collateral(
                items, default_gpu_source(rim_service_url=url, ocsp_url=url), now=utcnow()
            ),
            runs=10,
        )
        cache = CollateralCache()
        warm_source = default_gpu_source(rim_service_url=url, ocsp_url=url, cache=cache)
        gather_gpu_collateral(items, warm_source, now=utcnow())
        warm = median_ms(lambda: gather_gpu_collateral(items, warm_source, now=utcnow()), runs=50)
        collateral = gather_gpu_collateral(
            items, default_gpu_source(rim_service_url=url, ocsp_url=url), now=utcnow()
        )
    print(
        f"gather, 8 GPUs, loopback dev server, no cache: {cold:.1f} ms median ({len(collateral.ocsp)} OCSP + "
        f"{len(collateral.rims)} RIM requests, concurrent)"
    )
    print(f"gather, 8 GPUs, warm in-memory cache:          {warm:.2f} ms median")
    chain = items[0].certificates()
    now = utcnow()
    ocsp_ms = median_ms(lambda: check_chain_ocsp(chain, collateral, now=now, skip_leaf=True), runs=200)
    print(f"check_chain_ocsp, device chain (3 responses): {ocsp_ms:.2f} ms median")

    signer = TokenSigner.generate(development=True)  # the evidence below is simulated
    verified = _issue(
        nonce=bytes(32),
        gpus=tuple(VerifiedGpu(index=i, claims={"measres": "success"}) for i in range(8)),
        overall_claims={},
        verified_at=now,
        simulated=True,
    )
    issue_ms = median_ms(lambda: issue_token(verified, signing_key=signer, now=now), runs=200)
    eat = issue_token(verified, signing_key=signer, now=now)
    document = jwks([signer])
    verify_ms = median_ms(
        lambda: verify_token(eat, jwks=document, nonce=bytes(32), now=now, allow_simulated=True), runs=200
    )
    print(f"issue_token, 8 GPUs (9 ES384 JWTs):           {issue_ms:.2f} ms median")
    print(f"verify_token, 8 GPUs (9 ES384 JWTs):          {verify_ms:.2f} ms median")


if __name__ == "__main__":
    main()
