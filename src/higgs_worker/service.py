"""``synthesize(request)``: the one path from a :class:`SpeechRequest` to encoded speech.

Every entry point (CLI, RunPod handler, HTTP routes) validates its input into a ``SpeechRequest`` and calls
this; nothing below knows who called.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from pathlib import Path

import torch

from . import audio, text
from .engine import AudioTurn, Engine, EngineHolder, Sampling, build_context
from .schema import RequestError, SpeechRequest, SpeechResult, Usage
from .settings import Settings
from .voices import VoiceLibrary

log = logging.getLogger(__name__)


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
        loaded = load_model(settings.model_path, settings.tokenizer_path, settings.device, settings.dtype)
        return Engine(loaded)

    return build


class SpeechService:
    """Turns requests into speech with one engine and one voice library."""

    def __init__(self, settings: Settings, holder: EngineHolder | None = None,
                 voices: VoiceLibrary | None = None) -> None:
        self.settings = settings
        self.holder = holder or EngineHolder(engine_factory(settings))
        self.voices = voices or VoiceLibrary(settings.voices_dir, settings.max_ref_audio_bytes,
                                             settings.max_ref_audio_seconds)

    @property
    def engine(self) -> Engine:
        return self.holder.get()

    def plan(self, request: SpeechRequest) -> tuple[str, list[str]]:
        """Normalised text and its chunks; refuses too many chunks before any model work."""
        normalised = text.normalize(request.transcript)
        chunks = text.split_chunks(normalised, request.chunk_method, request.chunk_max_word_num,
                                   request.chunk_max_num_turns)
        if not chunks:
            raise RequestError("transcript", "has nothing to speak after normalisation")
        if len(chunks) > self.settings.max_chunks:
            raise RequestError("transcript", f"splits into {len(chunks)} chunks; the limit is "
                                             f"{self.settings.max_chunks} (MAX_CHUNKS)")
        return normalised, chunks

    def synthesize(self, request: SpeechRequest, cancel: threading.Event | None = None) -> SpeechResult:
        """Generate the whole utterance, chunk by chunk, and encode it in the requested format."""
        started = time.perf_counter()
        normalised, chunks = self.plan(request)
        references = self.voices.resolve(request)
        speakers = text.speaker_tags(normalised)
        timings: dict[str, float] = {}

        t = time.perf_counter()
        engine = self.engine
        timings["model_load"] = time.perf_counter() - t

        t = time.perf_counter()
        turns = [AudioTurn(r.transcript, engine.encode_reference(r.wave)) for r in references]
        timings["reference_encode"] = time.perf_counter() - t
        context = build_context(request.scene_prompt, turns, speakers)

        seed = request.seed if request.seed is not None else secrets.randbits(63)
        sampling = Sampling(request.temperature, request.top_p, request.top_k, request.ras_win_len,
                            request.ras_win_max_num_repeat, request.max_new_tokens)
        history: list[AudioTurn] = []
        pieces: list[torch.Tensor] = []
        usage = Usage()
        generation_s = 0.0
        buffer = request.generation_chunk_buffer_size
        for index, chunk in enumerate(chunks):
            kept = history[-buffer:] if buffer else []
            result = engine.generate(context.prompt(chunk, kept), sampling, seed + index, cancel)
            generation_s += result.seconds
            usage.prompt_tokens += result.prompt_tokens
            usage.audio_frames += result.steps
            pieces.append(result.codes)
            history.append(AudioTurn(chunk, result.codes))
        timings["generate"] = generation_s

        t = time.perf_counter()
        codes = torch.cat(pieces) if pieces else torch.zeros((0, engine.num_codebooks), dtype=torch.long)
        wave = engine.decode(codes)  # one decode over all chunks: no seams at the joins
        timings["decode"] = time.perf_counter() - t

        t = time.perf_counter()
        encoded = audio.encode(wave, request.format, engine.sample_rate)
        timings["encode"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - started
        return SpeechResult(waveform=wave, sample_rate=engine.sample_rate, format=request.format, audio=encoded,
                            seed=seed, chunks=len(chunks), frames=int(codes.shape[0]), generation_s=generation_s,
                            usage=usage, timings=timings)
