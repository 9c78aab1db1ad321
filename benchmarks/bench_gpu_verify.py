"""GPU evidence verification: ccai vs NVIDIA's nv-local-gpu-verifier on the same real vector.

The vector is the only fully self-contained real one (gpu-evidence.md §16.1): the 2023 H100 report
``attestationReport.txt`` (driver 545.00, nonce ``4cff…af2e``) with its two genuine test RIMs,
verified at the pinned time 2024-06-01 (the RIM signers have since expired). Both tools run
every check (device chain, FWID, report signature, nonce, RIM chains and XMLDSig, measurement
comparison) with revocation taken out:

* ccai: ``GpuCollateral(ocsp_checked=False)`` and a policy that accepts "not checked";
* NVIDIA (harness only, the tool is not changed on disk): ``ocsp_certificate_chain_validation``
  stubbed to "good", the pinned time injected into pyOpenSSL's X509 store contexts, the driver
  RIM path wired through (its ``--driver_rim`` is not), its console/file logging silenced.

Reported per tool (one GPU per verification, one core):

* first call: the first verification in a fresh process, after imports;
* cold: median with every ccai cache cleared before each call (chains and RIM signatures
  re-verified); NVIDIA caches nothing, so its cold and warm are the same loop;
* warm: median with ccai's caches filled (what a long-running verifier sees).

Install NVIDIA's tool into its own venv first (it pins old cryptography/pyOpenSSL/signxml)::

    python3 -m venv /tmp/nvvenv && /tmp/nvvenv/bin/pip install nv-local-gpu-verifier

Run: ``.venv/bin/python benchmarks/bench_gpu_verify.py [--runs 50] [--nv-python /tmp/nvvenv/bin/python]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VECTORS = Path(os.environ.get("CCAI_VECTORS") or REPO / "tests" / "vectors")
NVT0 = (
    VECTORS
    / "nvtrust/NVIDIA_nvtrust@0ab869a/guest_tools/gpu_verifiers/local_gpu_verifier/src/verifier/samples"
)
NVT = (
    VECTORS
    / "nvtrust/NVIDIA_nvtrust@0281730/guest_tools/gpu_verifiers/local_gpu_verifier/src/verifier/samples"
)
REPORT = NVT0 / "attestationReport.txt"
CHAIN = NVT0 / "gpuAkCertChain.txt"
DRIVER_RIM = NVT / "Driver_RIM_test_no_gpu.swidtag"
VBIOS_RIM = NVT / "1010_0200_882_96005E0001_test_no_gpu.swidtag"
NONCE = "4cff7f5380ead8fad8ec2c531c110aca4302a88f603792801a8ca29ee151af2e"
PIN = "2024-06-01T00:00:00"

_NVIDIA_HARNESS = r'''
import json, logging, sys, time, warnings
from datetime import datetime
warnings.filterwarnings("ignore")
report, chain, drim, vrim, nonce, pin, runs = sys.argv[1:8]
PIN = datetime.fromisoformat(pin)
import OpenSSL.crypto as C
_Orig = C.X509StoreContext
class _PinnedContext(_Orig):
    """Every X509 store context NVIDIA's tool and its signxml 3.2 create validates at PIN."""
    def __init__(self, store, certificate, chain=None):
        store.set_time(PIN)
        super().__init__(store, certificate, chain)
C.X509StoreContext = _PinnedContext
t0 = time.perf_counter()
from verifier import cc_admin
from verifier.cc_admin_utils import CcAdminUtils
from verifier.config import BaseSettings, HopperSettings
from verifier.nvml.nvmlHandlerTest import NvmlHandlerTest
import_s = time.perf_counter() - t0
for name in list(logging.root.manager.loggerDict):
    logging.getLogger(name).setLevel(logging.CRITICAL)
# Revocation out: the tool has no switch for it (gpu-evidence.md §14).
CcAdminUtils.ocsp_certificate_chain_validation = staticmethod(lambda *a, **k: (True, False, "good", None))
HopperSettings.ATTESTATION_REPORT_PATH = report
HopperSettings.GPU_ATTESTATION_CERTIFICATES_PATH = chain
HopperSettings.DRIVER_RIM_PATH = drim  # --driver_rim is not wired through in 2.7.x
args = {"verbose": False, "test_no_gpu": False, "driver_rim": drim, "vbios_rim": vrim, "user_mode": True,
        "allow_hold_cert": False, "service_key": None, "nonce": nonce, "rim_root_cert": None,
        "rim_service_url": None, "ocsp_url": None, "ocsp_nonce_disabled": True, "claims_version": "3.0"}
times, results = [], []
for _ in range(int(runs)):
    evidence = NvmlHandlerTest(settings=BaseSettings)  # reads the report and chain files: not timed
    evidence.DriverVersion = "545.00"
    evidence.VbiosVersion = "96.00.5e.00.01"
    t = time.perf_counter()
    ok, _claims = cc_admin.attest(args, nonce, [evidence])
    times.append(time.perf_counter() - t)
    results.append(bool(ok))
