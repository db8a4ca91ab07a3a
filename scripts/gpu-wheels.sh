#!/usr/bin/env bash
# Download the wheels scripts/gpu-check.sh carries to a GPU machine without network, into the ignored .whl/ folder:
# the versions pinned in requirements.lock, built for CPython 3.12 on x86-64 Linux (manylinux).
#
#   scripts/gpu-wheels.sh          # about 20 MB; then carry .whl/ with the working tree
#
# .whl/ holds what the engine needs beyond torch: a recent transformers and the schema's pydantic stack.
# .whl/fallback/ holds the packages transformers checks the versions of when it is imported (tokenizers,
# huggingface-hub, safetensors, regex); gpu-check.sh installs them only if transformers does not import with the
# machine's own.
set -euo pipefail
cd "$(dirname "$0")/.."

main=(transformers pydantic pydantic-core pydantic-settings python-dotenv typing-inspection annotated-types typing-extensions)
fallback=(tokenizers huggingface-hub safetensors regex)
python="${PYTHON:-python3}"

pins() {
  local name version
  for name in "$@"; do
    version=$(sed -n "s/^${name}==\([^ ]*\) .*/\1/p" requirements.lock)
    if [ -z "$version" ]; then
      echo "gpu-wheels: $name is not pinned in requirements.lock" >&2
      return 1
    fi
    echo "$name==$version"
  done
}

download() {
  local dest="$1"
  shift
  mkdir -p "$dest"
  rm -f "$dest"/*.whl  # no stale versions next to the pinned ones
  "$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$dest" "$@"
}

mapfile -t main_pins < <(pins "${main[@]}")
mapfile -t fallback_pins < <(pins "${fallback[@]}")
[ ${#main_pins[@]} -eq ${#main[@]} ] && [ ${#fallback_pins[@]} -eq ${#fallback[@]} ] || exit 1
download .whl "${main_pins[@]}"
download .whl/fallback "${fallback_pins[@]}"
ls -1 .whl .whl/fallback
du -sh .whl
