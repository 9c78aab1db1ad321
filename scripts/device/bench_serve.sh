#!/usr/bin/env bash
# A/A serving sweep on one GPU: a random ~1.2B-parameter Llama (Llama-3.2-1B shapes, 128k vocabulary)
# served by `transformers serve` (continuous batching), swept over concurrency 4…64 at 1024/128 and
# 8192/128 input/output tokens, both arms the same server (the noise floor). Results under $OUT:
# table.txt (NVIDIA layout), cells/*.json (sglang field names), runs.csv, deltas.csv, manifest.json.
# Sized for one ~10-minute device call: each I/O length is its own sweep with its own time limit,
# so a slow second half still leaves the first one's results.
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
WHL=${WHL:-.whl}   # the lead's wheel folder (cryptography, …); WHL=none skips it
if [ -d "$WHL" ]; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site "$WHL"/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD/src
export CCAI_CACHE=/tmp/ccai-cache HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 COLUMNS=220
PORT=${PORT:-8765}
URL=http://127.0.0.1:$PORT
# Overridable for a CPU dry run of the plumbing: SPEC=llama:tiny DEVICE=cpu CONC=1,2 IOS="32/8 64/8".
SPEC=${SPEC:-llama:1b}
DEVICE=${DEVICE:-cuda}
CONC=${CONC:-4,8,16,32,64}

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nvidia-smi conf-compute -f 2>&1 || true; \
  python3 -c "import torch, transformers, httpx; print('torch', torch.__version__, 'transformers', transformers.__version__, 'httpx', httpx.__version__)"; \
  python3 -c "import openai, fastapi, uvicorn; print('serving deps ok')" 2>&1; } | tee "$OUT/env.txt"

# 1. The engine (creates the random weights once, ~2.4 GB bf16, then starts transformers serve).
python3 - > "$OUT/engine.log" 2>&1 <<PY &
import typer
from ccai.cli.dev import app
typer.main.get_group(app)(["engine", "--random", "$SPEC", "--device", "$DEVICE", "--dtype", "bfloat16",
                           "--port", "$PORT", "--json"], standalone_mode=True)
PY
ENGINE_PID=$!
trap 'pkill -TERM -P $ENGINE_PID 2>/dev/null; kill $ENGINE_PID 2>/dev/null; true' EXIT
for _ in $(seq 1 240); do
  curl -sf "$URL/health" >/dev/null 2>&1 && break
  kill -0 $ENGINE_PID 2>/dev/null || { echo "engine exited"; cat "$OUT/engine.log"; exit 1; }
  sleep 1
done
MODEL=$(ls -d "$CCAI_CACHE"/random-models/"${SPEC/:/-}"-bfloat16-seed0)
echo "engine up: $URL model $MODEL after ${SECONDS}s" | tee -a "$OUT/env.txt"

sweep() {  # $1 = io, $2 = time limit (s), $3 = requests per unit of concurrency
  timeout "$2" python3 - > "$OUT/sweep_${1/\//x}.log" 2>&1 <<PY
import typer
from ccai.cli.bench import app
typer.main.get_group(app)(["serve", "--url", "$URL", "--baseline-url", "$URL", "--model", "$MODEL",
    "--concurrency", "$CONC", "--io", "$1", "--repeats", "2", "--prompts-per-concurrency", "$3",
    "--warmup-requests", "8", "--check-prompts", "4", "--timeout", "300", "-o", "$OUT/io_${1/\//x}"])
PY
  echo "sweep $1 exit $? after ${SECONDS}s" | tee -a "$OUT/env.txt"
  cat "$OUT/io_${1/\//x}/table.txt" 2>/dev/null || tail -20 "$OUT/sweep_${1/\//x}.log"
}
if [ -n "${IOS:-}" ]; then
  for io in $IOS; do sweep "$io" 200 2; done
else
  sweep 1024/128 200 2
  sweep 8192/128 250 1
fi
