"""``synthesize(request)``: the one path from a :class:`SpeechRequest` to encoded speech.

Every entry point (CLI, RunPod handler, HTTP routes, and the job runner below them) validates its input into a
``SpeechRequest`` and calls this; nothing below knows who called. The public surface: :meth:`SpeechService.plan`,
:meth:`~SpeechService.check`, :meth:`~SpeechService.synthesize` and :meth:`~SpeechService.synthesize_stream`.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .. import audio
from ..audio import loudness, tempo
from ..audio.silence import trim_trailing_silence
from ..core import spoken, text
from ..core.errors import Cancelled, ModelLoadError, RequestError
from ..core.results import SpeechResult
from ..core.safe_fetch import GuardedFetcher
from ..core.schema import SpeechRequest
from ..core.settings import Settings
from ..engine import AudioTurn, Engine, EngineHolder, Sampling, build_context, load_model
from ..engine.prompt import resolve_scene
from ..engine.scheduler import Job
from ..voices import VoiceLibrary
from ..voices.aliases import VoiceAliases
from ..weights.demo import ensure_demo_model
from ..weights.fetch import fetch_models
from ..weights.policy import asr_load_wanted
from . import quality
from .budget import check_references, chunk_frames, fit_history
from .lexicon import Lexicon
from .progress import ProgressSink, guarded
from .recognition import build_recognizer
from .record import Record
from .saving import save_voice
from .stream import SpeechStream
from .timing import timed_words
from .voice_check import VoiceChecks

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 1.0  # a report at least this often while a chunk is generated, when asked for


def engine_factory(settings: Settings):
    """A function that loads the engine as the settings say (used by :class:`EngineHolder`)."""

    def build() -> Engine:
        if settings.higgs_demo:
            ensure_demo_model(settings.demo_dir)
        elif settings.auto_fetch_models and not (Path(settings.model_path) / "config.json").exists():
            try:
                fetch_models(settings)  # first start on an empty volume: download once, under a lock
            except Exception as exc:  # noqa: BLE001 - reported as a load failure, with the reason
                raise ModelLoadError(f"MODEL_PATH folder {settings.model_path} is empty and fetching "
                                     f"{settings.model_repo} failed: {exc.__class__.__name__}: {exc} "
                                     "(run `higgs-worker fetch-models`)") from exc
        loaded = load_model(settings.model_path, settings.tokenizer_path, settings.device, settings.dtype,
                            strict=settings.strict_weights)
        cuda = loaded.device.type == "cuda"
        engine = Engine(loaded, max_batch_size=settings.max_batch_size, cache_capacity=settings.kv_cache_tokens,
                        compile_decode=settings.compile_decode and cuda, decode_path=settings.decode_path,
                        warmup=settings.warmup)
        if settings.self_bench:  # once at start, before the first job: the table goes to the log
            from ..engine.benchmark import log_self_bench

            log_self_bench(engine)
        return engine

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
        self.aliases = VoiceAliases.from_setting(settings.voice_aliases)  # OpenAI's voice names, and the operator's
        self.lexicon = Lexicon(settings.lexicon_path)
        self._recognizer = None
        self._asr_error: Exception | None = None
        self._asr_lock = threading.Lock()
        self.asr_metrics = None  # set by the HTTP app so speech checks show on /metrics
        self.voice_checks = VoiceChecks(settings)  # the voice check's speaker model, loaded on first use

    @property
    def engine(self) -> Engine:
        return self.holder.get()

    def plan(self, request: SpeechRequest) -> tuple[str, list[str]]:
        """Normalised text and its chunks; refuses too many chunks before any model work. Kept on the request."""
        if request._plan is not None:
            return request._plan
        request._spoken = self.lexicon.sent_text(request.transcript, request.pronunciations, request.normalize_text)
        normalised = text.normalize(spoken.joined(request._spoken))
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
            request._references = self.aliases.resolve(self.voices, request, cancel)
            check_references(request._references, self.settings.max_prompt_tokens)
        return request._references

    def chunk_jobs(self, request: SpeechRequest, cancel: threading.Event | None, record: Record,
                    on_frame: Callable[[torch.Tensor], None] | None = None,
                    on_accept: Callable[[torch.Tensor], None] | None = None,
                    segments: Iterable[str] | None = None, progress: ProgressSink | None = None) -> Iterator[Job]:
        """Start each chunk's generation in turn and yield its job; when resumed, collect its codes.

        The caller may watch the job's frames (``on_frame``) before resuming; the next chunk's prompt carries the
        previous chunks' codes, so chunks run one after another. With ``verify`` each chunk is heard and may be
        generated again; ``on_accept`` gets the plain codes each chunk finally keeps. ``segments`` (normalised text
        that arrives in pieces, possibly blocking for each) replaces the request's own planned chunks. ``progress``
        hears at each chunk's end, and every ``PROGRESS_EVERY_S`` while one is generated; a sink that fails is
        dropped, never failing the speech.
        """
        spec = request.verify_spec(self.settings.verify_max_wer, self.settings.verify_max_attempts)
        if segments is None:
            normalised, chunks = self.plan(request)
            speakers = text.speaker_tags(normalised)
        else:
            chunks, speakers = segments, []
        record.chunks_total = len(chunks) if isinstance(chunks, list) else None
        progress = guarded(progress, log)
        references = self._references(request, cancel)

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
        voice = self.voice_checks.start(spec, references, speakers, engine, record.timings, self.asr_metrics)
        retry_budget = 0.0
        for index, chunk in enumerate(chunks):
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            record.chunks = index + 1
            kept = fit_history(engine, context, chunk, history, buffer, request.max_new_tokens,
                               self.settings.max_prompt_tokens)
            sampling = replace(sampling, max_new_tokens=chunk_frames(request, chunk))
            retry_budget += self.settings.verify_max_frames_ratio * sampling.max_new_tokens  # checks' frame budget
            job = engine.start(context.prompt(chunk, kept), sampling, record.seed + index, cancel, on_frame)
            yield job
            # an attempt the speech check may refuse counts no audio while it is made
            result = self._count(record, engine.finish(job, *self._waiting(engine, record, progress, spec is None)))
            if spec is not None:
                prompt = context.prompt(chunk, kept)

                def again(seed: int, prompt=prompt, sampling=sampling):  # another attempt, reporting as it goes
                    return self._count(record, engine.generate(prompt, sampling, seed, cancel,
                                                               *self._waiting(engine, record, progress, False)))

                result, report = quality.check_chunk(
                    index, chunk, record.seed + index, spec, result, generate=again,
                    hear=lambda generation, chunk=chunk: self._hear(engine, generation, chunk),
                    truncated=lambda generation: generation.truncated, voice=voice and voice.for_chunk(chunk),
                    may_retry=lambda: record.usage.audio_frames < retry_budget)
                record.quality.append(report)
                if voice is not None:
                    voice.settle(report.kept)
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
            record.chunks_done = index + 1
            if progress is not None:
                progress(record.progress(engine.frame_rate))
        if record.truncated_chunks:
            log.warning("%d of %d chunk(s) reached max_new_tokens (%d frames) before the end of their audio, so the "
                        "speech is cut there (chunks %s); raise max_new_tokens or lower chunk_max_word_num",
                        len(record.truncated_chunks), record.chunks, request.max_new_tokens,
                        ", ".join(str(i + 1) for i in record.truncated_chunks[:10]))
        record.timings["generate"] = record.generation_s

    @staticmethod
    def _waiting(engine: Engine, record: Record, progress: ProgressSink | None,
                 count_frames: bool) -> tuple[Callable[[int], None] | None, float]:
        """What the engine tells while a chunk is generated (``on_wait``, ``every_s``): ``progress`` of the request,
        the chunk's frames so far included when ``count_frames``."""
        if progress is None:
            return None, PROGRESS_EVERY_S
        return (lambda made: progress(record.progress(engine.frame_rate, made if count_frames else 0)),
                PROGRESS_EVERY_S)

    @staticmethod
    def _count(record: Record, generation):
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
                    try:
                        self._recognizer = build_recognizer(self.settings, self.asr_metrics)
                    except ModelLoadError as exc:
                        self._asr_error = exc  # remembered: no new load attempt per request
                        raise
        return self._recognizer

    def _check_asr(self, request: SpeechRequest) -> None:
        self.voice_checks.require(request)
        if not request.needs_asr:
            return
        if not asr_load_wanted(self.settings):
            field_name = "verify" if request.verify is not False else "timestamps" if request.timestamps else "captions"
            raise RequestError(field_name, "needs speech recognition, which is off on this server (ASR=off, or no "
                                           "model in ASR_PATH)")

    def word_times(self, wave: np.ndarray, sample_rate: int, request: SpeechRequest, record: Record) -> None:
        if request.timestamps is not None or request.captions is not None:  # in the words the user wrote
            timed_words(self.recognizer, wave, sample_rate, request, record)

    def loudness_target(self, request: SpeechRequest) -> float | None:
        return request.loudness if request.loudness is not None else self.settings.loudness_target_lufs

    def new_record(self, request: SpeechRequest) -> Record:
        seed = request.seed if request.seed is not None else secrets.randbits(63)
        return Record(seed=seed, started=time.perf_counter(), warnings=text.tag_warnings(request.transcript),
                      speed=request.speed)

    def synthesize(self, request: SpeechRequest, cancel: threading.Event | None = None,
                   progress: ProgressSink | None = None) -> SpeechResult:
        """Generate the whole utterance, chunk by chunk, and encode it in the requested format; ``progress``
        hears how far it has come while the chunks are generated."""
        record = self.new_record(request)
        self.check(request, cancel)  # refuse bad text, voices and names before the model runs
        for _job in self.chunk_jobs(request, cancel, record, progress=progress):
            pass
        engine = self.engine
        t = time.perf_counter()
        pieces = record.codes
        codes = torch.cat(pieces) if pieces else torch.zeros((0, engine.num_codebooks), dtype=torch.long)
        wave = engine.decode(codes)  # one decode over all chunks: no seams at the joins
        record.timings["decode"] = time.perf_counter() - t
        if request.trim_silence and self.settings.trim_silence_s > 0:
            kept = trim_trailing_silence(wave, engine.sample_rate, self.settings.trim_silence_s,
                                         self.settings.silence_threshold_db)
            record.trimmed_s = (len(wave) - len(kept)) / engine.sample_rate
            wave = kept
        if request.save_voice:
            self.save_generated(request, wave, engine.sample_rate, record)
        if request.speed != 1.0:
            t = time.perf_counter()
            wave = tempo.stretch(wave, engine.sample_rate, request.speed)
            record.timings["speed"] = time.perf_counter() - t
        t = time.perf_counter()  # one gain for the whole utterance, never per chunk
        wave, record.loudness = loudness.normalize(wave, engine.sample_rate, self.loudness_target(request),
                                                   self.settings.loudness_true_peak_dbtp)
        record.timings["loudness"] = time.perf_counter() - t
        self.word_times(wave, engine.sample_rate, request, record)
        t = time.perf_counter()
        encoded = audio.encode(wave, request.format, engine.sample_rate)
        record.timings["encode"] = time.perf_counter() - t
        return record.result(wave, engine.sample_rate, request.format, encoded)

    def save_generated(self, request: SpeechRequest, wave: np.ndarray, sample_rate: int, record: Record) -> None:
        save_voice(self.voices, request.save_voice or "", self.plan(request)[0], wave, sample_rate, record)

    def synthesize_stream(self, request: SpeechRequest, cancel: threading.Event | None = None) -> SpeechStream:
        """The same speech as :meth:`synthesize`, as waveform pieces while it is generated."""
        self.check(request, cancel)
        return SpeechStream(self, request, cancel)

    def check_voices(self, request: SpeechRequest, cancel: threading.Event | None = None) -> None:
        """The checks of :meth:`check` that need no text: the voices (resolved once, kept on the request) and
        speech recognition where the request asks for it."""
        self._references(request, cancel)
        self._check_asr(request)

    def synthesize_segments(self, request: SpeechRequest, segments: Iterable[str],
                            cancel: threading.Event | None = None) -> SpeechStream:
        """Speech of text that arrives in pieces (a realtime turn): ``segments`` yields each normalised piece when
        it is ready, and may block for it. Each is generated with the earlier pieces' audio as context (the
        long-form buffer) and all are decoded as one stream; ``request`` gives the voice, scene, sampling and
        format, and its own text is not spoken."""
        self.check_voices(request, cancel)
        return SpeechStream(self, request, cancel, segments)
