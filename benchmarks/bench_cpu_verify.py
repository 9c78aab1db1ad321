"""Median verification time of a real TDX quote and a real SEV-SNP report with bundled collateral.

Goal (DESIGN.md): ≤ 10 ms median each. Baseline in the same run: dcap-qvl (Rust, PyPI) on the same
TDX quote and collateral, when installed. Prints numbers; asserts nothing about time.

    .venv/bin/python benchmarks/bench_cpu_verify.py [--runs 200] [--vectors tests/vectors]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from ccai.collateral import load_certificates, snp_collateral_from_certificates, tdx_collateral_from_json
from ccai.evidence import parse_snp_report, parse_tdx_quote
from ccai.verify import verify_snp_report, verify_tdx_quote


def _measure(fn: Callable[[], object], runs: int) -> tuple[float, float, float]:
    for _ in range(max(3, runs // 20)):
        fn()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.9)], samples[0]


def main() -> None:
    default_vectors = os.environ.get("CCAI_VECTORS") or str(
        Path(__file__).resolve().parents[1] / "tests/vectors"
    )
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--vectors", default=default_vectors)
    args = parser.parse_args()
    cpu = Path(args.vectors) / "cpu"

    quote = (cpu / "tdx/dcap-qvl/tdx_quote").read_bytes()
    collateral_json = (cpu / "tdx/dcap-qvl/tdx_quote_collateral.json").read_text()
    tdx_now = datetime.fromisoformat("2025-06-20T00:00:00+00:00")
    collateral = tdx_collateral_from_json(collateral_json)

    report = (cpu / "snp/teekit/sev-gcp.bin").read_bytes()
    certs = load_certificates((cpu / "snp/teekit/sev-gcp-vcek.pem").read_bytes())
    certs += load_certificates((cpu / "roots/amd/ask_ark_milan.pem").read_bytes())
    snp_collateral = snp_collateral_from_certificates(certs)
    snp_now = datetime.fromisoformat("2026-01-01T00:00:00+00:00")

    rows: list[tuple[str, tuple[float, float, float]]] = [
        ("TDX v4 parse only (ccai)", _measure(lambda: parse_tdx_quote(quote), args.runs)),
        (
            "TDX v4 full verify incl. collateral + CRLs + TCB (ccai)",
            _measure(lambda: verify_tdx_quote(quote, collateral, now=tdx_now), args.runs),
        ),
        (
            "TDX v4 full verify, collateral JSON loaded each time (ccai)",
            _measure(
                lambda: verify_tdx_quote(quote, tdx_collateral_from_json(collateral_json), now=tdx_now),
                args.runs,
            ),
        ),
        ("SNP v5 parse only (ccai)", _measure(lambda: parse_snp_report(report), args.runs)),
        (
            "SNP v5 full verify: ARK→ASK→VCEK (RSA-PSS) + report sig (ccai)",
            _measure(lambda: verify_snp_report(report, snp_collateral, now=snp_now), args.runs),
        ),
    ]
    try:
        import dcap_qvl

        qvl_collateral = dcap_qvl.QuoteCollateralV3.from_json(collateral_json)
        secs = int(tdx_now.timestamp())
        rows.append(
            (
                f"TDX v4 full verify, baseline dcap-qvl {dcap_qvl.__version__} (Rust)",
                _measure(lambda: dcap_qvl.verify(quote, qvl_collateral, secs), args.runs),
            )
        )
    except ImportError:
        rows.append(("TDX baseline dcap-qvl: not installed (pip install dcap-qvl)", (float("nan"),) * 3))

    print(
        f"python {platform.python_version()} on {platform.machine()}, runs={args.runs}, goal: median ≤ 10 ms"
    )
    print(f"{'case':<66} {'median ms':>10} {'p90 ms':>9} {'min ms':>9}")
    for name, (median, p90, best) in rows:
        print(f"{name:<66} {median:>10.3f} {p90:>9.3f} {best:>9.3f}")
    print(json.dumps({name: round(m, 4) for name, (m, _, _) in rows}))


if __name__ == "__main__":
    main()
