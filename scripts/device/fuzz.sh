#!/usr/bin/env bash
# Long fuzzing run on the device machine's many cores (docs/fuzzing.md): every target in parallel.
# Usage (repo root, on the device machine, wheels for cryptography/signxml/pydantic/atheris in .whl):
#   SECONDS_PER_TARGET=540 JOBS=24 bash scripts/device/fuzz.sh [TARGET...]   (default: every target)
# Prints the per-target summary (target executions crashes); crash inputs go to $OUT/crashes.tar.gz.
set -uo pipefail
OUT=${OUT:-/tmp/ccai-fuzz}
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
nproc
python3 -c 'import atheris, cryptography, signxml, pydantic; print("atheris", atheris.__version__ if hasattr(atheris, "__version__") else "?", "cryptography", cryptography.__version__)'
mkdir -p "$OUT/crashes" "$OUT/logs"
PYTHON=python3 PYTHONUNBUFFERED=1 scripts/fuzz --engine atheris --seconds "${SECONDS_PER_TARGET:-540}" \
  --jobs "${JOBS:-$(nproc)}" --crash-dir "$OUT/crashes" --log-dir "$OUT/logs" "$@" 2>&1 | tee "$OUT/summary.txt"
rc=${PIPESTATUS[0]}
tar -C "$OUT" -czf "$OUT/crashes.tar.gz" crashes logs
rm -rf "$OUT/crashes" "$OUT/logs"
exit "$rc"
