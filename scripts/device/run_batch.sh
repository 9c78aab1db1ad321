#!/usr/bin/env bash
# Run several device scripts in one GPU session and pack their outputs into one archive.
# Usage (repo root, on the GPU machine): scripts/device/run_batch.sh gpu_status bench_load ...
# Each script NAME runs as scripts/device/NAME.sh with OUT=$OUT/NAME; everything is packed into
# $OUT/results.tar.gz (the device tool returns at most 8 files) and the main results are printed.
set -uo pipefail
FINAL=${OUT:-/tmp/ccai-device}
STAGE=$(mktemp -d /tmp/ccai-batch.XXXXXX)
for name in "$@"; do
  echo "=== $name ($(date -u +%H:%M:%S))"
  mkdir -p "$STAGE/$name"
  OUT="$STAGE/$name" bash "scripts/device/$name.sh" 2>&1 | tail -n 60
  echo "=== $name rc=${PIPESTATUS[0]}"
done
tar -C "$STAGE" -czf "$FINAL/results.tar.gz" .
