#!/usr/bin/env bash
# Set up .venv and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-dev.sh
scripts/setup-pipecat.sh  # Pipecat's own environment (.venv-pipecat), for tests/http/test_frameworks.py only
# One worker more than there are cores (PYTEST_WORKERS overrides): a test that waits (for a timeout, a browser, a
# server's exit) leaves its core to the others. Each test file stays on one worker, so a file's server starts once.
# Files are handed out in collection order, which tests/conftest.py starts with the slowest files (xdist's own
# reordering, by test count, would leave the slow files with few tests for the end and one worker idle).
workers="${PYTEST_WORKERS:-$(( $(nproc) + 1 ))}"
exec .venv/bin/python -m pytest -q -n "$workers" --dist loadfile --no-loadscope-reorder "$@"
