"""Median verification time of composite bundles (virtual TDX / SNP VM + virtual GPUs, collateral embedded).

Each bundle is collected the way `ccai attest --simulate tdx|snp --gpus N --with-collateral` does it (the
collateral comes from ccai's dev collateral server over HTTP) and round-tripped through its JSON file
layout. Timed per bundle, median of --runs after a warm-up:

* ``GPU only``: :meth:`ccai.verify.Verifier.verify_gpu` on the bundle's GPU evidence and embedded GPU
  collateral with the derived GPU nonce — the in-run baseline (what `ccai verify gpu` costs);
* ``composite``: :meth:`ccai.verify.Verifier.verify_bundle` — CPU quote/report, binding and every GPU;
* ``load + composite``: the same after parsing the bundle JSON each time (what `ccai verify BUNDLE`
  costs without process start-up);
* ``composite, cold caches``: the verifier's device-chain and RIM caches emptied before every run (the
  first verification of a new GPU / driver in a long-running verifier).

A bundle with 0 GPUs times the CPU evidence and the binding alone (goal, issue 4: ≤ 10 ms); composite
minus GPU only is the same cost inside a GPU bundle, but on a busy machine that difference drowns in noise.
Prints numbers; asserts nothing about time.

    .venv/bin/python benchmarks/bench_composite_verify.py [--runs 100] [--gpus 0,1,8]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ccai._time import utcnow
from ccai.attest import collect_composite, gather_composite_collateral
from ccai.collateral import (
    AmdKdsClient,
    IntelPcsClient,
    default_gpu_source,
    embed_collateral,
    load_embedded_collateral,
)
from ccai.evidence import EvidenceBundle, derive_gpu_nonce, dump_evidence_bundle, load_evidence_bundle
from ccai.verify import Verifier, default_composite_policy
from ccai.virtual import (
    create_dev_collateral_app,
    open_virtual_vm,
    run_in_background,
    settings_for_virtual_gpu,
    virtual_trust_anchors,
)

NONCE = bytes(range(32))


def _median_ms(fn: Callable[[], object], runs: int, before: Callable[[], None] | None = None) -> float:
    for _ in range(max(3, runs // 20)):
        fn()
    samples = []
    for _ in range(runs):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def _collect(tee: str, gpus: int, home: Path) -> EvidenceBundle:
    """What `ccai attest --simulate TEE --gpus N --with-collateral` collects."""
    cpu, backend = open_virtual_vm(tee=tee, gpus=gpus, home=home)
    bundle = collect_composite(nonce=NONCE, cpu=cpu, gpu=backend if gpus else None)
    with run_in_background(create_dev_collateral_app(settings_for_virtual_gpu(backend, tee=cpu))) as url:
        collateral = gather_composite_collateral(
            bundle,
            now=utcnow(),
            gpu_source=default_gpu_source(rim_service_url=url, ocsp_url=f"{url}/ocsp"),
            pcs=IntelPcsClient(url),
            kds=AmdKdsClient(url),
        )
    return embed_collateral(bundle, collateral)


def _bench(tee: str, gpus: int, runs: int, root: Path) -> list[tuple[str, float]]:
    home = root / f"{tee}-{gpus}"
    home.mkdir()
    os.environ["CCAI_HOME"] = str(home)
    bundle = _collect(tee, gpus, home)
    raw = dump_evidence_bundle(bundle)
    bundle = load_evidence_bundle(raw)
    test_pki = virtual_trust_anchors(home, gpu=True, tdx=tee == "tdx", snp=tee == "snp")
    gpu_verifier = Verifier.simulated(test_pki)
    # Zero GPUs pass only a policy that says CPU-only.
    verifier = Verifier.simulated(test_pki, policy=default_composite_policy(allow_no_gpus=gpus == 0))
    now = utcnow()
    collateral = load_embedded_collateral(bundle)
    assert collateral is not None
    gpu_collateral = collateral.gpu

    def gpu_only() -> object:
        return gpu_verifier.verify_gpu(
            bundle.gpus, nonce=derive_gpu_nonce(NONCE), collateral=gpu_collateral, now=now
        )

    def composite() -> object:
        return verifier.verify_bundle(bundle, now=now, expected_nonce=NONCE)

    def load_and_composite() -> object:
        loaded = load_evidence_bundle(raw)
        return verifier.verify_bundle(loaded, now=now, expected_nonce=NONCE)

    composite()  # fails loudly here rather than timing an error path
    name = f"{tee.upper()} + {gpus} GPU"
    rows: list[tuple[str, float]] = []
    if gpus:
        rows.append((f"{name}: GPU only (baseline)", _median_ms(gpu_only, runs)))
    rows += [
        (
            f"{name}: composite" + ("" if gpus else " (CPU evidence + binding only)"),
            _median_ms(composite, runs),
        ),
        (f"{name}: load JSON ({len(raw) / 1024:.0f} KiB) + composite", _median_ms(load_and_composite, runs)),
    ]
    if gpus:
        rows.append(
            (
                f"{name}: composite, cold caches",
                _median_ms(composite, max(5, runs // 5), before=verifier.caches.clear),
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--gpus", default="0,1,8", help="GPU counts per bundle, comma-separated")
    args = parser.parse_args()
    counts = [int(x) for x in args.gpus.split(",") if x.strip()]
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="ccai-bench-composite-") as tmp:
        for tee in ("tdx", "snp"):
            for gpus in counts:
                rows += _bench(tee, gpus, args.runs, Path(tmp))
    import cryptography

    print(
        f"composite verification, median of {args.runs} runs; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, cryptography {cryptography.__version__}"
    )
    width = max(len(name) for name, _ in rows)
    for name, ms in rows:
        print(f"{name:<{width}}  {ms:8.2f} ms")


if __name__ == "__main__":
    main()
