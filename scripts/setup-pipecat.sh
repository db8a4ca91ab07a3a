#!/usr/bin/env bash
# Create (or refresh) .venv-pipecat, Pipecat's own virtual environment, from its pinned lock file
# (requirements-pipecat.lock, every package hashed). tests/http/test_frameworks.py runs its Pipecat client
# (tests/http/pipecat_client.py) there: no pipecat-ai release can be installed beside the project's own lock
# (1.10 and later need protobuf<7 and soundfile<0.14, 1.9 and earlier openai<3).
# Idempotent: a second run with an unchanged lock installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
venv=.venv-pipecat
lock=requirements-pipecat.lock

if ! command -v uv >/dev/null 2>&1; then
  if [ -x .venv/bin/uv ]; then
    export PATH="$PWD/.venv/bin:$PATH"  # the project's own uv (requirements-dev.lock), when .venv is set up
  else
    echo "setup-pipecat: installing uv (fast, repeatable installs)" >&2
    "$PYTHON" -m pip install --quiet --user uv || "$PYTHON" -m pip install --quiet uv
    export PATH="$HOME/.local/bin:$PATH"
  fi
fi

if [ ! -x "$venv/bin/python" ]; then
  uv venv --quiet --python "$PYTHON" "$venv"
fi

stamp="$venv/.lock-sha256"
want=$(sha256sum "$lock" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup-pipecat: installing the locked Pipecat environment into $venv" >&2
  # bytecode compiled once now, as for .venv: each test run starts the client in a new process
  uv pip sync --quiet --require-hashes --compile-bytecode --python "$venv/bin/python" "$lock"
  echo "$want" > "$stamp"
fi
echo "setup-pipecat: $venv ready (pipecat-ai $("$venv/bin/python" -c 'from importlib.metadata import version; print(version("pipecat-ai"))'))" >&2
