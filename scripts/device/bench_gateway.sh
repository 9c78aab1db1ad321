#!/usr/bin/env bash
# Overhead of the confidential gateway on one GPU: `transformers serve` on a random ~1.2B-parameter Llama
# (Llama-3.2-1B shapes) directly (arm B) vs through `ccai serve gateway --upstream-cmd` with EHBP through
# the verifying client (arm A: `ccai bench serve --ehbp --allow-simulated`), A/B interleaved with paired
# 95 % CIs, concurrency 4…64 at 1024/128 input/output tokens.
# Both arms hit the SAME engine process: the gateway unseals the model into RAM and starts the engine
# on a loopback port (`ccai dev engine {model_dir} --port {port} --settings-file …`); arm B sends to that
# port directly, arm A to the gateway, which forwards to it. The gateway runs on the virtual TDX VM with
# one virtual H100 (`--simulate tdx --gpus 1`: evidence from the test PKI; the real H100 is untouched,
# CC mode off) — what is measured is the gateway hop plus EHBP, with the client's encryption and
# decryption inside every request's time.
# Sized for ONE device call of at most ~540 s: ~10 s set-up, random weights + sealing ~40 s, gateway
# boot (unseal into /dev/shm, engine start) ~60-100 s, then the sweep with a --max-duration budget
# (it starts no run that would end past it; unreached cells show "not run") and a hard `timeout`.
# Needs, besides torch/transformers/httpx/typer/rich/openai/fastapi/uvicorn: cryptography, signxml,
# lxml, pyhpke, prometheus_client (wheels in $WHL, default .whl).
# CPU dry run of the plumbing: SPEC=llama:tiny DEVICE=cpu CONC=1,2 IO=32/8 BUDGET=60 OUT=/tmp/o \
#   bash scripts/device/bench_gateway.sh
# Results under $OUT (few files):
#   env.txt          GPU, driver, CC mode, versions, missing modules, timings
#   engine.json      the engine's effective settings (URL, model, attention, argv)
#   gateway.json     the gateway's ready document (boot seconds per state, HPKE key, simulated)
#   gateway_tail.log the last 150 lines of the gateway's and the engine's log
#   io_<in>x<out>/   table.txt, runs.csv, deltas.csv, runs.jsonl, manifest.json (arm A: EHBP and its
#                    attestation summary), cells/*.json, sweep.log (one line per finished run)
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
WHL=${WHL:-.whl}   # the lead's wheel folder; WHL=none skips it
if [ -d "$WHL" ]; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site "$WHL"/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD/src
export CCAI_CACHE=${CCAI_CACHE:-/tmp/ccai-cache} CCAI_HOME=${CCAI_HOME:-/tmp/ccai-home-gw}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 COLUMNS=220 PYTHONUNBUFFERED=1
GW_PORT=${GW_PORT:-8766}
GW=http://127.0.0.1:$GW_PORT
SPEC=${SPEC:-llama:1b}
DEVICE=${DEVICE:-cuda}
CONC=${CONC:-4,8,16,32,64}
IO=${IO:-1024/128}
BUDGET=${BUDGET:-300}              # seconds of sweep (new runs); the hard limit is 30 s above it
ATTN=${ATTN:-auto}                 # auto = flash attention when installed, else sdpa
ENGINE_EXTRA=${ENGINE_EXTRA:-}     # e.g. "--cuda-graphs" or "--max-batch-tokens 4096"
GW_LOG=/tmp/ccai-gateway.log
WORK=$(mktemp -d /tmp/ccai-gw.XXXXXX)

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1; nvidia-smi conf-compute -f 2>&1 || true; \
  python3 -c "import torch, transformers, httpx; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'httpx', httpx.__version__)"; \
  python3 -c "import importlib.util as u; print('flash_attn', bool(u.find_spec('flash_attn')))"; \
  python3 -c "import importlib.util as u; m=[n for n in ('openai','fastapi','uvicorn','pyhpke','prometheus_client','cryptography','signxml','lxml') if not u.find_spec(n)]; print('missing modules:', ' '.join(m) or 'none')"; \
  } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
grep -q "missing modules: none" "$OUT/env.txt" || { echo "install the missing modules (wheels in \$WHL)"; exit 1; }

