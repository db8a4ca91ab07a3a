"""Realtime speech: ``WS /v1/realtime/speech``, text streamed in (an LLM's tokens), speech streamed out.

JSON text events both ways, in the shape the realtime TTS WebSocket APIs share (OpenAI's Realtime API session and
error events, the ``input_text_buffer.*`` events of the realtime TTS sockets modelled on it, and OpenAI's
``speech.audio.delta`` / ``speech.audio.done`` speech events that ``/v1/audio/speech`` already sends as SSE):

client → server
    ``session.update`` ``{"session": {...}}``: ``/v1/audio/speech`` fields (``voice``, ``instructions``,
    ``response_format`` ``pcm``/``wav``/``opus``, ``speed``, sampling, ``ref_audio``...), merged into the session's
    settings for the turns that start next. ``input_text_buffer.append`` ``{"text": delta}``: text for the open turn
    (one opens with the first delta). ``input_text_buffer.commit``: end the turn; what is buffered is spoken.
    ``input_text_buffer.clear``: drop the text not spoken yet. ``response.cancel``: barge-in, every unfinished turn
    stops now (its generation at the next decode step). ``session.finish``: speak what is committed, then close.
server → client
    ``session.created`` / ``session.updated`` ``{"session": {...}}``; ``input_text_buffer.committed``;
    ``speech.audio.delta`` ``{"response_id", "audio": base64}``; ``speech.audio.words`` (with
    ``timestamps: "word"``); ``speech.audio.done`` ``{"response_id", "status", "usage", "loudness", ...}`` per turn
    (``warnings`` for unknown ``[tags]``); ``error`` ``{"error": {"type", "code", "message", "param", "event_id"}}``. A client's bad event is answered with an error
    naming the field and the socket stays open; limits close it with the setting named in the reason.

Auth as every route: ``Authorization: Bearer`` at the handshake, or ``?token=`` for browsers (the logs redact it).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import secrets
import time
from typing import Any

from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from ..core.errors import Cancelled, RequestError, public_error
from ..core.openai_schema import OpenAISpeech
from ..core.schema import SpeechRequest
from ..speech.session import SegmentRules, SpeechSession, SpeechTurn
from .auth import RequireKey
from .routes_openai import MODEL_IDS
from .streaming import Pipe

log = logging.getLogger(__name__)
router = APIRouter(tags=["Realtime"])

PATH = "/v1/realtime/speech"
CLIENT_EVENTS = ("session.update", "input_text_buffer.append", "input_text_buffer.commit", "input_text_buffer.clear",
                 "response.cancel", "session.finish")
FORMATS = ("pcm", "wav", "opus")
#: ``/v1/audio/speech`` fields that mean nothing for text that arrives in pieces.
NOT_IN_SESSIONS = frozenset({"input", "stream_format", "save_voice", "verify", "captions", "chunk_method",
                             "chunk_max_word_num", "chunk_max_num_turns", "trim_silence"})
#: The text of the request that carries a session's settings; never spoken (each turn's text is).
_SETTINGS_ONLY = "realtime session settings"
_FIELD_NAMES = {"transcript": "input", "format": "response_format", "scene_prompt": "instructions"}
_DEFAULTS = {"model": "higgs-audio-v2", "voice": "default", "response_format": "pcm"}


def session_request(config: dict[str, Any]) -> SpeechRequest:
    """The session's settings as a request (voices not yet resolved); :class:`RequestError` on ``session.FIELD``."""
    refused = sorted(set(config) & NOT_IN_SESSIONS)
    if refused:
        raise RequestError(f"session.{refused[0]}", "is not available in a realtime session")
    try:
        body = OpenAISpeech.model_validate({**_DEFAULTS, **config, "input": _SETTINGS_ONLY})
    except ValidationError as exc:
        err = RequestError.from_validation(exc)
        raise RequestError(f"session.{err.field}", err.message) from None
    if body.model not in MODEL_IDS:
        raise RequestError("session.model", f"unknown model {body.model!r}; use one of {', '.join(MODEL_IDS)}")
    if body.response_format not in FORMATS:
        raise RequestError("session.response_format", f"is {body.response_format!r}; a realtime session streams "
                                                      f"{', '.join(FORMATS)}")
    try:
        return body.to_request()
    except RequestError as exc:
        raise RequestError(f"session.{_FIELD_NAMES.get(exc.field, exc.field)}", exc.message) from None


