#!/usr/bin/env bash
# higgs-audio-worker bootstrap: prepare the heavy runtime once on the network volume, fetch voices and models,
# then start the worker. Idempotent: a second start reuses everything and only launches the worker.
#
#   MODE=handler (default)  RunPod queue worker        MODE=http  HTTP server on $PORT        MODE=none  prepare only
#
# Logs go to $LOG_DIR/bootstrap.log (and stdout); the worker's own log to $LOG_DIR/server.log (and stdout).
set -Eeuo pipefail

APP_DIR="${APP_DIR:-/app}"
LOG_DIR="${LOG_DIR:-/app/logs}"
VOLUME_ROOT="${VOLUME_ROOT:-/runpod-volume}"
LOCK_FILE="${LOCK_FILE:-$APP_DIR/requirements.lock}"
MODE="${MODE:-handler}"
PYTHON_BIN="${PYTHON_BIN:-python3}"
export APP_DIR LOG_DIR VOLUME_ROOT

mkdir -p "$LOG_DIR"
exec 3>&1 4>&2  # the worker gets the original stdout/stderr back; it writes server.log itself
exec > >(tee -a "$LOG_DIR/bootstrap.log") 2>&1

log() { printf '%s bootstrap: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }
fail() { log "ERROR: $*"; exit 1; }
trap 'fail "line $LINENO: $BASH_COMMAND exited with $?"' ERR

started=$(date +%s)
log "starting (mode=$MODE, app=$APP_DIR, volume=$VOLUME_ROOT)"

# --- where the runtime lives: the volume when there is one, else a local folder --------------------------------
if [ -d "$VOLUME_ROOT" ] && [ -w "$VOLUME_ROOT" ]; then
  RUNTIME_ROOT="${RUNTIME_ROOT:-$VOLUME_ROOT/runtime}"
else
  RUNTIME_ROOT="${RUNTIME_ROOT:-${LOCAL_RUNTIME_ROOT:-/opt/higgs-runtime}}"
  log "no writable volume at $VOLUME_ROOT: using the local folder $RUNTIME_ROOT (reinstalled on every cold start)"
  export VOLUME_ROOT="${LOCAL_DATA_ROOT:-$RUNTIME_ROOT/data}"
fi
mkdir -p "$RUNTIME_ROOT"

# --- the heavy runtime (torch and friends), keyed by the lock file and the Python version --------------------------
prepare_runtime() {
  [ -f "$LOCK_FILE" ] || fail "lock file $LOCK_FILE not found"
  local pyver key env_dir tmp
  pyver=$("$PYTHON_BIN" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  key=$( (cat "$LOCK_FILE"; echo "python$pyver") | sha256sum | cut -c1-16)
  env_dir="$RUNTIME_ROOT/env-$key"
  if [ -f "$env_dir/.ready" ]; then
    log "runtime ready: $env_dir (reused, nothing installed)"
  else
    log "runtime $env_dir missing: installing (once per lock file; other workers wait on the lock)"
    exec 9>"$RUNTIME_ROOT/.install.lock"
    flock 9
    if [ -f "$env_dir/.ready" ]; then
      log "another worker installed $env_dir while we waited"
    else
      tmp="$env_dir.tmp-$$"
      rm -rf "$tmp"
      local t0; t0=$(date +%s)
      # every package is checked against the lock's sha256 hashes: a tampered mirror or cache cannot slip in.
      # Bytecode is compiled once here, so no worker compiles PyTorch's modules again at each cold start.
      if command -v uv >/dev/null 2>&1; then
        uv venv --quiet --relocatable --python "$PYTHON_BIN" "$tmp"
        UV_LINK_MODE="${UV_LINK_MODE:-copy}" uv pip sync --quiet --require-hashes --compile-bytecode \
          --python "$tmp/bin/python" "$LOCK_FILE"
      else
        "$PYTHON_BIN" -m venv "$tmp"
        "$tmp/bin/python" -m pip install --quiet --no-deps --require-hashes -r "$LOCK_FILE"
      fi
      touch "$tmp/.ready" "$tmp/.last-used"
      mv -T "$tmp" "$env_dir"  # atomic: a half-built runtime is never seen as ready
      log "runtime installed in $(( $(date +%s) - t0 )) s"
    fi
    flock -u 9
    exec 9>&-
  fi
  RUNTIME_PYTHON="$env_dir/bin/python"
  mark_used "$env_dir"
  remove_unused_runtimes "$env_dir"
}

# --- runtimes on a shared volume: several workers (and image versions) may use different ones at once ---------
# Each start touches its runtime's .last-used stamp, and a background loop keeps touching it while the worker
# runs; only runtimes whose stamp is older than RUNTIME_KEEP_UNUSED_MIN (a day) are removed. Stamps and removal
# share one lock, so a runtime is never removed between another worker's check and its stamp.
RUNTIME_KEEP_UNUSED_MIN="${RUNTIME_KEEP_UNUSED_MIN:-1440}"
mark_used() {
  local env_dir=$1 main_pid=$$
  (
    flock -s 8
    touch "$env_dir/.last-used"
  ) 8>"$RUNTIME_ROOT/.gc.lock"
  [ "$MODE" != none ] || return 0
  # $$ stays the worker's PID after the final exec, so the loop ends with the worker (it holds none of our fds)
  ( while kill -0 "$main_pid" 2>/dev/null; do sleep 600; touch "$env_dir/.last-used" 2>/dev/null || true; done ) \
    </dev/null >/dev/null 2>&1 3>&- 4>&- &
}
remove_unused_runtimes() {
  local keep=$1 old
  (
    flock -x 8
    for old in "$RUNTIME_ROOT"/env-*; do
      [ -d "$old" ] && [ "$old" != "$keep" ] || continue
      if [ -z "$(find "$old" -maxdepth 1 -name .last-used -mmin "-$RUNTIME_KEEP_UNUSED_MIN" 2>/dev/null)" ] \
        && [ -z "$(find "$old" -maxdepth 0 -mmin "-$RUNTIME_KEEP_UNUSED_MIN" 2>/dev/null)" ]; then
        log "removing the runtime $old (unused for over $RUNTIME_KEEP_UNUSED_MIN min)"
        rm -rf "$old"
      fi
    done
  ) 8>"$RUNTIME_ROOT/.gc.lock"
}

if [ -n "${RUNTIME_PYTHON:-}" ]; then
  log "using the baked runtime $RUNTIME_PYTHON"
else
  prepare_runtime
fi
export PYTHONPATH="$APP_DIR/src${PYTHONPATH:+:$PYTHONPATH}"
# weights baked into the full image (Dockerfile --build-arg BAKE_WEIGHTS=true) are used when nothing else is named
if [ -z "${MODEL_PATH:-}" ] && [ -f /models/model/.higgs-complete.json ]; then
  export MODEL_PATH=/models/model TOKENIZER_PATH=/models/tokenizer
  log "using the weights baked into the image (/models)"
fi
worker() { "$RUNTIME_PYTHON" -m higgs_worker.cli "$@"; }

# --- voice presets (pinned URLs, sha256-checked); a failure is logged, not fatal ---------------------------------
if [ "${FETCH_VOICES:-true}" = "true" ]; then
  if ! worker fetch-voices; then
    log "WARNING: voice presets could not be fetched; requests naming them will fail until they are installed"
  fi
fi

# --- model weights: fetched once onto the volume, verified; the worker reports a failure on /health ------------
if [ "${HIGGS_DEMO:-0}" != "1" ] && [ "${HIGGS_DEMO:-false}" != "true" ] && [ "${FETCH_MODELS:-true}" = "true" ]; then
  if ! worker fetch-models; then
    log "WARNING: model fetch failed; the worker will report the reason on /health and in job errors"
  fi
fi

log "ready in $(( $(date +%s) - started )) s"
trap - ERR

case "$MODE" in
  none) exit 0 ;;
  http) set -- serve ;;
  handler) set -- handler ;;
  *) fail "unknown MODE=$MODE (handler, http or none)" ;;
esac
log "starting the worker: higgs-worker $1 (log: $LOG_DIR/server.log)"
exec 1>&3 2>&4 3>&- 4>&-
exec "$RUNTIME_PYTHON" -m higgs_worker.cli "$@"
