#!/usr/bin/env bash
# Mutation testing, by hand and not in CI: mutmut changes the modules where a silent bug costs most, one small
# change at a time, and runs the fast unit tests that cover each change; a mutant the tests do not notice is a
# missing test (or an equivalent change, explained in scripts/mutation-survivors.md).
#
#   scripts/mutation.sh                  every module below
#   scripts/mutation.sh sampling text    only those (names as in MODULES)
#
# It works in a scratch copy of src/ and tests/, so the checkout is never mutated, and installs mutmut into that
# scratch folder (pinned, with the versions of requirements-dev.lock for what it shares with .venv), so neither
# .venv nor the locks change and a re-sync of .venv cannot pull it away mid-run. It prints killed/total per
# module and writes every survivor's diff to survivors.txt in the scratch folder, which MUTATION_KEEP=1 keeps
# (then `PYTHONPATH=tools .../.venv/bin/python -m mutmut show NAME` in that folder shows one mutant).
# Two cores take about 40 minutes for everything (38 measured on 2 shared cores).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
py="$root/.venv/bin/python"
MUTMUT_VERSION=3.8.1

# module -> the file mutated and the tests run against it (fast, in-process tests only: nothing that makes the
# tiny model or starts a server, which would cost seconds per mutant)
declare -A SOURCE=(
  [sampling]=src/higgs_worker/engine/sampling.py
  [codes]=src/higgs_worker/engine/codes.py
  [prompt]=src/higgs_worker/engine/prompt.py
  [text]=src/higgs_worker/core/text.py
  [safe_fetch]=src/higgs_worker/core/safe_fetch.py
  [auth]=src/higgs_worker/http/auth.py
  [audio]=src/higgs_worker/audio/encode.py
  [storage]=src/higgs_worker/jobs/storage.py
)
declare -A TESTS=(
  [sampling]="tests/engine/test_sampling.py"
  [codes]="tests/engine/test_codes.py"
  [prompt]="tests/engine/test_prompt.py tests/engine/test_prompt_units.py"
  [text]="tests/core/test_text.py tests/core/test_text_units.py"
  [safe_fetch]="tests/core/test_ssrf.py tests/core/test_safe_fetch_units.py"
  [auth]="tests/http/test_auth.py tests/http/test_auth_units.py"
  [audio]="tests/audio/test_encode.py"
  [storage]="tests/jobs/test_storage.py::test_bad_keys_refused tests/jobs/test_storage.py::test_default_key_scheme tests/jobs/test_storage_units.py"
)
# tests in those files that need the tiny model (each has a faster twin in the selection)
DESELECT=(
  tests/engine/test_codes.py::test_with_delay_equals_the_processor
  tests/engine/test_prompt.py::test_model_inputs_equal_the_processor_given_the_same_audio
  tests/engine/test_prompt.py::test_system_audio_model_inputs_equal_the_processor
  tests/core/test_ssrf.py::test_voice_library_urls_disabled_or_validated
)
ORDER=(sampling codes prompt text safe_fetch auth audio storage)

modules=("$@")
[ ${#modules[@]} -gt 0 ] || modules=("${ORDER[@]}")
for m in "${modules[@]}"; do
  [ -n "${SOURCE[$m]:-}" ] || { echo "unknown module $m (one of: ${ORDER[*]})" >&2; exit 2; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/higgs-mutation.XXXXXX")
if [ "${MUTATION_KEEP:-0}" != 1 ]; then
  trap 'rm -rf "$work"' EXIT
fi
tar -C "$root" --exclude=__pycache__ -cf - src tests pyproject.toml | tar -C "$work" -xf -

uv=$(command -v uv || echo "$root/.venv/bin/uv")
"$uv" pip install --quiet --python "$py" --target "$work/tools" -c "$root/requirements-dev.lock" \
  "mutmut==$MUTMUT_VERSION"
export PYTHONPATH="$work/tools"

{
  echo "[mutmut]"
  echo "source_paths = src/"
  echo "only_mutate ="
  for m in "${modules[@]}"; do echo "    ${SOURCE[$m]}"; done
  echo "pytest_add_cli_args_test_selection ="
  for m in "${modules[@]}"; do for t in ${TESTS[$m]}; do echo "    $t"; done; done
  echo "pytest_add_cli_args ="
  echo "    -p"
  echo "    no:cacheprovider"
  for d in "${DESELECT[@]}"; do echo "    --deselect"; echo "    $d"; done
  # torch is not fork-safe once used: workers fork from a server that has only imported and collected
  echo "process_isolation = forkserver"
  # a mutant that hangs (a watchdog that never fires) is stopped after 5x its tests' clean time plus 5 s
  echo "timeout_multiplier = 5.0"
  echo "timeout_constant = 5.0"
} > "$work/setup.cfg"

cd "$work"
jobs=${MUTATION_JOBS:-$(nproc)}  # before OMP_NUM_THREADS is set: nproc honours it
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1  # one thread per worker: a worker per core, no oversubscription
started=$(date +%s)
"$py" -m mutmut run --max-children "$jobs" > run.log 2>&1 || {
  tail -c 4000 run.log >&2
  exit 1
}
elapsed=$(( $(date +%s) - started ))

"$py" -m mutmut results --all true > results.txt 2>&1
"$py" - "$elapsed" "${modules[@]}" <<'PY'
import collections, re, subprocess, sys

elapsed, modules = int(sys.argv[1]), sys.argv[2:]
dotted = {"sampling": "higgs_worker.engine.sampling", "codes": "higgs_worker.engine.codes",
          "prompt": "higgs_worker.engine.prompt", "text": "higgs_worker.core.text", "safe_fetch": "higgs_worker.core.safe_fetch",
          "auth": "higgs_worker.http.auth", "audio": "higgs_worker.audio.encode", "storage": "higgs_worker.jobs.storage"}
counts = collections.defaultdict(collections.Counter)
survivors = []
for line in open("results.txt"):
    m = re.match(r"\s*(\S+): (.+)$", line)
    if not m:
        continue
    name, status = m.groups()
    module = re.split(r"\.x[_ǁ]", name)[0]
    counts[module][status] += 1
    if status not in ("killed", "timeout"):
        survivors.append((name, status))
print(f"mutmut, {elapsed // 60} min {elapsed % 60} s")
print(f"{'module':<34} {'killed':>7} {'total':>6} {'score':>6}")
for short in modules:
    c = counts[dotted[short]]
    total = sum(c.values())
    killed = c["killed"] + c["timeout"]
    score = f"{100 * killed / total:.1f}%" if total else "-"
    other = ", ".join(f"{n} {s}" for s, n in sorted(c.items()) if s not in ("killed", "timeout"))
    print(f"{dotted[short]:<34} {killed:>7} {total:>6} {score:>6}" + (f"   ({other})" if other else ""))
with open("survivors.txt", "w") as out:
    for name, status in survivors:
        diff = subprocess.run([sys.executable, "-m", "mutmut", "show", name], capture_output=True, text=True).stdout
        out.write(f"## {name} ({status})\n{diff}\n")
print(f"{len(survivors)} not killed; their diffs: survivors.txt")
PY
if [ "${MUTATION_KEEP:-0}" = 1 ]; then echo "scratch copy kept: $work"; fi