# 1. Random weights (cached under $CCAI_CACHE), sealed with a fresh KEK.
python3 - "$SPEC" "$WORK" <<'PY' || exit 1
import sys, time
from pathlib import Path
from ccai._embedded_model import ccai_cache
from ccai.openai_protocol import random_model_dir
from ccai.sealed import new_kek, seal, write_kek
spec, work = sys.argv[1], Path(sys.argv[2])
t0 = time.monotonic()
plain = random_model_dir(spec, cache=ccai_cache(), dtype="bfloat16")
t1 = time.monotonic()
kek = new_kek()
write_kek(kek, work / "kek.json")
seal(plain, work / "model.sealed", kek)
print(f"random {spec} weights in {t1 - t0:.0f} s, sealed in {time.monotonic() - t1:.0f} s: {plain}")
PY
echo "model sealed after ${SECONDS}s" | tee -a "$OUT/env.txt"

# 2. The gateway: boots on the virtual TDX VM, unseals into RAM, starts the engine on a loopback port.
ENGINE_CMD="python3 -m ccai.cli dev engine {model_dir} --port {port} --device $DEVICE --dtype bfloat16 \
--attn-implementation $ATTN --settings-file $OUT/engine.json $ENGINE_EXTRA"
python3 -m ccai.cli serve gateway --model "$WORK/model.sealed" --kek "$WORK/kek.json" \
  --simulate tdx --gpus 1 --port "$GW_PORT" --upstream-cmd "$ENGINE_CMD" --engine-timeout 400 --json \
  > "$OUT/gateway.json" 2> "$GW_LOG" &
GW_PID=$!
finish() {
  tail -n 150 "$GW_LOG" > "$OUT/gateway_tail.log" 2>/dev/null
  kill -TERM $GW_PID 2>/dev/null   # the gateway stops the engine's process group and removes the RAM copy
  for _ in $(seq 1 30); do kill -0 $GW_PID 2>/dev/null || break; sleep 1; done
  kill -KILL $GW_PID 2>/dev/null
  rm -rf "$WORK"
  true
}
trap finish EXIT
for _ in $(seq 1 420); do
  [ -s "$OUT/engine.json" ] && curl -sf "$GW/health" >/dev/null 2>&1 && break
  kill -0 $GW_PID 2>/dev/null || { echo "gateway exited"; tail -n 40 "$GW_LOG"; exit 1; }
  sleep 1
done
curl -sf "$GW/health" >/dev/null 2>&1 || { echo "gateway not ready"; tail -n 40 "$GW_LOG"; exit 1; }
ENGINE_URL=$(python3 -c "import json; print(json.load(open('$OUT/engine.json'))['url'])")
MODEL=$(python3 -c "import json; print(json.load(open('$OUT/engine.json'))['model'])")
echo "gateway ready after ${SECONDS}s: $GW in front of $ENGINE_URL model $MODEL" | tee -a "$OUT/env.txt"
python3 -c "import json; print('engine settings', json.dumps(json.load(open('$OUT/engine.json'))['settings']))" | tee -a "$OUT/env.txt"

# 3. The sweep: arm A = the gateway with EHBP (attested first), arm B = the same engine directly.
dir="$OUT/io_${IO/\//x}"
mkdir -p "$dir"
timeout -s TERM -k 15 "$(( BUDGET + 30 ))" python3 - 2>&1 <<PY | tee "$dir/sweep.log" | grep -E "^run |^ccai|rror|SIMULATED|HPKE key"
import typer
from ccai.cli.bench import app
typer.main.get_group(app)(["serve", "--url", "$GW", "--ehbp", "--allow-simulated",
    "--baseline-url", "$ENGINE_URL", "--model", "$MODEL",
    "--concurrency", "$CONC", "--io", "$IO", "--repeats", "2", "--prompts-per-concurrency", "1",
    "--check-prompts", "2", "--timeout", "120", "--max-duration", "$BUDGET",
    "--no-plots", "-o", "$dir"])
PY
echo "sweep $IO exit ${PIPESTATUS[0]} after ${SECONDS}s" | tee -a "$OUT/env.txt"
cat "$dir/table.txt" 2>/dev/null || echo "(no table for $IO)"
echo "total ${SECONDS}s" | tee -a "$OUT/env.txt"
