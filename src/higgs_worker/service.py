"""``synthesize(request)``: the one path from a :class:`SpeechRequest` to encoded speech.

Every entry point (CLI, RunPod handler, HTTP routes) validates its input into a ``SpeechRequest`` and calls
this; nothing below knows who called.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from . import audio, quality, tempo, text
from .engine import AudioTurn, Cancelled, Engine, EngineHolder, ModelLoadError, Sampling, build_context
from .engine.prompt import resolve_scene
from .engine.scheduler import DeviceFault, Job
from .engine.streaming import StreamDecoder, stream_job
from .safe_fetch import GuardedFetcher
from .schema import EngineError, JobRequest, RequestError, SpeechRequest, SpeechResult, Usage
from .settings import Settings
from .storage import Storage, StorageError
from .voices import VoiceLibrary

log = logging.getLogger(__name__)


def public_error(exc: BaseException, context: str = "") -> str:
    """What a caller may be told about ``exc``.

    Refusals written for users (the field and the limit) pass as they are; anything else (a model that failed to
    load, a bug) becomes a generic reason with a short error id, and the full detail, which may name files or
    internals, goes to the log once under that id.
    """
    if isinstance(exc, RequestError | StorageError | DeviceFault):  # DeviceFault: the GPU failed; written for users
        return str(exc)
    if isinstance(exc, EngineError) and isinstance(exc.__cause__, MemoryError):
        return str(exc)  # "out of accelerator memory even alone ...; shorten the text": written for users
    ref = getattr(exc, "_public_error_id", None)
    if ref is None:
        ref = secrets.token_hex(4)
        try:
            exc._public_error_id = ref  # a remembered load failure keeps one id however often it is reported
        except AttributeError:
            pass
        log.error("error %s%s: %s: %s", ref, f" ({context})" if context else "", exc.__class__.__name__, exc,
                  exc_info=exc)
    reason = "model unavailable: the model failed to load" if isinstance(exc, ModelLoadError) else "internal error"
    return f"{reason} (error id {ref}; details are in the server log)"



def ensure_demo_model(directory: Path) -> Path:
    """Write the tiny random model once (demo mode); later starts reuse it."""
    from filelock import FileLock

    directory.mkdir(parents=True, exist_ok=True)
    marker = directory / "TINY_MODEL.json"
    with FileLock(str(directory) + ".lock"):
        if not marker.exists():
            from .engine.tiny import make_tiny_model

            log.info("demo mode: writing the tiny random model to %s", directory)
            make_tiny_model(directory)
    return directory


def engine_factory(settings: Settings):
    """A function that loads the engine as the settings say (used by :class:`EngineHolder`)."""

    def build() -> Engine:
        from .engine import load_model

        if settings.higgs_demo:
            ensure_demo_model(settings.demo_dir)
        elif settings.auto_fetch_models and not (Path(settings.model_path) / "config.json").exists():
            from .models import fetch_models

            try:
                fetch_models(settings)  # first start on an empty volume: download once, under a lock
            except Exception as exc:  # noqa: BLE001 - reported as a load failure, with the reason
                raise ModelLoadError(f"MODEL_PATH folder {settings.model_path} is empty and fetching "
                                     f"{settings.model_repo} failed: {exc.__class__.__name__}: {exc} "
                                     "(run `higgs-worker fetch-models`)") from exc
        loaded = load_model(settings.model_path, settings.tokenizer_path, settings.device, settings.dtype)
        cuda = loaded.device.type == "cuda"
        return Engine(loaded, max_batch_size=settings.max_batch_size, cache_capacity=settings.kv_cache_tokens,
                      compile_decode=settings.compile_decode and cuda, fast_decode=settings.decode_path == "fast",
                      warmup=settings.warmup)

    return build


class SpeechService:
    """Turns requests into speech with one engine and one voice library."""

    def __init__(self, settings: Settings, holder: EngineHolder | None = None,
                 voices: VoiceLibrary | None = None) -> None:
        self.settings = settings
        self.holder = holder or EngineHolder(engine_factory(settings))
        fetcher = None
        if settings.allow_ref_audio_urls:
            fetcher = GuardedFetcher(max_bytes=settings.max_ref_audio_bytes, timeout_s=settings.ref_audio_url_timeout_s,
                                     allow_http=settings.ref_audio_url_allow_http,
                                     allow_loopback=settings.ref_audio_url_allow_loopback,
                                     max_concurrent=settings.max_concurrent_fetches)
        self.voices = voices or VoiceLibrary.from_settings(settings, fetcher)
        self._storage: Storage | None = None
        self._recognizer = None
        self._asr_error: Exception | None = None
        self._asr_lock = threading.Lock()
        self.asr_metrics = None  # set by the HTTP app so speech checks show on /metrics

    @property
    def engine(self) -> Engine:
        return self.holder.get()

    def plan(self, request: SpeechRequest) -> tuple[str, list[str]]:
        """Normalised text and its chunks; refuses too many chunks before any model work. Kept on the request."""
        if request._plan is not None:
            return request._plan
        normalised = text.normalize(request.transcript)
        budget = request.chunk_max_word_num
        if request.chunk_method == "auto":
            budget = text.auto_word_budget(request.max_new_tokens, budget)
        chunks = text.split_chunks(normalised, request.chunk_method, budget, request.chunk_max_num_turns)
        if not chunks:
            raise RequestError("transcript", "has nothing to speak after normalisation")
        if len(chunks) > self.settings.max_chunks:
            raise RequestError("transcript", f"splits into {len(chunks)} chunks; the limit is "
                                             f"{self.settings.max_chunks} (MAX_CHUNKS)")
        request._plan = (normalised, chunks)
        return request._plan

    def check(self, request: SpeechRequest, cancel: threading.Event | None = None) -> None:
        """Everything that can refuse a request before the model runs: text, chunk count, voices, the name a
        result is to be saved under.

        The resolved voices are kept on the request, so a URL or base64 reference is fetched and decoded once.
        """
        self.plan(request)
        self._references(request, cancel)
        if request.save_voice and request.save_voice in self.voices.names():
            raise RequestError("save_voice", f"a voice named {request.save_voice!r} already exists")
        self._check_asr(request)

    def _references(self, request: SpeechRequest, cancel: threading.Event | None = None) -> list:
        if request._references is None:
            request._references = self.voices.resolve(request, cancel)
        return request._references

    def _chunk_jobs(self, request: SpeechRequest, cancel: threading.Event | None, record: _Record,
                    on_frame: Callable[[torch.Tensor], None] | None = None,
                    on_accept: Callable[[torch.Tensor], None] | None = None) -> Iterator[Job]:
        """Start each chunk's generation in turn and yield its job; when resumed, collect its codes.

        The caller may watch the job's frames (``on_frame``) before resuming; the next chunk's prompt carries the
        previous chunks' codes, so chunks run one after another. With ``verify`` each chunk is heard and may be
        generated again; ``on_accept`` gets the plain codes each chunk finally keeps.
        """
        spec = request.verify_spec(self.settings.verify_max_wer, self.settings.verify_max_attempts)
        normalised, chunks = self.plan(request)
        references = self._references(request, cancel)
        speakers = text.speaker_tags(normalised)

        t = time.perf_counter()
        engine = self.engine
        record.timings["model_load"] = time.perf_counter() - t
        t = time.perf_counter()
        turns = [AudioTurn(r.transcript, engine.encode_reference(r.wave)) for r in references]
        record.timings["reference_encode"] = time.perf_counter() - t
        context = build_context(resolve_scene(request.scene_prompt), turns, speakers, request.speaker_descriptions,
                                request.ref_audio_in_system_message)

        sampling = Sampling(request.temperature, request.top_p, request.top_k, request.ras_win_len,
                            request.ras_win_max_num_repeat, request.max_new_tokens)
        history: list[AudioTurn] = []
        buffer = request.generation_chunk_buffer_size
        record.chunks = len(chunks)
        for index, chunk in enumerate(chunks):
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            kept = history[-buffer:] if buffer else []
            job = engine.start(context.prompt(chunk, kept), sampling, record.seed + index, cancel, on_frame)
            yield job
            result = self._count(record, engine.finish(job))
            if spec is not None:
                prompt = context.prompt(chunk, kept)
                result, report = quality.check_chunk(
                    index, chunk, record.seed + index, spec, result,
                    generate=lambda seed, prompt=prompt: self._count(record, engine.generate(prompt, sampling, seed,
                                                                                             cancel)),
                    hear=lambda generation, chunk=chunk: self._hear(engine, generation, chunk),
                    truncated=lambda generation: generation.truncated)
                record.quality.append(report)
                if self.asr_metrics is not None:
                    self.asr_metrics.observe_check(report.best.wer)
                    self.asr_metrics.observe_chunk(len(report.attempts), report.passed)
            if on_accept is not None:
                on_accept(result.codes)
            record.frames += int(result.codes.shape[0])
            record.codes.append(result.codes)
            if result.truncated:
                record.truncated_chunks.append(index)
                record.usage.truncated = True
            history.append(AudioTurn(chunk, result.codes))
        if record.truncated_chunks:
            log.warning("%d of %d chunk(s) reached max_new_tokens (%d frames) before the end of their audio, so the "
                        "speech is cut there (chunks %s); raise max_new_tokens or lower chunk_max_word_num",
                        len(record.truncated_chunks), len(chunks), request.max_new_tokens,
                        ", ".join(str(i + 1) for i in record.truncated_chunks[:10]))
        record.timings["generate"] = record.generation_s

    @staticmethod
    def _count(record: _Record, generation):
        """Add one generation's cost to the request's books (every attempt counts)."""
        record.generation_s += generation.seconds
        record.usage.prompt_tokens += generation.prompt_tokens
        record.usage.audio_frames += generation.steps
        return generation

    def _hear(self, engine: Engine, generation, chunk: str) -> tuple[str, float]:
        """What one chunk's audio says, and how long it is."""
        if generation.codes.shape[0] == 0:
            return "", 0.0
        wave = engine.decode(generation.codes)
        heard = self.recognizer.transcribe(wave, quality.scoring_language(chunk))
        return heard.text, len(wave) / engine.sample_rate

    # -- speech recognition: loaded on first use, beside the engine ----------------------------------------

    @property
    def recognizer(self):
        if self._recognizer is None:
            with self._asr_lock:
                if self._recognizer is None:
                    if self._asr_error is not None:
                        raise self._asr_error
                    from .asr.policy import build_recognizer

                    try:
                        self._recognizer = build_recognizer(self.settings, self.asr_metrics)
                    except ModelLoadError as exc:
                        self._asr_error = exc  # remembered: no new load attempt per request
                        raise
        return self._recognizer

    def _check_asr(self, request: SpeechRequest) -> None:
        if not request.needs_asr:
            return
        from .asr.policy import asr_load_wanted

        if not asr_load_wanted(self.settings):
            field_name = "verify" if request.verify is not False else "timestamps" if request.timestamps else "captions"
            raise RequestError(field_name, "needs speech recognition, which is off on this server (ASR=off, or no "
                                           "model in ASR_PATH)")

    def _timed_words(self, wave: np.ndarray, sample_rate: int, request: SpeechRequest, record: _Record) -> None:
        """Words with times, and captions, of the final audio (after trimming and speed)."""
        if request.timestamps is None and request.captions is None:
            return
        from .asr.captions import captions

        t = time.perf_counter()
        heard = self.recognizer.transcribe(wave, None, sample_rate=sample_rate)
        record.timings["timestamps"] = time.perf_counter() - t
        if request.timestamps == "word":
            record.words = [w.as_dict() for w in heard.words]
        if request.captions is not None:
            record.captions = {"format": request.captions,
                               "text": captions(heard.words, request.captions, duration=len(wave) / sample_rate)}

    def _record(self, request: SpeechRequest) -> _Record:
        seed = request.seed if request.seed is not None else secrets.randbits(63)
        return _Record(seed=seed, started=time.perf_counter())

    def synthesize(self, request: SpeechRequest, cancel: threading.Event | None = None) -> SpeechResult:
        """Generate the whole utterance, chunk by chunk, and encode it in the requested format."""
        record = self._record(request)
        self.check(request, cancel)  # refuse bad text, voices and names before the model runs
        for _job in self._chunk_jobs(request, cancel, record):
            pass
        engine = self.engine
        t = time.perf_counter()
        pieces = record.codes
        codes = torch.cat(pieces) if pieces else torch.zeros((0, engine.num_codebooks), dtype=torch.long)
        wave = engine.decode(codes)  # one decode over all chunks: no seams at the joins
        record.timings["decode"] = time.perf_counter() - t
        if request.trim_silence and self.settings.trim_silence_s > 0:
            from .asr.silence import trim_trailing_silence

            kept = trim_trailing_silence(wave, engine.sample_rate, self.settings.trim_silence_s,
                                         self.settings.silence_threshold_db)
            record.trimmed_s = (len(wave) - len(kept)) / engine.sample_rate
            wave = kept
        if request.save_voice:
            self._save_voice(request, wave, engine.sample_rate, record)
        if request.speed != 1.0:
            t = time.perf_counter()
            wave = tempo.stretch(wave, engine.sample_rate, request.speed)
            record.timings["speed"] = time.perf_counter() - t
        self._timed_words(wave, engine.sample_rate, request, record)
        t = time.perf_counter()
        encoded = audio.encode(wave, request.format, engine.sample_rate)
        record.timings["encode"] = time.perf_counter() - t
        return record.result(wave, engine.sample_rate, request.format, encoded)

    def _save_voice(self, request: SpeechRequest, wave: np.ndarray, sample_rate: int, record: _Record) -> None:
        """Keep the generated speech (at its natural pace) as a library voice with its text as the transcript.

        A failure here does not cost the caller the audio: it is reported beside it (``save_voice_error``).
        """
        try:
            buf = io.BytesIO()
            sf.write(buf, wave, sample_rate, format="WAV", subtype="PCM_16")
            normalised, _ = self.plan(request)
            self.voices.add_upload(request.save_voice, buf.getvalue(), normalised)
            record.saved_voice = request.save_voice
            log.info("saved the generated speech as voice %r (%.2f s)", request.save_voice, len(wave) / sample_rate)
        except RequestError as exc:
            record.save_voice_error = f"save_voice: {exc.message}"

    def synthesize_stream(self, request: SpeechRequest, cancel: threading.Event | None = None) -> SpeechStream:
        """The same speech as :meth:`synthesize`, as waveform pieces while it is generated."""
        self.check(request, cancel)
        return SpeechStream(self, request, cancel)


    # -- jobs: the RunPod handler and the HTTP job routes share this ---------------------------------------

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            self._storage = Storage(self.settings)
        return self._storage

    def parse_job(self, job_input: Any) -> JobRequest:
        """Validate a job input before it is queued, so a bad one is refused without being kept."""
        return JobRequest.parse(job_input)

    def run_job(self, job_input: Any, cancel: threading.Event | None = None,
                emit: Callable[[dict[str, Any]], None] | None = None, job_id: str | None = None,
                queued_s: float | None = None) -> dict[str, Any]:
        """A RunPod-style job: input dict (or a parsed :class:`JobRequest`) in, output dict out;
        ``{"error": "..."}`` for anything refused or failed, in words a caller may see (:func:`public_error`).

        :class:`Cancelled`, and any error once ``cancel`` is set, propagate so the caller can record why it stopped.
        """
        try:
            request = job_input if isinstance(job_input, JobRequest) else JobRequest.parse(job_input)
            if request.stream and emit is not None:
                output = self._run_streamed(request, cancel, emit)
            else:
                output = self.deliver(self.synthesize(request, cancel), request, job_id)
        except Cancelled:
            raise
        except Exception as exc:  # noqa: BLE001 - a job answers with an error, never a crash
            if cancel is not None and cancel.is_set():
                raise
            return {"error": public_error(exc, f"job {job_id}" if job_id else "")}
        if queued_s is not None:
            output.setdefault("timings", {})["queue"] = round(queued_s, 4)
        return output

    def deliver(self, result: SpeechResult, request: JobRequest, job_id: str | None) -> dict[str, Any]:
        """Inline base64 when it fits, S3 when asked or when too large for inline and a bucket is configured."""
        output = result.metadata()
        bucket = request.s3_bucket or (self.settings.s3_bucket if len(result.audio) > self.settings.max_inline_bytes
                                       else None)
        if bucket:
            key = request.s3_key or self.storage.default_key(result.format, job_id)
            t = time.perf_counter()
            try:
                uploaded = self.storage.upload(result.audio, bucket, key, audio.MEDIA_TYPES[result.format],
                                               self.settings.s3_presign_expiry_s)
            except StorageError as exc:
                if len(result.audio) > self.settings.max_inline_bytes:
                    raise
                output["s3_error"] = str(exc)  # the audio still reaches the caller inline
            else:
                output["s3"] = uploaded.as_dict()
                self._upload_sidecars(result, bucket, key, output)
                output["timings"]["upload"] = round(time.perf_counter() - t, 4)
                return output
        if len(result.audio) > self.settings.max_inline_bytes:
            raise RequestError("s3_bucket", f"the audio is {len(result.audio)} bytes, over the inline limit of "
                                            f"{self.settings.max_inline_bytes} (MAX_INLINE_BYTES); give `s3_bucket` "
                                            "or configure S3_BUCKET")
        output["audio_base64"] = base64.b64encode(result.audio).decode("ascii")
        return output

    def _upload_sidecars(self, result: SpeechResult, bucket: str, key: str, output: dict[str, Any]) -> None:
        """Captions (``KEY.srt`` / ``KEY.vtt``) and word times (``KEY.words.json``) beside the audio object, each
        with a presigned URL; they stay inline in the output too. A failure is reported, the audio stays."""
        base = key.rsplit(".", 1)[0] if "." in key.rsplit("/", 1)[-1] else key
        files: list[tuple[str, str, bytes, str]] = []
        captions = result.extras.get("captions")
        if captions:
            media = "application/x-subrip" if captions["format"] == "srt" else "text/vtt"
            files.append(("captions", f"{base}.{captions['format']}", captions["text"].encode("utf-8"), media))
        if result.extras.get("words") is not None:
            files.append(("words", f"{base}.words.json", json.dumps(result.extras["words"]).encode("utf-8"),
                          "application/json"))
        for name, sidecar_key, data, media in files:
            try:
                uploaded = self.storage.upload(data, bucket, sidecar_key, media, self.settings.s3_presign_expiry_s)
            except (StorageError, RequestError) as exc:
                output.setdefault("s3_sidecar_errors", []).append(f"{name}: {exc}")
            else:
                output["s3"][name] = {"key": uploaded.key, "url": uploaded.url, "presigned_url": uploaded.presigned_url}

    def _run_streamed(self, request: JobRequest, cancel: threading.Event | None,
                      emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Emit the encoded audio in pieces of at most ``STREAM_CHUNK_BYTES``; return the metadata."""
        stream = self.synthesize_stream(request, cancel)
        limit = self.settings.stream_chunk_bytes
        index = 0
        for data in stream.encoded():
            for start in range(0, len(data), limit):
                emit({"chunk_index": index, "format": request.format,
                      "audio_base64": base64.b64encode(data[start:start + limit]).decode("ascii")})
                index += 1
        output = stream.metadata()
        output["stream_chunks"] = index
        return output


@dataclass
class _Record:
    """What one request cost, filled in while it runs."""

    seed: int
    started: float
    chunks: int = 0
    frames: int = 0
    generation_s: float = 0.0
    usage: Usage = field(default_factory=Usage)
    timings: dict[str, float] = field(default_factory=dict)
    first_audio_s: float | None = None
    codes: list[torch.Tensor] = field(default_factory=list)
    truncated_chunks: list[int] = field(default_factory=list)  # chunks cut at max_new_tokens
    saved_voice: str | None = None
    save_voice_error: str | None = None
    quality: list = field(default_factory=list)  # quality.ChunkQuality per chunk, with verify
    words: list[dict[str, Any]] | None = None
    captions: dict[str, str] | None = None
    trimmed_s: float = 0.0

    def extras(self) -> dict[str, Any]:
        """Fields every result carries beyond the audio: truncation, checks, timings, the saved voice."""
        out: dict[str, Any] = {"truncated": bool(self.truncated_chunks)}
        if self.quality:
            out["quality"] = quality.summary(self.quality)
        if self.words is not None:
            out["words"] = self.words
        if self.captions is not None:
            out["captions"] = self.captions
        if self.trimmed_s:
            out["trimmed_silence_s"] = round(self.trimmed_s, 3)
        if self.truncated_chunks:
            out["truncated_chunks"] = list(self.truncated_chunks)
        if self.saved_voice:
            out["saved_voice"] = self.saved_voice
        if self.save_voice_error:
            out["save_voice_error"] = self.save_voice_error
        return out

    def result(self, wave, sample_rate: int, fmt: str, encoded: bytes) -> SpeechResult:
        self.timings["total"] = time.perf_counter() - self.started
        return SpeechResult(waveform=wave, sample_rate=sample_rate, format=fmt, audio=encoded, seed=self.seed,
                            chunks=self.chunks, frames=self.frames, generation_s=self.generation_s,
                            usage=self.usage, timings=self.timings, extras=self.extras())


class SpeechStream:
    """Iterate for float32 waveform pieces; afterwards :meth:`metadata` says what was made.

    Pieces come from incremental codec decoding, so their concatenation equals the non-streamed waveform
    within the tolerance stated in :mod:`higgs_worker.engine.streaming`.
    """

    def __init__(self, service: SpeechService, request: SpeechRequest, cancel: threading.Event | None) -> None:
        self.request = request
        self.sample_rate = 0
        self._service = service
        self._cancel = cancel
        self._record = service._record(request)
        self.samples = 0
        self._sent: list[np.ndarray] = []

    def __iter__(self) -> Iterator[np.ndarray]:
        engine = self._service.engine
        self.sample_rate = engine.sample_rate
        decoder = StreamDecoder(engine.stream_decode, engine.sample_rate // engine.frame_rate, engine.num_codebooks)
        record = self._record
        stretcher = tempo.TempoStretcher(self.request.speed, engine.sample_rate)
        natural: list[np.ndarray] = []  # the unstretched audio, kept only to save it as a voice
        for piece in self._pieces(engine, decoder, record):
            if self.request.save_voice:
                natural.append(piece)
            yield from self._emit(stretcher.feed(piece))
        tail = decoder.flush()
        if self.request.save_voice:
            natural.append(tail)
            self._service._save_voice(self.request, np.concatenate(natural), engine.sample_rate, record)
        yield from self._emit(stretcher.feed(tail))
        yield from self._emit(stretcher.close())
        if self._sent:
            self._service._timed_words(np.concatenate(self._sent), engine.sample_rate, self.request, record)
        record.timings["total"] = time.perf_counter() - record.started
        if record.first_audio_s is not None:
            record.timings["first_audio"] = record.first_audio_s

    def _pieces(self, engine: Engine, decoder: StreamDecoder, record: _Record) -> Iterator[np.ndarray]:
        """Decoded audio of the request. Frames are decoded as they are made; with ``verify`` a chunk's audio is
        held until the chunk has passed (or spent its attempts), which costs that chunk's generation and check in
        time to first audio."""
        service = self._service
        if self.request.verify is False:
            frames: queue.Queue[torch.Tensor] = queue.Queue()
            for job in service._chunk_jobs(self.request, self._cancel, record, on_frame=frames.put):
                yield from stream_job(job, frames, decoder, engine.num_codebooks)
            return
        accepted: list[torch.Tensor] = []
        for _job in service._chunk_jobs(self.request, self._cancel, record, on_accept=accepted.append):
            while accepted:  # the chunk before this one has passed
                yield decoder.push(accepted.pop(0))
        while accepted:
            yield decoder.push(accepted.pop(0))

    def encoded(self) -> Iterator[bytes]:
        """The stream encoded in the request's format by one encoder, at the engine's own sample rate (known
        once the engine is up, so the first piece is taken before the encoder starts)."""
        pieces = iter(self)
        first = next(pieces, None)
        head = [] if first is None else [first]
        yield from audio.encode_stream(itertools.chain(head, pieces), self.request.format,
                                       self.sample_rate or audio.SAMPLE_RATE)

    def _emit(self, piece: np.ndarray) -> Iterator[np.ndarray]:
        if piece.size:
            if self.request.timestamps is not None or self.request.captions is not None:
                self._sent.append(piece)  # heard once the stream ends, for word times and captions
            if self._record.first_audio_s is None:
                self._record.first_audio_s = time.perf_counter() - self._record.started
            self.samples += piece.size
            yield piece

    def metadata(self) -> dict:
        record = self._record
        duration = self.samples / self.sample_rate if self.sample_rate else 0.0
        return {
            "format": self.request.format, "sample_rate": self.sample_rate, "duration_s": round(duration, 4),
            "frames": record.frames, "chunks": record.chunks, "seed": record.seed,
            "generation_s": round(record.generation_s, 4), "usage": record.usage.as_dict(),
            "timings": {k: round(v, 4) for k, v in record.timings.items()}, **record.extras(),
        }
