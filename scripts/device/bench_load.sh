#!/usr/bin/env bash
# Sealed-model load benchmark on the GPU machine (one H100, 16 cores, page cache warm).
#
# Runs in the repository root. Measures, on one synthetic 8 GiB bf16 safetensors model:
# stock safetensors.load_file(device="cuda"), ccai's pipeline without decryption, and ccai's
# sealed load (AES-256-GCM), sweeping threads {8, 12, 16, 24, 32} × chunk size {16, 64} MiB (4 MiB
# chunks were measured slower on this machine: per-chunk overhead), plus the sealing time per chunk
# size (parallel sealing: files at once, SHA-256 beside reading) and the bit-identical check.
# Writes under $OUT:
#   bench_load.txt / bench_load.json   the table and the full report (`benchmarks/bench_load.py`)
#   env.txt                            torch / CUDA / cryptography / OpenSSL / CPU / nvidia-smi
#   openssl_speed.txt                  `openssl speed` AES-256-GCM, 1 and 16 processes (reference)
#   bench_load.rc                      exit status of the benchmark
# Budget: ~1 min set-up (8 GiB write + 2 seals), ~1 min measuring; `timeout 280` caps it.
set -uo pipefail
python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD/src
OUT=${OUT:-/tmp/ccai-bench-load}
mkdir -p "$OUT"

{
  python3 -c 'import torch, cryptography, safetensors, numpy; from cryptography.hazmat.backends.openssl import backend as b; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0)); print("cryptography", cryptography.__version__, b.openssl_version_text()); print("safetensors", safetensors.__version__, "numpy", numpy.__version__)'
  nproc; lscpu | grep -E "Model name|^CPU\(s\)|Flags" | cut -c1-200
  free -g; df -h /tmp /dev/shm
  nvidia-smi --query-gpu=name,driver_version,pcie.link.gen.current,pcie.link.width.current,memory.total --format=csv
} >"$OUT/env.txt" 2>&1

# Scratch on the disk the page cache fronts (2 sealed copies + plaintext ≈ 24 GiB).
WORK=$(mktemp -d /tmp/ccai-load.XXXXXX)
timeout 280 python3 benchmarks/bench_load.py --size-gib 8 --device cuda \
  --threads 8,12,16,24,32 --chunk-mib 16,64 --repeats 3 --workdir "$WORK" \
  --json "$OUT/bench_load.json" >"$OUT/bench_load.txt" 2>"$OUT/bench_load.stderr"
echo $? >"$OUT/bench_load.rc"
rm -rf "$WORK"

timeout 30 openssl speed -elapsed -seconds 2 -bytes 16777216 -evp aes-256-gcm >"$OUT/openssl_speed.txt" 2>&1 || true
cat "$OUT/bench_load.txt"
