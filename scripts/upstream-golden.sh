#!/usr/bin/env bash
# Regenerate tests/fixtures/upstream/prompts.json with upstream's own code (prompt parity, issue 23 item 9).
#
# Upstream = boson-multimodal 0.1.1 (PyPI) + examples/generation.py of boson-ai/higgs-audio at $COMMIT. They need
# transformers 4.46, so they live in a virtual environment of their own, outside the repository, made here with
# uv at pinned versions (every package pinned by the constraints below; PyPI's torch wheels, CPU is enough).
# scripts/upstream-golden.py then renders every case's chunks and prompts (see its docstring for what is stubbed).
#
# Usage: scripts/upstream-golden.sh [GENERATION_PY]
#   GENERATION_PY (or $UPSTREAM_GENERATION_PY): upstream's examples/generation.py at $COMMIT, given as
#     - a file path (a machine without access to GitHub: copy the file over), or
#     - a git directory holding the commit (read with `git show $COMMIT:examples/generation.py`), or
#     - an http(s) URL, fetched with curl; default:
#       https://raw.githubusercontent.com/boson-ai/higgs-audio/$COMMIT/examples/generation.py
#     Its sha256 is checked against the pinned one whichever way it comes.
# Environment:
#   UPSTREAM_VENV    the virtual environment (default /tmp/upstream-venv); created or brought to the pins
#   UPSTREAM_PYTHON  its interpreter (default python3.11)
#   OUT              where the fixtures go (default tests/fixtures/upstream/prompts.json)
# Needs: uv (installed with pip when absent) and the PyPI registry (the first run downloads about 3 GB of wheels,
# torch with its CUDA libraries, unless uv's cache has them). Takes a few minutes; the rendering itself, about one.
set -euo pipefail
cd "$(dirname "$0")/.."

COMMIT=f04f5df76a6a7b14674e0d6d715b436c422883c6
GENERATION_SHA256=e468688fb026d5db7e041fd1201253ff57e9755c1d90e69a3712a46506c2019f
VENV="${UPSTREAM_VENV:-/tmp/upstream-venv}"
PYTHON="${UPSTREAM_PYTHON:-python3.11}"
OUT="${OUT:-tests/fixtures/upstream/prompts.json}"
SOURCE="${1:-${UPSTREAM_GENERATION_PY:-https://raw.githubusercontent.com/boson-ai/higgs-audio/$COMMIT/examples/generation.py}}"

