"""Speech as waveform pieces while it is generated: :class:`SpeechStream`, made by
:meth:`~.service.SpeechService.synthesize_stream` (the request's own chunks) and
:meth:`~.service.SpeechService.synthesize_segments` (text that arrives in pieces)."""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import torch

from .. import audio
from ..audio import loudness, tempo
from ..core.schema import SpeechRequest
from ..engine import Engine
from ..engine.streaming import StreamDecoder, stream_job
from .progress import Progress
from .record import Record

if TYPE_CHECKING:
    from .service import SpeechService


class SpeechStream:
    """Iterate for float32 waveform pieces; afterwards :meth:`metadata` says what was made.

    Pieces come from incremental codec decoding, so their concatenation equals the non-streamed waveform
    within the tolerance stated in :mod:`higgs_worker.engine.streaming`.
    """

    def __init__(self, service: SpeechService, request: SpeechRequest, cancel: threading.Event | None,
                 segments: Iterable[str] | None = None) -> None:
        self.request = request
        self._segments = segments
        self.sample_rate = 0
        self._frame_rate = 0  # the engine's, once iteration has begun
        self._service = service
        self._cancel = cancel
        self._record = service.new_record(request)
        self.samples = 0
        self._sent: list[np.ndarray] = []

    def __iter__(self) -> Iterator[np.ndarray]:
        engine = self._service.engine
        self.sample_rate = engine.sample_rate
        self._frame_rate = engine.frame_rate
        decoder = StreamDecoder(engine.stream_decode, engine.sample_rate // engine.frame_rate, engine.num_codebooks)
        record = self._record
        stretcher = tempo.TempoStretcher(self.request.speed, engine.sample_rate)
        refs = self.request._references or []  # one constant gain, from the reference and the first second
        self._level = loudness.StreamLeveller(engine.sample_rate, self._service.loudness_target(self.request),
                                              self._service.settings.loudness_true_peak_dbtp,
                                              np.concatenate([r.wave for r in refs]) if refs else None)
        natural: list[np.ndarray] = []  # the unstretched audio, kept only to save it as a voice
        for piece in self._pieces(engine, decoder, record):
            if self.request.save_voice:
                natural.append(piece)
            yield from self._emit(stretcher.feed(piece))
        tail = decoder.flush()
        if self.request.save_voice:
            natural.append(tail)
            self._service.save_generated(self.request, np.concatenate(natural), engine.sample_rate, record)
        yield from self._emit(stretcher.feed(tail))
        yield from self._emit(stretcher.close(), last=True)
        record.loudness = self._level.report()
        if self._sent:
            self._service.word_times(np.concatenate(self._sent), engine.sample_rate, self.request, record)
        record.timings["total"] = time.perf_counter() - record.started
        if record.first_audio_s is not None:
            record.timings["first_audio"] = record.first_audio_s

    def progress(self) -> Progress:
        """How far the stream has come: chunks done of the plan, and the audio sent so far (a chunk's audio goes
        out while it is made, before the chunk's frames are counted). Cheap: the SSE route asks it for every
        piece, on the event loop."""
        made = self._record.progress(self._frame_rate or 1)
        return replace(made, audio_s=self.samples / self.sample_rate) if self.sample_rate else made

    def _pieces(self, engine: Engine, decoder: StreamDecoder, record: Record) -> Iterator[np.ndarray]:
        """Decoded audio of the request. Frames are decoded as they are made; with ``verify`` a chunk's audio is
        held until the chunk has passed (or spent its attempts), which costs that chunk's generation and check in
        time to first audio."""
        service = self._service
        if self.request.verify is False:
            frames: queue.Queue[torch.Tensor] = queue.Queue()
            for job in service.chunk_jobs(self.request, self._cancel, record, on_frame=frames.put,
                                           segments=self._segments):
                yield from stream_job(job, frames, decoder, engine.num_codebooks)
            return
        accepted: list[torch.Tensor] = []
        for _job in service.chunk_jobs(self.request, self._cancel, record, on_accept=accepted.append,
                                        segments=self._segments):
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

    def _emit(self, piece: np.ndarray, last: bool = False) -> Iterator[np.ndarray]:
        piece = self._level.feed(piece, last)
        if piece.size:
            if self.request.timestamps is not None or self.request.captions is not None:
                self._sent.append(piece)  # heard once the stream ends, for word times and captions
            if self._record.first_audio_s is None:
                self._record.first_audio_s = time.perf_counter() - self._record.started
            self.samples += piece.size
            yield piece

    def extras(self) -> dict:
        """What the result carries beyond the audio (:meth:`.record.Record.extras`): truncation, checks, word
        times, captions, warnings, loudness, the saved voice."""
        return self._record.extras()

    def metadata(self) -> dict:
        record = self._record
        duration = self.samples / self.sample_rate if self.sample_rate else 0.0
        return {
            "format": self.request.format, "sample_rate": self.sample_rate, "duration_s": round(duration, 4),
            "frames": record.frames, "chunks": record.chunks, "seed": record.seed,
            "generation_s": round(record.generation_s, 4), "usage": record.usage.as_dict(),
            "timings": {k: round(v, 4) for k, v in record.timings.items()}, **self.extras(),
        }
