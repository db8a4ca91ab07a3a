"""OpenAI-compatible speech: ``POST /v1/audio/speech`` (whole file, chunked audio stream or SSE) and models.

Every speech request runs within ``SPEECH_TIMEOUT_S`` (then its generation is cancelled: 504 for a whole file, an
``error`` event for SSE, a cut stream for audio); ``/v1/audio/speech/captioned`` returns at most
``MAX_INLINE_BYTES`` of audio inline, as jobs do. While the model is not ready they answer 503 saying why:
still downloading (with the download's progress) or still loading, both with ``Retry-After``; or failed, without.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response

from .. import audio
from ..core.errors import Cancelled, ModelLoadError, RequestError, public_error
from ..core.openai_schema import OpenAISpeech
from ..core.results import SpeechResult
from ..core.schema import SpeechRequest
from ..speech import SpeechService
from ..weights.progress import current as current_download
from ..weights.progress import describe as describe_download
from .streaming import Pipe, StreamedSpeech

log = logging.getLogger(__name__)
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


def _timed_out(settings) -> RequestError:
    return RequestError("input", f"the speech took longer than {settings.speech_timeout_s:g} s (SPEECH_TIMEOUT_S) "
                                 "and was stopped; shorten the input or lower max_new_tokens")


def not_ready_reason() -> str:
    """Why a loading model cannot take work yet: the download in progress (repo, files, bytes, percent, rate, time
    left) when its weights are being fetched, else that it is loading."""
    download = current_download()
    if download is not None:
        return (f"the model is still downloading ({describe_download(download)}); retry when it is done "
                "(GET /health shows the progress)")
    return "the model is still loading; retry shortly (GET /health shows its state)"


def _ensure_model(service: SpeechService) -> None:
    holder = service.holder
    if holder.error is not None:
        raise HTTPException(status_code=503, detail=public_error(holder.error))
    if holder.loading:
        raise HTTPException(status_code=503, detail=not_ready_reason(), headers={"Retry-After": "5"})


@router.get("/v1/models", summary="Model names accepted by /v1/audio/speech")
async def models(request: Request) -> dict[str, Any]:
    now = int(time.time())
    holder = _service(request).holder
    source = holder.get().loaded.source if holder.ready else {}
    extra = {"higgs_model": source} if source else {}  # the repo and commit loaded, from the fetch marker
    return {"object": "list", "data": [{"id": m, "object": "model", "created": now, "owned_by": "higgs-audio-worker",
                                        **extra} for m in MODEL_IDS]}


async def _admit(body: OpenAISpeech, request: Request, timestamps: str | None = None) -> SpeechRequest:
    """Validate and check the request, then take one of the speech slots (the caller gives it back)."""
    if body.model not in MODEL_IDS:
        raise RequestError("model", f"unknown model {body.model!r}; use one of {', '.join(MODEL_IDS)}")
    service = _service(request)
    try:
        speech_request = body.to_request()
        if timestamps is not None and speech_request.timestamps is None:
            speech_request.timestamps = timestamps
        await asyncio.to_thread(service.check, speech_request)
    except RequestError as exc:
        raise _openai_error(exc, body.ref_audio is None) from None
    _ensure_model(service)
    state = request.app.state
    limit = state.settings.max_concurrent_jobs
    if state.speech_inflight >= limit:
        raise HTTPException(status_code=429, detail=f"{state.speech_inflight} speech requests are in flight; the "
                            f"limit is {limit} (MAX_CONCURRENT_JOBS)", headers={"Retry-After": "2"})
    state.speech_inflight += 1
    return speech_request


@router.post("/v1/audio/speech", summary="Text to speech (OpenAI-compatible)",
             responses={200: {"content": {t: {} for t in set(audio.MEDIA_TYPES.values())}}})
async def speech(body: OpenAISpeech, request: Request) -> Response:
    service = _service(request)
    speech_request = await _admit(body, request)
    state = request.app.state
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


@router.post("/v1/audio/speech/captioned", summary="Speech with word timings (and captions) in one JSON")
async def speech_captioned(body: OpenAISpeech, request: Request) -> dict[str, Any]:
    """The same request as ``/v1/audio/speech`` (``stream_format`` aside); the audio comes back base64 beside the
    words heard with their times (``timestamps`` defaults to ``word`` here), captions when asked, and checks."""
    if body.stream_format is not None:
        raise RequestError("stream_format", "is not available here: this route answers one JSON document")
    service = _service(request)
    speech_request = await _admit(body, request, timestamps="word")
    try:
        result = await _synthesize(request, service, speech_request)
    finally:
        request.app.state.speech_inflight -= 1
    if result is None:
        raise HTTPException(status_code=499, detail="the client went away")
    limit = request.app.state.settings.max_inline_bytes
    if len(result.audio) > limit:
        raise RequestError("response_format", f"the audio is {len(result.audio)} bytes, over the {limit} bytes this "
                                              "route returns inline (MAX_INLINE_BYTES); ask for a compressed format, "
                                              "a shorter input, or use /v1/audio/speech")
    return {"audio_base64": base64.b64encode(result.audio).decode("ascii"), **result.metadata()}


async def _synthesize(request: Request, service: SpeechService, speech_request: SpeechRequest) -> SpeechResult | None:
    """The whole speech on a worker thread, cancelled if the client goes away (then None) or when it runs past
    ``SPEECH_TIMEOUT_S`` (504)."""
    cancel = threading.Event()
    done = asyncio.Event()
    settings = request.app.state.settings
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        cancel.set()

    timer = asyncio.get_running_loop().call_later(settings.speech_timeout_s, expire)
    watcher = asyncio.create_task(_watch_disconnect(request, cancel, done))
    try:
        result = await asyncio.to_thread(service.synthesize, speech_request, cancel)
    except Cancelled:
        if expired.is_set():
            log.warning("speech request stopped after %g s (SPEECH_TIMEOUT_S)", settings.speech_timeout_s)
            raise HTTPException(status_code=504, detail=str(_timed_out(settings))) from None
        return None
    except ModelLoadError as exc:
        raise HTTPException(status_code=503, detail=public_error(exc)) from None
    finally:
        timer.cancel()
        done.set()
        await watcher
    request.app.state.metrics.observe_result(result.duration_s, result.generation_s, None)
    return result


async def _whole(request: Request, service: SpeechService, speech_request: SpeechRequest) -> Response:
    result = await _synthesize(request, service, speech_request)
    if result is None:
        return Response(status_code=499)
    engine_s = sum(result.timings.get(k, 0.0) for k in ("reference_encode", "generate", "decode"))
    headers = {"X-Seed": str(result.seed), "X-Audio-Duration": f"{result.duration_s:.3f}",
               "X-Generation-Time": f"{result.generation_s:.3f}", "X-Engine-Time": f"{engine_s:.4f}",
               "X-Higgs-Chunks": str(result.chunks), "X-Higgs-Truncated": "true" if result.truncated else "false"}
    if result.extras.get("saved_voice"):
        headers["X-Higgs-Saved-Voice"] = result.extras["saved_voice"]
    checked = result.extras.get("quality")
    if checked:
        failed = [str(c["index"]) for c in checked["chunks"] if not c["passed"]]
        headers["X-Higgs-Quality"] = (f"{'passed' if checked['passed'] else 'failed'}; chunks={len(checked['chunks'])}; "
                                      f"attempts={checked['attempts']}" + (f"; failed={','.join(failed)}" if failed else ""))
    if result.extras.get("save_voice_error"):
        headers["X-Higgs-Save-Voice-Error"] = result.extras["save_voice_error"][:200]
    return Response(result.audio, media_type=audio.MEDIA_TYPES[result.format], headers=headers)


def _streamed(request: Request, service: SpeechService, speech_request: SpeechRequest, kind: str) -> StreamedSpeech:
    cancel = threading.Event()
    stream = service.synthesize_stream(speech_request, cancel)
    fmt = speech_request.format
    state = request.app.state
    settings = state.settings
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            state.speech_inflight -= 1

    def start() -> Pipe:
        return Pipe(stream.encoded(), cancel, settings.stream_buffer_pieces)

    def audio_done() -> bytes:
        _observe(stream, state.metrics)
        return b""

    def audio_failed(exc: BaseException) -> None:
        public_error(exc, "speech stream")  # logged with an id; the client sees the stream cut short

    def sse_delta(data: bytes) -> bytes:
        event: dict[str, Any] = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode("ascii")}
        where = stream.progress()
        if where.chunks_total and where.chunks_total > 1:  # long text: the chunk being generated, of how many
            event.update(chunk=where.chunk, chunks=where.chunks_total, chunks_done=where.chunks_done)
        return f"data: {json.dumps(event)}\n\n".encode()

    def sse_done() -> bytes:
        meta = stream.metadata()
        usage = meta["usage"]
        done = {"type": "speech.audio.done", "usage": {"input_tokens": usage["prompt_tokens"],
                                                       "output_tokens": usage["completion_tokens"],
                                                       "total_tokens": usage["total_tokens"]},
                "seed": meta["seed"], "duration_s": meta["duration_s"], "truncated": meta["truncated"]}
        # every fact a result carries beyond the audio (word times come in their own event, before this one)
        done.update({key: value for key, value in stream.extras().items() if key != "words"})
        _observe(stream, state.metrics)
        words = ""
        if "words" in meta:  # word times of the audio just sent, heard once it is complete
            words = f"data: {json.dumps({'type': 'speech.audio.words', 'words': meta['words']})}\n\n"
        return (words + f"data: {json.dumps(done)}\n\n").encode()

    def sse_failed(exc: BaseException) -> bytes:
        return f"data: {json.dumps({'type': 'error', 'error': public_error(exc, 'speech stream')})}\n\n".encode()

    stall = settings.stream_stall_timeout_s
    limits = {"deadline_s": settings.speech_timeout_s, "timed_out": lambda: _timed_out(settings)}
    if kind == "sse":
        return StreamedSpeech(start, "text/event-stream", {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
                              stall, sse_delta, sse_done, sse_failed, release, **limits)
    return StreamedSpeech(start, audio.MEDIA_TYPES[fmt], {"X-Accel-Buffering": "no"}, stall, lambda data: data,
                          audio_done, audio_failed, release, **limits)


def _observe(stream, metrics) -> None:
    meta = stream.metadata()
    metrics.observe_result(meta["duration_s"], meta["generation_s"], meta["timings"].get("first_audio"))
