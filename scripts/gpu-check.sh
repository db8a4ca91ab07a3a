#!/usr/bin/env bash
# The GPU check, in one command: the fast decode path's correctness against the eager path (with the worker's own
# decode self-check, DECODE_PATH=auto's), then the benchmark (bench/gpu_bench.py) on the full-size random-weight
# model in bf16, then the self-benchmark users run (`higgs-worker bench --random`), within a time budget (about
# 8 minutes).
#
#   scripts/gpu-check.sh                 # on the GPU machine (python3 with torch there; the wheels in .whl/)
#   scripts/gpu-check.sh --tiny          # the whole script on the CPU with the tiny config (a few seconds)
#   scripts/gpu-check.sh --no-wheels     # a GPU machine whose environment already has the project's dependencies
#   scripts/gpu-check.sh -- --frames 100 # anything after -- goes to bench/gpu_bench.py (later flags win)
#
# Writes results-gpu.json, bench.json and gpu-check.log into $OUT (default: the current folder). The wheels come
# from scripts/gpu-wheels.sh: the GPU machine has no network, so they travel in the ignored .whl/ folder.
# Exit status: 0 when every part ran (an inequality in the check is recorded, not an error), 124 when the time
# budget ran out (the JSON keeps what was measured), else the first failing part's.
set -euo pipefail
cd "$(dirname "$0")/.."

tiny=0
wheels=1
budget=420  # seconds for both benches; the install and the version print take well under a minute
self_bench=60  # of which `higgs-worker bench` gets its own budget, plus a minute to build its model
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --tiny) tiny=1; wheels=0 ;;
    --no-wheels) wheels=0 ;;
    --budget) budget="$2"; shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "gpu-check: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

out="${OUT:-.}"
mkdir -p "$out"
json="$out/results-gpu.json"
bench_json="$out/bench.json"
log="$out/gpu-check.log"
site="${GPU_CHECK_SITE:-/tmp/site}"
export PYTHONUNBUFFERED=1 PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1

if [ "$wheels" = 1 ]; then
  python=python3
elif [ -x .venv/bin/python ]; then
  python=.venv/bin/python
else
  python=python3
fi

step() { echo "== gpu-check: $* ($(date -u +%H:%M:%S))"; }

install_wheels() {
  shopt -s nullglob
  local found=(.whl/*.whl) fallback=(.whl/fallback/*.whl)
  shopt -u nullglob
  if [ ${#found[@]} -eq 0 ]; then
    echo "gpu-check: FAILED: no wheels in .whl/ - run scripts/gpu-wheels.sh where there is network, and carry" \
         ".whl/ with the tree (or pass --no-wheels where the environment is complete, --tiny on a CPU)" >&2
    return 1
  fi
  step "installing ${#found[@]} carried wheels into $site"
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
    "${found[@]}"
  export PYTHONPATH="$site:$PWD/src"
  if ! "$python" -c "import transformers.models.higgs_audio_v2" 2>/dev/null; then
    if [ ${#fallback[@]} -eq 0 ]; then
      "$python" -c "import transformers.models.higgs_audio_v2"  # shows why
      return 1
    fi
    step "transformers does not import with this machine's packages: adding ${#fallback[@]} fallback wheels"
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
      "${fallback[@]}"
    "$python" -c "import transformers.models.higgs_audio_v2"
  fi
}

main() {
  step "start: $(date -u +%Y-%m-%dT%H:%M:%SZ), ${HOSTNAME:-unknown host}, tiny=$tiny, budget ${budget}s"
  if [ "$wheels" = 1 ]; then
    install_wheels
  else
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
  fi
  step "device"
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi || true
  else
    echo "no nvidia-smi on this machine"
  fi
  step "versions"
  GPU_CHECK_TINY=$tiny "$python" - <<'PY'
import os, platform, sys
import torch, transformers, pydantic
print(f"python {platform.python_version()} ({sys.executable})")
print(f"torch {torch.__version__} (cuda {torch.version.cuda}), available: {torch.cuda.is_available()}"
      + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""))
print(f"transformers {transformers.__version__} ({transformers.__file__})")
print(f"pydantic {pydantic.__version__}")
import higgs_worker.engine.scheduler  # noqa: F401 - the engine imports with these versions
print("higgs_worker engine: imports")
if os.environ["GPU_CHECK_TINY"] != "1" and not torch.cuda.is_available():
    sys.exit("gpu-check: FAILED: torch sees no GPU here (--tiny runs the check on the CPU with the tiny config)")
PY
  local self_timeout=$((self_bench + 60))
  local gpu_timeout=$((budget - self_timeout > 60 ? budget - self_timeout : 60))
  local args=(--check --json "$json" --budget-s "$((gpu_timeout - 90 > 30 ? gpu_timeout - 90 : 30))")
  local bench_args=(--json --out "$bench_json" --budget "$self_bench")
  if [ "$tiny" = 1 ]; then
    args+=(--tiny --device cpu --frames 16 --batches "1,4" --check-frames 12 --ttfa-frames 4)
    bench_args+=(--tiny --device cpu --frames 8 --batches "1,4" --streams 4)
  else
    args+=(--frames 200 --batches "1,8,32,64")
    bench_args+=(--random)
  fi
  step "bench/gpu_bench.py ${args[*]} ${extra[*]}"
  local rc=0
  timeout --kill-after=20 "$gpu_timeout" "$python" bench/gpu_bench.py "${args[@]}" "${extra[@]}" || rc=$?
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    echo "gpu-check: the bench ran past its budget of ${gpu_timeout}s; $json keeps what it measured" >&2
  fi
  step "higgs-worker bench ${bench_args[*]} (the self-benchmark, with the decode self-check)"
  local bench_rc=0
  rm -f "$bench_json"  # no table from an earlier run
  timeout --kill-after=20 "$self_timeout" "$python" -m higgs_worker.cli bench "${bench_args[@]}" >/dev/null \
    || bench_rc=$?
  if [ "$bench_rc" = 124 ] || [ "$bench_rc" = 137 ]; then
    echo "gpu-check: higgs-worker bench ran past ${self_timeout}s" >&2
  elif [ -s "$bench_json" ]; then
    "$python" -c 'import json, sys; from higgs_worker.engine.benchmark import format_table
print(format_table(json.load(open(sys.argv[1]))))' "$bench_json"
  fi
  [ "$rc" = 0 ] && rc=$bench_rc
  step "done: exit $rc; results in $json and $bench_json, log in $log"
  return "$rc"
}

main 2>&1 | tee "$log"
exit "${PIPESTATUS[0]}"