print(json.dumps({"import_s": import_s, "times_s": times, "results": results}))
'''


def bench_ccai(runs: int) -> dict[str, float]:
    """Time ccai's Verifier.verify_gpu: first call, cold (its caches cleared), warm."""
    t0 = time.perf_counter()
    from ccai.collateral import GpuCollateral
    from ccai.evidence import GpuEvidence, load_report
    from ccai.verify import Verifier, default_policy

    import_s = time.perf_counter() - t0
    item = GpuEvidence(
        arch="HOPPER",
        nonce=bytes.fromhex(NONCE),
        report=load_report(REPORT.read_bytes()),
        certificate_chain=CHAIN.read_bytes(),
    )
    collateral = GpuCollateral(
        rims={
            "NV_GPU_DRIVER_GH100_545.00": DRIVER_RIM.read_bytes(),
            "NV_GPU_VBIOS_1010_0200_882_96005E0001": VBIOS_RIM.read_bytes(),
        },
        ocsp_checked=False,
    )
    policy = default_policy(allow_unchecked_revocation=True)
    verifier = Verifier(policy=policy)
    now = datetime.fromisoformat(PIN).replace(tzinfo=UTC)

    def once() -> float:
        t = time.perf_counter()
        verified = verifier.verify_gpu([item], nonce=item.nonce, collateral=collateral, now=now)
        elapsed = time.perf_counter() - t
        assert verified.gpus[0].claims["measres"] == "success"
        return elapsed

    first = once()
    cold = []
    for _ in range(runs):
        verifier.caches.clear()
        cold.append(once())
    once()
    warm = [once() for _ in range(runs)]
    return {
        "import_s": import_s,
        "first": first,
        "cold": statistics.median(cold),
        "warm": statistics.median(warm),
        "cold_min": min(cold),
        "warm_min": min(warm),
    }


def bench_nvidia(python: Path, runs: int) -> dict[str, float] | None:
    """Time NVIDIA's cc_admin.attest in its own venv (None when it is not installed)."""
    if not python.exists():
        return None
    with tempfile.TemporaryDirectory(prefix="nvbench-") as tmp:
        harness = Path(tmp) / "harness.py"
        harness.write_text(_NVIDIA_HARNESS)
        # The tool writes verifier.log into the working directory: keep it in the temp dir.
        proc = subprocess.run(
            [
                str(python),
                str(harness),
                str(REPORT),
                str(CHAIN),
                str(DRIVER_RIM),
                str(VBIOS_RIM),
                NONCE,
                PIN,
                str(runs + 1),
            ],
            cwd=tmp,
            capture_output=True,
            text=True,
            check=False,
        )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        print(f"NVIDIA harness failed (rc {proc.returncode}):\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    doc = json.loads(lines[-1])
    if not all(doc["results"]):
        print("NVIDIA's verifier did not pass the vector; its figures are not comparable", file=sys.stderr)
        return None
    times = doc["times_s"]
    return {
        "import_s": doc["import_s"],
        "first": times[0],
        "cold": statistics.median(times[1:]),
        "warm": statistics.median(times[1:]),
        "cold_min": min(times[1:]),
        "warm_min": min(times[1:]),
    }


def main() -> None:
    """Run both and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--nv-python", type=Path, default=Path("/tmp/nvvenv/bin/python"))
    args = parser.parse_args()

    ccai = bench_ccai(args.runs)
    nvidia = bench_nvidia(args.nv_python, args.runs)

    def ms(value: float) -> str:
        return f"{value * 1e3:8.2f}"

    print(
        f"GPU evidence verification, 1 GPU, real H100 vector (545.00 + test RIMs) at {PIN}Z, revocation off"
    )
    print(f"runs per figure: {args.runs}; python {sys.version.split()[0]}; {os.cpu_count()} CPUs visible\n")
    print("| tool                      | import ms | first call ms | median cold ms | median warm ms |")
    print("|---------------------------|----------:|--------------:|---------------:|---------------:|")
    print(
        f"| ccai                      | {ms(ccai['import_s'])} | {ms(ccai['first'])} | {ms(ccai['cold'])} | "
        f"{ms(ccai['warm'])} |"
    )
    if nvidia is not None:
        print(
            f"| nv-local-gpu-verifier 2.7 | {ms(nvidia['import_s'])} | {ms(nvidia['first'])} | "
            f"{ms(nvidia['cold'])} | {ms(nvidia['warm'])} |"
        )
        print(
            f"| ratio NVIDIA / ccai       |           | {nvidia['first'] / ccai['first']:12.1f}x | "
            f"{nvidia['cold'] / ccai['cold']:13.1f}x | {nvidia['warm'] / ccai['warm']:13.1f}x |"
        )
    else:
        print("| nv-local-gpu-verifier     | not installed (see the module docstring) |")
    print(
        f"\ngoals (DESIGN.md): warm <= 5 ms -> {'met' if ccai['warm'] <= 0.005 else 'NOT met'}; "
        f"cold <= 50 ms -> {'met' if ccai['cold'] <= 0.050 else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
