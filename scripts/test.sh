#!/usr/bin/env bash
# Set up .venv and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-dev.sh
# One worker per core (PYTEST_WORKERS overrides); each test file stays on one worker, so a file's server starts once.
exec .venv/bin/python -m pytest -q -n "${PYTEST_WORKERS:-auto}" --dist loadfile "$@"
