# Full image: the runtime (torch and friends) baked in, so a worker starts without installing anything.
# Optionally bakes the model weights too (outside /runpod-volume, which a mounted volume would hide):
#   docker build --build-arg BAKE_WEIGHTS=true -t higgs-audio-worker:full .
FROM python:3.11-slim-bookworm

ARG BAKE_WEIGHTS=false
ARG MODEL_REPO=bosonai/higgs-audio-v2-generation-3B-base
ARG MODEL_REVISION=main
ARG CODEC_REPO=bosonai/higgs-audio-v2-tokenizer
ARG CODEC_REVISION=main

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    APP_DIR=/app \
    LOG_DIR=/app/logs \
    VOLUME_ROOT=/runpod-volume \
    RUNTIME_PYTHON=/opt/runtime/bin/python \
    PYTHONPATH=/app/src \
    MODE=handler

RUN pip install --no-cache-dir uv==0.13.9

WORKDIR /app
COPY requirements.lock ./
RUN uv venv --python python3.11 /opt/runtime \
    && uv pip sync --no-cache --require-hashes --compile-bytecode --python /opt/runtime/bin/python requirements.lock

COPY pyproject.toml README.md bootstrap.sh ./
COPY src ./src
RUN chmod +x /app/bootstrap.sh && mkdir -p /app/logs /models

RUN if [ "$BAKE_WEIGHTS" = "true" ]; then \
      MODEL_REPO="$MODEL_REPO" MODEL_REVISION="$MODEL_REVISION" MODEL_PATH=/models/model \
      TOKENIZER_REPO="$CODEC_REPO" TOKENIZER_REVISION="$CODEC_REVISION" TOKENIZER_PATH=/models/tokenizer \
      /opt/runtime/bin/python -m higgs_worker.cli fetch-models; \
    fi

CMD ["/app/bootstrap.sh"]
