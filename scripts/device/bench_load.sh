#!/usr/bin/env bash
# Sealed-model load benchmark on the GPU machine (one H100, 16 vCPUs, page cache warm). ≤ 4 minutes.
#
# Runs in the repository root, in two parts on synthetic 8 GiB bf16 safetensors models:
#  1. benchmarks/bench_load_breakdown.py (≤ ~90 s): threads {8,12,16} × chunk {16,64} MiB —
#     (a) CPU-only decrypt_into from the mmap into pinned buffers, (b) CPU-only memcpy, (c) H2D alone
#     from a pinned pool over 1/2/4 streams, (d) the full plaintext and sealed pipelines, plus at
#     16 threads × 64 MiB the pipelines with early unmapping, 2 copy streams and 4 slots per thread.
#  2. benchmarks/bench_load.py: stock safetensors.load_file(device="cuda") vs ccai's plaintext
#     pipeline vs the sealed load, threads {12,16,24} × chunk {16,64} MiB, median of 5 (after one
#     warm-up), sealing time per chunk size, and the bit-identical check.
# Writes under $OUT:
#   env.txt                            torch / CUDA / cryptography / OpenSSL / CPU topology / nvidia-smi
#   breakdown.txt / breakdown.json     part 1's table (and the per-setting summary at its end)
#   bench_load.txt / bench_load.json   part 2's table and the full report
#   log.txt                            progress lines and exit statuses of both parts
#   openssl_speed.txt                  `openssl speed` AES-256-GCM, one process, 16 MiB blocks (reference)
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD/src
OUT=${OUT:-/tmp/ccai-bench-load}
mkdir -p "$OUT"

{
  python3 -c 'import torch, cryptography, safetensors, numpy; from cryptography.hazmat.backends.openssl import backend as b; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0)); print("cryptography", cryptography.__version__, b.openssl_version_text()); print("safetensors", safetensors.__version__, "numpy", numpy.__version__)'
  nproc; uname -r
  lscpu | grep -E "Model name|^CPU\(s\)|Thread\(s\) per core|Core\(s\) per socket|Socket\(s\)|NUMA|L2 cache|L3 cache|Flags" | cut -c1-200
  free -g; df -h /tmp /dev/shm
  nvidia-smi --query-gpu=name,driver_version,pcie.link.gen.current,pcie.link.width.current,memory.total --format=csv
  nvidia-smi topo -m
} >"$OUT/env.txt" 2>&1

# Scratch on the disk the page cache fronts (plaintext + 2 sealed copies ≈ 24 GiB, one part at a time).
WORK=$(mktemp -d /tmp/ccai-load.XXXXXX)
echo "== breakdown $(date +%T)" >>"$OUT/log.txt"
timeout 100 python3 benchmarks/bench_load_breakdown.py --size-gib 8 --device cuda \
  --threads 8,12,16 --chunk-mib 16,64 --repeats 3 --workdir "$WORK" \
  --json "$OUT/breakdown.json" >"$OUT/breakdown.txt" 2>>"$OUT/log.txt"
echo "breakdown rc=$?" >>"$OUT/log.txt"
rm -rf "$WORK"/*

echo "== bench_load $(date +%T)" >>"$OUT/log.txt"
timeout 150 python3 benchmarks/bench_load.py --size-gib 8 --device cuda \
  --threads 12,16,24 --chunk-mib 16,64 --repeats 5 --workdir "$WORK" \
  --json "$OUT/bench_load.json" >"$OUT/bench_load.txt" 2>>"$OUT/log.txt"
echo "bench_load rc=$? $(date +%T)" >>"$OUT/log.txt"
rm -rf "$WORK"

timeout 15 openssl speed -elapsed -seconds 2 -bytes 16777216 -evp aes-256-gcm >"$OUT/openssl_speed.txt" 2>&1 || true
cat "$OUT/breakdown.txt" "$OUT/bench_load.txt" "$OUT/log.txt"
