#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv from the pinned lock file (requirements-dev.lock: runtime + test tools).
# Idempotent: a second run with an unchanged lock installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

if ! command -v uv >/dev/null 2>&1; then
  echo "setup: installing uv (fast, repeatable installs)" >&2
  "$PYTHON" -m pip install --quiet --user uv || "$PYTHON" -m pip install --quiet uv
  export PATH="$HOME/.local/bin:$PATH"
fi

if [ ! -x .venv/bin/python ]; then
  uv venv --quiet --python "$PYTHON" .venv
fi

stamp=.venv/.lock-sha256
want=$(sha256sum requirements-dev.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing the locked dependencies into .venv (first run downloads PyTorch, a few minutes)" >&2
  # bytecode compiled once now: otherwise, where .pyc files cannot be written (PYTHONDONTWRITEBYTECODE), every
  # process the tests start compiles PyTorch and Transformers again
  uv pip sync --quiet --compile-bytecode --python .venv/bin/python requirements-dev.lock
  uv pip install --quiet --python .venv/bin/python --no-deps -e .
  echo "$want" > "$stamp"
fi
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))" >&2
