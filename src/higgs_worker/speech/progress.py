"""How far a request has come while it runs: chunks done of the plan, audio made, time spent.

The service reports a :class:`Progress` at each chunk's end and every second while a chunk is being generated;
the command line shows it (:class:`ProgressDisplay`), a job's ``/status`` and RunPod's progress updates carry
:meth:`Progress.as_dict`, and the studio shows the chunk under way.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO


@dataclass(frozen=True)
class Progress:
    """One look at a running request."""

    chunks_done: int  # chunks whose audio is complete
    chunks_total: int | None  # the plan's chunks (None when text still arrives, as in a realtime session)
    chunk: int  # the chunk under way, 1-based (``chunks_done`` once all are done)
    audio_s: float  # audio made so far, the chunk under way included
    elapsed_s: float  # since the request started

    @property
    def fraction(self) -> float | None:
        """Share of the plan done, counting the chunk under way as half done (None without a plan)."""
        if not self.chunks_total:
            return None
        under_way = 0.5 if self.chunk > self.chunks_done else 0.0
        return min(1.0, (self.chunks_done + under_way) / self.chunks_total)

    @property
    def elapsed_over_audio(self) -> float | None:
        """Seconds since the request started per second of audio made (below 1: faster than real time). Wall time,
        reference encoding and checks included: not the result's ``real_time_factor`` (generation time only)."""
        return self.elapsed_s / self.audio_s if self.audio_s > 0 else None

    def as_dict(self) -> dict[str, float | int | None]:
        """The JSON a job's ``/status`` and RunPod's progress updates carry while the job runs."""
        ratio = self.elapsed_over_audio
        return {"stage": "generating", "chunks_done": self.chunks_done, "chunks_total": self.chunks_total,
                "chunk": self.chunk, "audio_seconds": round(self.audio_s, 2), "elapsed_s": round(self.elapsed_s, 2),
                "elapsed_over_audio": None if ratio is None else round(ratio, 3)}


ProgressSink = Callable[[Progress], None]


def guarded(sink: ProgressSink | None, log: logging.Logger) -> ProgressSink | None:
    """``sink``, made harmless: the first time it raises, the error is logged and the request goes on without
    reports (a closed terminal or a stopped event loop must never fail the speech)."""
    if sink is None:
        return None
    failed = False

    def tell(progress: Progress) -> None:
        nonlocal failed
        if failed:
            return
        try:
            sink(progress)
        except Exception as exc:  # noqa: BLE001 - progress is a courtesy
            failed = True
            log.warning("progress reports stopped for this request: %s: %s", type(exc).__name__, exc)

    return tell


class Throttled:
    """A sink that passes the first report on, then one whenever ``every_s`` has passed since the last it passed,
    so a slow consumer (a shared store, RunPod's control plane) is not called per chunk or per frame. With
    ``chunk_ends`` a report that a chunk has ended always passes (a person reading lines sees each)."""

    def __init__(self, sink: ProgressSink, every_s: float, clock: Callable[[], float] = time.monotonic,
                 chunk_ends: bool = False) -> None:
        self.sink = sink
        self.every_s = every_s
        self.chunk_ends = chunk_ends
        self._clock = clock
        self._last_at: float | None = None

    def __call__(self, progress: Progress) -> None:
        now = self._clock()
        ended = self.chunk_ends and progress.chunk == progress.chunks_done
        if not ended and self._last_at is not None and now - self._last_at < self.every_s:
            return
        self._last_at = now
        self.sink(progress)


class ProgressDisplay:
    """Shows reports to a person: on a terminal a bar of chunks with the audio made and the real-time factor
    (``huggingface_hub``'s tqdm, as the model download shows), elsewhere one line per report on ``stream``."""

    def __init__(self, bar: bool, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self._bar: Any = None
        self._use_bar = bar

    def __call__(self, progress: Progress) -> None:
        ratio = progress.elapsed_over_audio
        facts = f"{progress.audio_s:.1f} s of audio" + (f", {ratio:.2f} s per second of it" if ratio is not None
                                                        else "")
        if not self._use_bar:
            of = f" of {progress.chunks_total}" if progress.chunks_total else ""
            print(f"chunk {progress.chunk}{of} ({progress.chunks_done} done), {facts}, {progress.elapsed_s:.1f} s",
                  file=self.stream, flush=True)
            return
        if self._bar is None:
            from huggingface_hub.utils import tqdm

            self._bar = tqdm(total=progress.chunks_total, unit="chunk", desc="speaking", file=self.stream)
        self._bar.update(progress.chunks_done - self._bar.n)
        self._bar.set_postfix_str(facts)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
