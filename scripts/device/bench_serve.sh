#!/usr/bin/env bash
# A/A serving sweep on one GPU: a random ~1.2B-parameter Llama (Llama-3.2-1B shapes, 128k vocabulary)
# served by `transformers serve` (continuous batching), swept over concurrency 4…64 at 1024/128 and
# 8192/128 input/output tokens, both arms the same server (the noise floor).
# Sized for ONE device call of at most ~540 s: ~10 s set-up, ~45 s engine start, then one sweep per I/O
# length, each with a --max-duration budget (it starts no run that would end past it and marks the
# cells it did not reach "not run") and a hard `timeout` a little above it. The sweep rewrites its
# result files after every run, so even a killed sweep leaves every finished run.
# Results under $OUT (few files):
#   env.txt                 GPU, driver, CC mode, versions, flash-attn availability, timings
#   engine.json             the engine's effective settings (attention, CUDA graphs, batch tokens, argv)
#   engine_cb.txt           transformers' continuous-batching log lines (resolved cache / graphs / attention)
#   engine_tail.log         the last 150 lines of the engine log
#   io_<in>x<out>/          per I/O length: table.txt, runs.csv, deltas.csv, runs.jsonl, manifest.json,
#                           cells/*.json, sweep.log (one line per finished run)
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
WHL=${WHL:-.whl}   # the lead's wheel folder (cryptography, …); WHL=none skips it
if [ -d "$WHL" ]; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site "$WHL"/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD/src
export CCAI_CACHE=/tmp/ccai-cache HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 COLUMNS=220 PYTHONUNBUFFERED=1
PORT=${PORT:-8765}
URL=http://127.0.0.1:$PORT
# Overridable, e.g. for a CPU dry run of the plumbing: SPEC=llama:tiny DEVICE=cpu CONC=1,2 IOS="32/8".
SPEC=${SPEC:-llama:1b}
DEVICE=${DEVICE:-cuda}
CONC=${CONC:-4,8,16,32,64}
ATTN=${ATTN:-auto}                 # auto = flash attention when installed, else sdpa
ENGINE_EXTRA=${ENGINE_EXTRA:-}     # e.g. "--cuda-graphs" or "--max-batch-tokens 4096"
ENGINE_LOG=/tmp/ccai-engine.log

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1; nvidia-smi conf-compute -f 2>&1 || true; \
  python3 -c "import torch, transformers, httpx; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'httpx', httpx.__version__)"; \
  python3 -c "import importlib.util as u; print('flash_attn', bool(u.find_spec('flash_attn')), 'flash_attn_interface (FA3)', bool(u.find_spec('flash_attn_interface')), 'kernels', bool(u.find_spec('kernels')))"; \
  python3 -c "import openai, fastapi, uvicorn; print('serving deps ok')" 2>&1 | tail -1; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# 1. The engine (creates the random weights once, ~2.4 GB bf16, then starts transformers serve).
python3 - > "$ENGINE_LOG" 2>&1 <<PY &
import typer
from ccai.cli.dev import app
typer.main.get_group(app)(["engine", "--random", "$SPEC", "--device", "$DEVICE", "--dtype", "bfloat16",
                           "--port", "$PORT", "--attn-implementation", "$ATTN",
                           "--settings-file", "$OUT/engine.json", "--json", *"$ENGINE_EXTRA".split()],
                          standalone_mode=True)
PY
ENGINE_PID=$!
finish() {
  grep -iE "cuda graph|paged cache|max_batch_tokens|async_batching|flash|attention|compile|Error|Traceback" \
    "$ENGINE_LOG" | grep -v "Request received" | head -n 60 > "$OUT/engine_cb.txt" 2>/dev/null
  tail -n 150 "$ENGINE_LOG" > "$OUT/engine_tail.log" 2>/dev/null
  pkill -TERM -P $ENGINE_PID 2>/dev/null; kill $ENGINE_PID 2>/dev/null; true
}
trap finish EXIT
for _ in $(seq 1 240); do
  [ -s "$OUT/engine.json" ] && curl -sf "$URL/health" >/dev/null 2>&1 && break
  kill -0 $ENGINE_PID 2>/dev/null || { echo "engine exited"; tail -n 40 "$ENGINE_LOG"; exit 1; }
  sleep 1
done
MODEL=$(python3 -c "import json; print(json.load(open('$OUT/engine.json'))['model'])")
echo "engine up after ${SECONDS}s: $URL model $MODEL" | tee -a "$OUT/env.txt"
python3 -c "import json; print('engine settings', json.dumps(json.load(open('$OUT/engine.json'))['settings']))" | tee -a "$OUT/env.txt"

sweep() {  # $1 = io, $2 = budget for new runs (s); the hard limit is 30 s above it
  local dir="$OUT/io_${1/\//x}"
  mkdir -p "$dir"
  timeout -s TERM -k 15 "$(( $2 + 30 ))" python3 - 2>&1 <<PY | tee "$dir/sweep.log" | grep -E "^run |^ccai|rror"
import typer
from ccai.cli.bench import app
typer.main.get_group(app)(["serve", "--url", "$URL", "--baseline-url", "$URL", "--model", "$MODEL",
    "--concurrency", "$CONC", "--io", "$1", "--repeats", "2", "--prompts-per-concurrency", "1",
    "--warmup-requests", "4", "--check-prompts", "2", "--timeout", "120", "--max-duration", "$2",
    "--no-plots", "-o", "$dir"])
PY
  echo "sweep $1 exit ${PIPESTATUS[0]} after ${SECONDS}s" | tee -a "$OUT/env.txt"
  cat "$dir/table.txt" 2>/dev/null || echo "(no table for $1)"
}
if [ -n "${IOS:-}" ]; then
  for io in $IOS; do sweep "$io" "${BUDGET:-120}"; done
else
  sweep 1024/128 200
  sweep 8192/128 210
fi
echo "total ${SECONDS}s" | tee -a "$OUT/env.txt"