REQUIREMENTS=(boson-multimodal==0.1.1 transformers==4.46.3 torch==2.9.1 torchaudio==2.9.1 torchvision==0.24.1)
# Everything else, as resolved on 2026-12-01 for Python 3.11 on linux x86_64 (platform-only packages such as the
# nvidia-* wheels are simply not installed elsewhere).
CONSTRAINTS="absl-py==2.5.1 accelerate==1.16.0 annotated-types==0.8.0 argbind==0.3.9 asttokens==3.0.2
audioread==3.1.0 boto3==1.35.36 botocore==1.35.99 certifi==2026.10.19.post1 cffi==2.1.1 charset-normalizer==3.5.3
click==8.5.1 cloudpickle==3.1.3 contourpy==1.3.3 cycler==0.12.1 dacite==1.9.2 decorator==5.3.1
descript-audio-codec==1.0.0 descript-audiotools==0.7.2 docstring-parser==0.18.0 einops==0.8.2 einx==0.4.3
executing==2.3.0 ffmpy==1.0.0 filelock==4.3.1 fire==0.7.1 flatten-dict==0.5.0 fonttools==4.68.0 frozendict==2.5.1
fsspec==2026.9.0 grpcio==1.85.3 hf-xet==1.8.0 huggingface-hub==0.36.2 idna==3.20 importlib-resources==7.1.0
ipython==9.18.1 ipython-pygments-lexers==1.1.1 jedi==0.20.1 jieba==0.42.1 jinja2==3.1.6 jmespath==1.1.0
joblib==1.6.0 json-repair==0.64.6 julius==0.2.8 kiwisolver==1.5.1 langid==1.1.6 lazy-loader==0.6 librosa==0.11.0
llvmlite==0.50.0 loguru==0.7.3 markdown==3.11.3 markdown-it-py==4.3.0 markdown2==2.5.5 markupsafe==3.0.4
matplotlib==3.11.2 matplotlib-inline==0.2.2 mdurl==0.1.2 mpmath==1.3.0 msgpack==1.2.4 narwhals==2.29.0
networkx==3.6.1 numba==0.68.1 numpy==2.4.6 nvidia-cublas-cu12==12.8.4.1 nvidia-cuda-cupti-cu12==12.8.90
nvidia-cuda-nvrtc-cu12==12.8.93 nvidia-cuda-runtime-cu12==12.8.90 nvidia-cudnn-cu12==9.10.2.21
nvidia-cufft-cu12==11.3.3.83 nvidia-cufile-cu12==1.13.1.3 nvidia-curand-cu12==10.3.9.90
nvidia-cusolver-cu12==11.7.3.90 nvidia-cusparse-cu12==12.5.8.93 nvidia-cusparselt-cu12==0.7.1
nvidia-nccl-cu12==2.27.5 nvidia-nvjitlink-cu12==12.8.93 nvidia-nvshmem-cu12==3.3.20 nvidia-nvtx-cu12==12.8.90
omegaconf==2.4.0 packaging==26.4 pandas==3.1.1 parso==0.8.7 pexpect==4.9.0 pillow==13.0.0 platformdirs==4.14.9
pooch==1.9.0 prompt-toolkit==3.0.53 protobuf==3.19.6 psutil==7.2.2 ptyprocess==0.7.0 pure-eval==0.2.4
pycparser==3.12 pydantic==2.14.4 pydantic-core==2.50.5 pydub==0.25.1 pygments==2.21.0 pyloudnorm==0.2.0
pyparsing==3.3.3 pystoi==0.4.1 python-dateutil==2.9.0.post0 pyyaml==6.0.4 randomname==0.2.1 regex==2026.11.19
requests==2.34.2 rich==15.0.0 ruff==0.12.2 s3fs==0.4.2 s3transfer==0.10.4 safetensors==0.8.0 scikit-learn==1.9.1
scipy==1.17.1 setuptools==84.2.1 six==1.17.0 soundfile==0.14.0 soxr==1.1.0 stack-data==0.6.3 sympy==1.14.0
tensorboard==2.20.0 tensorboard-data-server==0.7.2 termcolor==3.3.0 threadpoolctl==3.8.0 tokenizers==0.20.3
torch-einops-utils==0.2.0 torch-stoi==0.2.3 tqdm==4.70.1 traitlets==5.16.1 triton==3.5.1 typing-extensions==4.16.0
typing-inspection==0.4.5 urllib3==2.8.0 vector-quantize-pytorch==1.32.0 wcwidth==0.9.4 werkzeug==3.1.9"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- uv
if command -v uv >/dev/null 2>&1; then
  uv=(uv)
elif "$PYTHON" -m uv --version >/dev/null 2>&1; then
  uv=("$PYTHON" -m uv)
else
  echo "upstream-golden: installing uv" >&2
  "$PYTHON" -m pip install --quiet --user uv
  uv=("$PYTHON" -m uv)
fi

# --- the venv, at the pins (skipped when the stamp says it already is)
tr ' ' '\n' <<<"$CONSTRAINTS" > "$work/constraints.txt"
want=$(printf '%s\n' "${REQUIREMENTS[@]}" | cat - "$work/constraints.txt" | sha256sum | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ]; then
  "${uv[@]}" venv --quiet --python "$PYTHON" "$VENV"
fi
if [ "$(cat "$VENV/.upstream-golden-stamp" 2>/dev/null)" != "$want" ]; then
  echo "upstream-golden: installing upstream's packages into $VENV" >&2
  "${uv[@]}" pip install --quiet --python "$VENV/bin/python" -c "$work/constraints.txt" "${REQUIREMENTS[@]}"
  echo "$want" > "$VENV/.upstream-golden-stamp"
fi

# --- generation.py at the pinned commit
generation="$work/generation.py"
case "$SOURCE" in
  http://* | https://*)
    curl --fail --silent --show-error --location --max-time 120 -o "$generation" "$SOURCE" ;;
  *)
    if [ -d "$SOURCE" ]; then
      git --git-dir="$(git -C "$SOURCE" rev-parse --absolute-git-dir 2>/dev/null || echo "$SOURCE")" \
        show "$COMMIT:examples/generation.py" > "$generation"
    elif [ -f "$SOURCE" ]; then
      cp "$SOURCE" "$generation"
    else
      echo "upstream-golden: $SOURCE is neither a URL, a file nor a git directory" >&2
      exit 2
    fi ;;
esac
got=$(sha256sum "$generation" | cut -d' ' -f1)
if [ "$got" != "$GENERATION_SHA256" ]; then
  echo "upstream-golden: generation.py from $SOURCE has sha256 $got, not $GENERATION_SHA256 (commit $COMMIT)" >&2
  exit 1
fi

# --- render
TQDM_DISABLE=1 "$VENV/bin/python" scripts/upstream-golden.py --generation-py "$generation" --commit "$COMMIT" \
  --out "$OUT"
