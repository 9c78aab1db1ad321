"""Parse cost of NVIDIA evidence: report, evidence JSON item (report + 5-cert chain), RIM XML.

Prints median and p90 wall time per call on one core. Usage::

    .venv/bin/python benchmarks/bench_evidence_parse.py [--vectors tests/vectors] [--n 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from ccai.evidence import (
    load_report,
    parse_attestation_report,
    parse_cert_chain,
    parse_evidence_json,
    parse_rim,
)

UT = "nvtrust/NVIDIA_attestation-sdk@73c032e/nv-attestation-sdk-cpp/unit-tests/testdata"
SER = "nvtrust/NVIDIA_attestation-sdk@73c032e/common-test-data/serialized_test_evidence"


def measure(fn: Callable[[], object], n: int) -> tuple[float, float]:
    for _ in range(min(n, 50)):
        fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return statistics.median(times) * 1e3, times[int(0.9 * (len(times) - 1))] * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vectors", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "vectors")
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    v: Path = args.vectors
    report = load_report((v / UT / "hopperAttestationReport.txt").read_bytes())
    chain = (v / UT / "hopperCertChain.txt").read_bytes()
    evidence = (v / SER / "hopper_evidence.json").read_bytes()
    rim = (v / UT / "NV_GPU_DRIVER_GH100_550.144.03.xml").read_bytes()

    def json_item() -> None:
        (item,) = parse_evidence_json(evidence)
        item.parse_report()
        item.certificates()

    cases: list[tuple[str, Callable[[], object]]] = [
        ("parse_attestation_report (4130 B, 64 blocks)", lambda: parse_attestation_report(report)),
        ("parse_cert_chain (5 certificates)", lambda: parse_cert_chain(chain)),
        ("evidence JSON item: JSON + report + chain", json_item),
        ("parse_rim (driver RIM, 21 kB, 64 resources)", lambda: parse_rim(rim)),
    ]
    print(f"{'operation':48s} {'median ms':>10s} {'p90 ms':>10s}   (n={args.n})")
    for name, fn in cases:
        med, p90 = measure(fn, args.n)
        print(f"{name:48s} {med:10.3f} {p90:10.3f}")


if __name__ == "__main__":
    main()
