"""OpenAI-compatible speech: ``POST /v1/audio/speech`` (whole file, chunked audio stream or SSE) and models."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import StreamingResponse

from .. import audio
from ..engine import Cancelled, ModelLoadError
from ..schema import OpenAISpeech, RequestError, SpeechRequest
from ..service import SpeechService

router = APIRouter(tags=["OpenAI-compatible"])

MODEL_IDS = ("higgs-audio-v2", "tts-1", "tts-1-hd", "gpt-4o-mini-tts")
_FIELD_NAMES = {"transcript": "input", "format": "response_format", "scene_prompt": "instructions"}


def _service(request: Request) -> SpeechService:
    return request.app.state.service


def _openai_error(exc: RequestError, voice_given: bool) -> RequestError:
    field = _FIELD_NAMES.get(exc.field, exc.field)
    if exc.field == "ref_audio" and voice_given:
        field = "voice"
    return RequestError(field, exc.message)


async def _watch_disconnect(request: Request, cancel: threading.Event, done: asyncio.Event) -> None:
    while not done.is_set() and not cancel.is_set():
        if await request.is_disconnected():
            cancel.set()
            return
        try:
            await asyncio.wait_for(done.wait(), 0.25)
        except TimeoutError:
            pass


def _ensure_model(service: SpeechService) -> None:
    holder = service.holder
    if holder.error is not None:
        raise HTTPException(status_code=503, detail=f"model unavailable: {holder.error}")
    if holder.loading:
        raise HTTPException(status_code=503, detail="the model is still loading; retry shortly",
                            headers={"Retry-After": "5"})


@router.get("/v1/models", summary="Model names accepted by /v1/audio/speech")
async def models() -> dict[str, Any]:
    now = int(time.time())
    return {"object": "list", "data": [{"id": m, "object": "model", "created": now, "owned_by": "higgs-audio-worker"}
                                       for m in MODEL_IDS]}


@router.post("/v1/audio/speech", summary="Text to speech (OpenAI-compatible)",
             responses={200: {"content": {t: {} for t in set(audio.MEDIA_TYPES.values())}}})
async def speech(body: OpenAISpeech, request: Request) -> Response:
    if body.model not in MODEL_IDS:
        raise RequestError("model", f"unknown model {body.model!r}; use one of {', '.join(MODEL_IDS)}")
    service = _service(request)
    voice_given = body.ref_audio is None
    try:
        speech_request = body.to_request()
        await asyncio.to_thread(service.check, speech_request)
    except RequestError as exc:
        raise _openai_error(exc, voice_given) from None
    _ensure_model(service)
    state = request.app.state
    limit = state.settings.max_concurrent_jobs
    if state.speech_inflight >= limit:
        raise HTTPException(status_code=429, detail=f"{state.speech_inflight} speech requests are in flight; the "
                            f"limit is {limit} (MAX_CONCURRENT_JOBS)", headers={"Retry-After": "2"})
    state.speech_inflight += 1
    if body.stream_format is None:
        try:
            return await _whole(request, service, speech_request)
        finally:
            state.speech_inflight -= 1
    try:
        return _streamed(request, service, speech_request, body.stream_format)
    except BaseException:
        state.speech_inflight -= 1
        raise


async def _whole(request: Request, service: SpeechService, speech_request: SpeechRequest) -> Response:
    cancel = threading.Event()
    done = asyncio.Event()
    watcher = asyncio.create_task(_watch_disconnect(request, cancel, done))
    try:
        result = await asyncio.to_thread(service.synthesize, speech_request, cancel)
    except Cancelled:
        return Response(status_code=499)
    except ModelLoadError as exc:
        raise HTTPException(status_code=503, detail=f"model unavailable: {exc}") from None
    finally:
        done.set()
        await watcher
    request.app.state.metrics.observe_result(result.duration_s, result.generation_s, None)
    engine_s = sum(result.timings.get(k, 0.0) for k in ("reference_encode", "generate", "decode"))
    headers = {"X-Seed": str(result.seed), "X-Audio-Duration": f"{result.duration_s:.3f}",
               "X-Generation-Time": f"{result.generation_s:.3f}", "X-Engine-Time": f"{engine_s:.4f}"}
    return Response(result.audio, media_type=audio.MEDIA_TYPES[result.format], headers=headers)


async def _pump(produce: Iterator[Any], cancel: threading.Event) -> AsyncIterator[Any]:
    """Run a blocking iterator on a worker thread; yield its items here. Stopping early cancels the work."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    end = object()

    def run() -> None:
        try:
            for item in produce:
                loop.call_soon_threadsafe(queue.put_nowait, item)
                if cancel.is_set():
                    break
        except BaseException as exc:  # noqa: BLE001 - handed to the async side
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, end)

    worker = loop.run_in_executor(None, run)
    try:
        while True:
            item = await queue.get()
            if item is end:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        cancel.set()  # a client that went away stops the generation at its next step
        await asyncio.shield(worker)


def _streamed(request: Request, service: SpeechService, speech_request: SpeechRequest, kind: str) -> StreamingResponse:
    cancel = threading.Event()
    stream = service.synthesize_stream(speech_request, cancel)
    fmt = speech_request.format
    metrics = request.app.state.metrics

    def encoded() -> Iterator[bytes]:
        yield from audio.encode_stream(stream, fmt)

    state = request.app.state

    async def audio_body() -> AsyncIterator[bytes]:
        try:
            async for data in _pump(encoded(), cancel):
                yield data
        except Cancelled:
            return
        finally:
            state.speech_inflight -= 1
        _observe(stream, metrics)

    async def sse_body() -> AsyncIterator[bytes]:
        try:
            async for data in _pump(encoded(), cancel):
                event = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode("ascii")}
                yield f"data: {json.dumps(event)}\n\n".encode()
        except Cancelled:
            return
        except Exception as exc:  # noqa: BLE001 - the status line is sent: report in-band
            yield f"data: {json.dumps({'type': 'error', 'error': str(exc)})}\n\n".encode()
            return
        finally:
            state.speech_inflight -= 1
        meta = stream.metadata()
        usage = meta["usage"]
        done = {"type": "speech.audio.done", "usage": {"input_tokens": usage["prompt_tokens"],
                                                       "output_tokens": usage["completion_tokens"],
                                                       "total_tokens": usage["total_tokens"]},
                "seed": meta["seed"], "duration_s": meta["duration_s"]}
        yield f"data: {json.dumps(done)}\n\n".encode()
        _observe(stream, metrics)

    if kind == "sse":
        return StreamingResponse(sse_body(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return StreamingResponse(audio_body(), media_type=audio.MEDIA_TYPES[fmt],
                             headers={"X-Accel-Buffering": "no"})


def _observe(stream, metrics) -> None:
    meta = stream.metadata()
    metrics.observe_result(meta["duration_s"], meta["generation_s"], meta["timings"].get("first_audio"))
