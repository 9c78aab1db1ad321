"""How long the virtual CC GPU takes: first generation (cold $CCAI_HOME), warm opens, reports and RIMs.

Run: ``.venv/bin/python benchmarks/bench_virtual_gpu.py``. Prints medians; asserts nothing.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ccai.device import Architecture
from ccai.virtual import VirtualGpuBackend


def _median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    nonce = bytes(32)
    for arch, gpus in [(Architecture.HOPPER, 1), (Architecture.HOPPER, 8), (Architecture.BLACKWELL, 8)]:
        cold = []
        for _ in range(5):
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                backend = VirtualGpuBackend.create(home=Path(tmp), gpus=gpus, architecture=arch)
                for i in range(gpus):
                    backend.certificate_chain(i)
                    backend.attestation_report(i, nonce)
                cold.append((time.perf_counter() - start) * 1000)
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            VirtualGpuBackend.create(home=home, gpus=gpus, architecture=arch).pki  # noqa: B018 - fills the cache

            def warm_open_and_report(home: Path = home) -> None:
                VirtualGpuBackend.open(home).attestation_report(0, nonce)

            warm = _median_ms(warm_open_and_report, 20)
            backend = VirtualGpuBackend.open(home)
            backend.pki  # noqa: B018
            report = _median_ms(lambda backend=backend: backend.attestation_report(0, nonce), 50)

            def fresh_rims(home: Path = home) -> None:
                b = VirtualGpuBackend.open(home)
                for rim_id in b.rim_ids(0):
                    b.rim(rim_id)

            rims = _median_ms(fresh_rims, 10)
        print(
            f"{arch.value:9s} {gpus} GPU(s): first generation (all chains + reports) "
            f"{statistics.median(cold):6.1f} ms | warm open + report {warm:5.1f} ms | "
            f"report {report:4.1f} ms | open + both RIMs {rims:5.1f} ms"
        )


if __name__ == "__main__":
    main()
