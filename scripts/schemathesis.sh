#!/usr/bin/env bash
# Property-based API testing: schemathesis generates requests from the server's own OpenAPI document and fails
# on any server error (5xx). The server runs on 127.0.0.1 with the tiny model and small generation limits.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
.venv/bin/higgs-worker make-tiny-model "$work/tiny" >/dev/null
port=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
MODEL_PATH="$work/tiny/model" TOKENIZER_PATH="$work/tiny/tokenizer" VOLUME_ROOT="$work/vol" LOG_DIR="$work/logs" \
  HF_ENDPOINT=http://127.0.0.1:9 MAX_NEW_TOKENS_LIMIT=16 MAX_TEXT_CHARS=400 MAX_CHUNKS=4 \
  .venv/bin/higgs-worker serve --host 127.0.0.1 --port "$port" >"$work/server.out" 2>&1 &
server=$!
for _ in $(seq 1 300); do
  if curl -fsS -o /dev/null "http://127.0.0.1:$port/ping" 2>/dev/null; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then cat "$work/server.out"; exit 1; fi
  sleep 0.2
done
.venv/bin/schemathesis run "http://127.0.0.1:$port/openapi.json" \
  --checks not_a_server_error --max-examples "${SCHEMATHESIS_EXAMPLES:-25}" --request-timeout 60 --seed 1
echo "schemathesis: no server errors"
