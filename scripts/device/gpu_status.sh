#!/usr/bin/env bash
# Read the real NVML CC state on a GPU machine with ccai, and probe every NVML CC call raw.
#
# Runs in the repository root. Writes under $OUT:
#   ccai_status.json / .txt / .rc   `ccai gpu status --json` and the human view
#   ccai_evidence.txt / .rc         `ccai gpu evidence` (expected: exit 4 with a clear reason if CC is off)
#   ccai_set_mode.txt / .rc         `ccai gpu set-mode on` (expected: exit 4 with the host-side recipe)
#   nvml_probe.json                 each NVML CC call made directly: value or NVML error code/name
#   nvml_report.bin / nvml_chain.pem   the raw attestation report / chain, if the GPU gives them
#   nvidia_smi_cc.txt               `nvidia-smi conf-compute -q` / `-f` for comparison
#   timing.txt                      NVML init + status() latency (median of 20)
set -uo pipefail
OUT=${OUT:-/tmp/ccai-gpu-status}
mkdir -p "$OUT"

python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl 2>"$OUT/pip.txt" || true
export PYTHONPATH=/tmp/site:$PWD/src

NONCE=931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb

(nvidia-smi conf-compute -q; nvidia-smi conf-compute -f; nvidia-smi -q | head -40) >"$OUT/nvidia_smi_cc.txt" 2>&1

python3 -m ccai.cli gpu status --json >"$OUT/ccai_status.json" 2>"$OUT/ccai_status.err"
echo $? >"$OUT/ccai_status.rc"
COLUMNS=120 python3 -m ccai.cli gpu status >"$OUT/ccai_status.txt" 2>&1

python3 -m ccai.cli gpu evidence --nonce "$NONCE" -o "$OUT/ccai_evidence.json" --json >"$OUT/ccai_evidence.txt" 2>&1
echo $? >"$OUT/ccai_evidence.rc"
python3 -m ccai.cli gpu set-mode on >"$OUT/ccai_set_mode.txt" 2>&1
echo $? >"$OUT/ccai_set_mode.rc"

python3 - "$OUT" "$NONCE" <<'EOF' >"$OUT/nvml_probe.json" 2>"$OUT/nvml_probe.err"
import ctypes, json, statistics, sys, time
from pathlib import Path

import pynvml

out, nonce = Path(sys.argv[1]), bytes.fromhex(sys.argv[2])
codes = {getattr(pynvml, n): n for n in dir(pynvml) if n.startswith("NVML_ERROR_")}
result = {"pynvml": getattr(pynvml, "__version__", None)}


def probe(name, fn, *args, conv=lambda v: v):
    try:
        result[name] = {"ok": conv(fn(*args))}
    except pynvml.NVMLError as exc:
        result[name] = {"error": codes.get(exc.value, exc.value), "message": str(exc)}
    except Exception as exc:  # a binding problem, recorded rather than fatal
        result[name] = {"exception": f"{type(exc).__name__}: {exc}"}


def fields(s):
    return {f: (getattr(s, f) if not hasattr(getattr(s, f), "__len__") else len(getattr(s, f))) for f, _ in s._fields_}


pynvml.nvmlInit()
probe("nvmlSystemGetDriverVersion", pynvml.nvmlSystemGetDriverVersion)


def settings():
    s = pynvml.c_nvmlSystemConfComputeSettings_v1_t()
    ret = pynvml.nvmlSystemGetConfComputeSettings(ctypes.byref(s))
    if ret != pynvml.NVML_SUCCESS:
        raise pynvml.NVMLError(ret)
    return s


probe("nvmlSystemGetConfComputeSettings", settings, conv=fields)
probe("nvmlSystemGetConfComputeState", pynvml.nvmlSystemGetConfComputeState, conv=fields)
probe("nvmlSystemGetConfComputeCapabilities", pynvml.nvmlSystemGetConfComputeCapabilities, conv=fields)
probe("nvmlSystemGetConfComputeGpusReadyState", pynvml.nvmlSystemGetConfComputeGpusReadyState)
probe(
    "nvmlSystemGetConfComputeKeyRotationThresholdInfo",
    pynvml.nvmlSystemGetConfComputeKeyRotationThresholdInfo,
    conv=fields,
)
count = pynvml.nvmlDeviceGetCount()
result["count"] = count
for i in range(count):
    h = pynvml.nvmlDeviceGetHandleByIndex(i)
    p = f"gpu{i}."
    probe(p + "nvmlDeviceGetName", pynvml.nvmlDeviceGetName, h)
    probe(p + "nvmlDeviceGetUUID", pynvml.nvmlDeviceGetUUID, h)
    probe(p + "nvmlDeviceGetArchitecture", pynvml.nvmlDeviceGetArchitecture, h)
    probe(p + "nvmlDeviceGetVbiosVersion", pynvml.nvmlDeviceGetVbiosVersion, h)
    probe(p + "nvmlDeviceGetBoardId", pynvml.nvmlDeviceGetBoardId, h, conv=hex)
    probe(p + "nvmlDeviceGetConfComputeMemSizeInfo", pynvml.nvmlDeviceGetConfComputeMemSizeInfo, h, conv=fields)
    probe(
        p + "nvmlDeviceGetConfComputeProtectedMemoryUsage",
        pynvml.nvmlDeviceGetConfComputeProtectedMemoryUsage,
        h,
        conv=fields,
    )

    def report(h=h, i=i):
        r = pynvml.nvmlDeviceGetConfComputeGpuAttestationReport(h, nonce)
        raw = bytes(r.attestationReport[: r.attestationReportSize])
        (out / f"nvml_report{i}.bin").write_bytes(raw)
        return {"size": r.attestationReportSize, "cec_present": r.isCecAttestationReportPresent}

    def chain(h=h, i=i):
        c = pynvml.nvmlDeviceGetConfComputeGpuCertificate(h)
        raw = bytes(c.attestationCertChain[: c.attestationCertChainSize])
        (out / f"nvml_chain{i}.pem").write_bytes(raw)
        return {"size": c.attestationCertChainSize, "cert_chain_size": c.certChainSize, "head": raw[:40].hex()}

    probe(p + "nvmlDeviceGetConfComputeGpuAttestationReport", report)
    probe(p + "nvmlDeviceGetConfComputeGpuCertificate", chain)
pynvml.nvmlShutdown()

# Latency of ccai's status read (NVML init + status + shutdown), median of 20; informational only.
from ccai.device import NvmlBackend

times = []
for _ in range(20):
    t = time.perf_counter()
    with NvmlBackend.open() as gpu:
        gpu.status()
    times.append(time.perf_counter() - t)
(out / "timing.txt").write_text(
    f"NvmlBackend open+status+close: median {statistics.median(times) * 1e3:.2f} ms, "
    f"min {min(times) * 1e3:.2f} ms, max {max(times) * 1e3:.2f} ms over {len(times)} runs\n"
)
print(json.dumps(result, indent=2, default=str))
EOF
echo $? >"$OUT/nvml_probe.rc"

for f in ccai_status.rc ccai_status.json ccai_status.err ccai_evidence.rc ccai_evidence.txt ccai_set_mode.rc \
         ccai_set_mode.txt nvml_probe.rc timing.txt; do
  echo "== $f"; cat "$OUT/$f" 2>/dev/null
done