def caller_bucket(websocket: WebSocket, keys: list[str]) -> str | None:
    """Whose session this is for the per-key limit: a digest of the key (never the key), ``""`` when the server
    has no keys; None when the handshake carries no valid key (header, or ``?token=`` for browsers)."""
    if not keys:
        return ""
    guard = RequireKey(None, keys)
    headers = websocket.scope.get("headers") or []
    if guard.allowed(headers):
        value = next(v for k, v in headers if k.lower() == b"authorization").strip().partition(b" ")[2].strip()
    else:
        value = websocket.query_params.get("token", "").encode()
        if not value or not guard.allowed([(b"authorization", b"Bearer " + value)]):
            return None
    return hashlib.sha256(value).hexdigest()[:16]


class SessionClosed(Exception):
    """The session ends: a WebSocket close code and its reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class RealtimeConnection:
    """One WebSocket session: reads events, speaks turns in order, ends on a limit, a stall or the client."""

    def __init__(self, websocket: WebSocket, session: SpeechSession, config: dict[str, Any]) -> None:
        self.ws = websocket
        state = websocket.app.state
        self.settings = state.settings
        self.metrics = state.metrics
        self.session = session
        self.config = config
        self.queue: asyncio.Queue[SpeechTurn | None] = asyncio.Queue()
        self.unfinished: list[SpeechTurn] = []  # committed or open turns not yet done, in order
        self._send_lock = asyncio.Lock()
        self.last_activity = time.monotonic()
        self.finishing = False

    # -- sending ---------------------------------------------------------------------------------------------

    async def send(self, event: dict[str, Any]) -> None:
        """One event; a client that reads nothing for ``STREAM_STALL_TIMEOUT_S`` ends the session."""
        event = {"event_id": f"event_{secrets.token_hex(8)}", **event}
        try:
            async with asyncio.timeout(self.settings.stream_stall_timeout_s):
                async with self._send_lock:
                    await self.ws.send_text(json.dumps(event))
        except TimeoutError:
            raise SessionClosed(1008, f"client read nothing for {self.settings.stream_stall_timeout_s:g} s "
                                "(STREAM_STALL_TIMEOUT_S)") from None

    async def error(self, message: str, param: str | None = None, code: str = "invalid_event",
                    event_id: str | None = None, kind: str = "invalid_request_error") -> None:
        await self.send({"type": "error", "error": {"type": kind, "code": code, "message": message, "param": param,
                                                    "event_id": event_id}})

    def session_view(self) -> dict[str, Any]:
        view = {**_DEFAULTS, **{k: v for k, v in self.config.items() if k not in ("ref_audio", "ref_text")}}
        if "ref_audio" in self.config:
            view["ref_audio"] = True  # set; its content is not echoed
        holder = self.session.service.holder
        view["sample_rate"] = holder.get().sample_rate if holder.ready else 24000
        view["turn_detection"] = {"min_words": self.settings.realtime_min_words,
                                  "flush_idle_s": self.settings.realtime_flush_idle_s,
                                  "max_turn_chars": self.settings.realtime_max_turn_chars}
        return view

    # -- the session -----------------------------------------------------------------------------------------

    async def run(self) -> None:
        await self.send({"type": "session.created", "session": self.session_view()})
        speaker = asyncio.create_task(self._speak_turns())
        reader = asyncio.create_task(self._read())
        try:
            done, _ = await asyncio.wait({speaker, reader}, return_when=asyncio.FIRST_COMPLETED)
            if reader in done and reader.exception() is None and self.finishing:
                await speaker  # session.finish: the committed turns are spoken, then the socket closes
            for task in done:
                if task.exception() is not None:
                    raise task.exception()
            if self.finishing:
                raise SessionClosed(1000, "session finished")
        finally:
            for turn in self.unfinished:
                turn.cancel()  # a vanished or stalled client frees its generation at the next decode step
            for task in (speaker, reader):
                task.cancel()
            await asyncio.gather(speaker, reader, return_exceptions=True)

    async def _read(self) -> None:
        idle_s = self.settings.realtime_idle_timeout_s
        while True:
            left = idle_s - (time.monotonic() - self.last_activity)  # audio going out counts as activity
            if left <= 0:
                raise SessionClosed(1000, f"no event and no speech for {idle_s:g} s (REALTIME_IDLE_TIMEOUT_S)")
            try:
                message = await asyncio.wait_for(self.ws.receive(), left)
            except TimeoutError:
                continue
            if message["type"] == "websocket.disconnect":
                return
            self.last_activity = time.monotonic()
            if message.get("text") is None:
                await self.error("binary frames are not accepted; send JSON text events", param="type")
                continue
            if await self._handle(message["text"]):
                return

    async def _handle(self, raw: str) -> bool:
        """One client event; True when the client asked to finish."""
        try:
            event = json.loads(raw)
        except ValueError:
            await self.error("is not valid JSON", param="event")
            return False
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            await self.error("an event is a JSON object with a string `type`", param="type")
            return False
        kind, event_id = event["type"], event.get("event_id") if isinstance(event.get("event_id"), str) else None
        if kind not in CLIENT_EVENTS:
            await self.error(f"unknown event type {kind[:64]!r}; expected one of {', '.join(CLIENT_EVENTS)}",
                             param="type", event_id=event_id)
            return False
        try:
            if kind == "session.update":
                await self._update(event)
            elif kind == "input_text_buffer.append":
                await self._append(event)
            elif kind == "input_text_buffer.commit":
                turn = self.session.commit()
                if turn is None:
                    raise RequestError("text", "nothing to commit: append text first")
                await self.send({"type": "input_text_buffer.committed", "response_id": turn.id})
            elif kind == "input_text_buffer.clear":
                self.session.clear()
                await self.send({"type": "input_text_buffer.cleared"})
            elif kind == "response.cancel":
                self.session.commit()  # the open turn ends too: the next delta opens a new one
                for turn in self.unfinished:
                    turn.cancel()
            else:  # session.finish
                self.session.commit()
                self.finishing = True
                await self.queue.put(None)
                return True
        except RequestError as exc:
            await self.error(exc.message, param=exc.field, event_id=event_id)
        return False

    async def _update(self, event: dict[str, Any]) -> None:
        update = event.get("session")
        if not isinstance(update, dict):
            raise RequestError("session", "must be an object of session settings")
        config = {**self.config, **update}
        request = session_request(config)
        try:
            await asyncio.to_thread(self.session.configure, request)
        except RequestError as exc:
            field = "voice" if exc.field == "ref_audio" and "ref_audio" not in config else exc.field
            raise RequestError(f"session.{_FIELD_NAMES.get(field, field)}", exc.message) from None
        self.config = config
        await self.send({"type": "session.updated", "session": self.session_view()})

    async def _append(self, event: dict[str, Any]) -> None:
        delta = event.get("text")
        if not isinstance(delta, str):
            raise RequestError("text", "must be a string (a text delta)")
        if self.finishing:
            raise RequestError("type", "the session is finishing; no more text is taken")
        turn, created = await asyncio.to_thread(self.session.append, delta)
        if created:
            self.unfinished.append(turn)
            await self.queue.put(turn)

    async def _speak_turns(self) -> None:
        while True:
            turn = await self.queue.get()
            if turn is None:
                return
            await self._speak(turn)

    async def _speak(self, turn: SpeechTurn) -> None:
        status = "completed"
        pipe = Pipe(turn.encoded(), turn.cancel_event, self.settings.stream_buffer_pieces)
        try:
            while (data := await pipe.get()) is not None:
                if turn.cancelled:
                    break  # barge-in: nothing more of this turn goes out
                await self.send({"type": "speech.audio.delta", "response_id": turn.id,
                                 "audio": base64.b64encode(data).decode("ascii")})
                self.last_activity = time.monotonic()
        except Cancelled:
            pass
        except SessionClosed:
            raise
        except Exception as exc:  # noqa: BLE001 - the turn failed; the session goes on
            status = "failed"
            await self.error(public_error(exc, "realtime speech"), code="turn_failed", kind="server_error")
        finally:
            pipe.stop()  # not close(): a turn that ends well is not a cancelled one
            if status == "failed" or turn.cancelled:
                turn.cancel()  # the generating thread stops at its next step, and a wait for text ends
            await pipe.worker  # the thread has let go of the turn before its summary is read
        if turn.cancelled and status == "completed":
            status = "cancelled"
        if turn in self.unfinished:
            self.unfinished.remove(turn)
        summary = turn.summary()
        words = summary.pop("words", None)
        if words is not None and status == "completed":
            await self.send({"type": "speech.audio.words", "response_id": turn.id, "words": words})
        if status == "completed":
            self.metrics.observe_result(summary["duration_s"], summary["generation_s"], summary.get("first_audio_s"))
        await self.send({"type": "speech.audio.done", "response_id": turn.id, "status": status, **summary})


async def _refuse(websocket: WebSocket, code: int, reason: str, error_code: str | None) -> None:
    """Tell an accepted client why its session ends: an error event (with ``error_code``), then the close reason."""
    event = {"type": "error", "error": {"type": "invalid_request_error", "code": error_code, "message": reason,
                                        "param": None, "event_id": None}}
    with contextlib.suppress(Exception):  # the client is already gone or stalled
        async with asyncio.timeout(2):  # a stalled client gets two seconds to take the reason, no more
            if error_code is not None:
                await websocket.send_text(json.dumps(event))
            await websocket.close(code, reason[:120])


@router.websocket(PATH, name="realtime_speech")
async def realtime_speech(websocket: WebSocket) -> None:
    """Text deltas in, speech out: see the module's description for the events."""
    state = websocket.app.state
    settings = state.settings
    bucket = caller_bucket(websocket, settings.api_key_list)
    if bucket is None:
        await websocket.send_denial_response(JSONResponse(
            {"error": {"message": "missing or invalid API key (Authorization: Bearer <key>, or ?token=<key>)",
                       "type": "authentication_error", "param": None, "code": None}}, status_code=401,
            headers={"WWW-Authenticate": "Bearer"}))
        return
    await websocket.accept()
    open_sessions: dict[str, int] = getattr(state, "realtime_sessions", None) or {}
    state.realtime_sessions = open_sessions
    service = state.service
    if open_sessions.get(bucket, 0) >= settings.realtime_max_sessions_per_key:
        return await _refuse(websocket, 1008, f"{open_sessions[bucket]} realtime sessions are open for this key; "
                             f"the limit is {settings.realtime_max_sessions_per_key} "
                             "(REALTIME_MAX_SESSIONS_PER_KEY)", "session_limit")
    if state.speech_inflight >= settings.max_concurrent_jobs:
        return await _refuse(websocket, 1013, f"{state.speech_inflight} speech requests are in flight; the limit "
                             f"is {settings.max_concurrent_jobs} (MAX_CONCURRENT_JOBS)", "server_busy")
    if service.holder.error is not None:
        return await _refuse(websocket, 1011, public_error(service.holder.error), "model_unavailable")
    open_sessions[bucket] = open_sessions.get(bucket, 0) + 1
    state.speech_inflight += 1
    try:
        rules = SegmentRules(min_words=settings.realtime_min_words, flush_idle_s=settings.realtime_flush_idle_s,
                             max_chars=settings.realtime_max_turn_chars)
        session = SpeechSession(service, session_request({}), rules)
        connection = RealtimeConnection(websocket, session, {})
        try:
            await connection.run()
        except SessionClosed as closed:
            if closed.code != 1000:
                log.info("realtime session closed: %s", closed.reason)
                await _refuse(websocket, closed.code, closed.reason, None)  # a stall: only the close frame
            else:
                with contextlib.suppress(Exception):  # the client is already gone
                    await asyncio.wait_for(websocket.close(closed.code, closed.reason[:120]), 5)
    finally:
        state.speech_inflight -= 1
        open_sessions[bucket] -= 1
        if not open_sessions[bucket]:
            del open_sessions[bucket]
