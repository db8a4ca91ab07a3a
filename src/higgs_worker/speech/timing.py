"""Word times and captions of the final audio, shown in the words the user wrote.

The recogniser hears what was said ("twenty-three dollars", "Win"); the words that say a rewritten piece of text
(a spoken form or a respelling, :mod:`higgs_worker.core.spoken`) are merged back into one word carrying what the
user wrote (``$23``, ``Nguyen``), from the first one's start to the last one's end. Words that cannot be aligned
with the text sent stay as heard.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from ..asr.captions import captions
from ..asr.types import Word
from ..core import spoken
from ..core.schema import SpeechRequest
from .record import Record


def written_words(words: Sequence[Word], pieces: Sequence[spoken.Piece] | None) -> list[Word]:
    """``words`` with each run that says a rewritten piece merged into the written form."""
    if not pieces or not any(p.written is not None for p in pieces):
        return list(words)
    runs = {first: (last, written) for first, last, written in spoken.restore([w.word for w in words], pieces)}
    out: list[Word] = []
    index = 0
    while index < len(words):
        if index in runs:
            last, written = runs[index]
            out.append(Word(written, words[index].start, words[last].end))
            index = last + 1
        else:
            out.append(words[index])
            index += 1
    return out


def timed_words(recognizer, wave: np.ndarray, sample_rate: int, request: SpeechRequest, record: Record) -> None:
    """Words with times, and captions, of the final audio (after trimming and speed), in the written form."""
    if request.timestamps is None and request.captions is None:
        return
    t = time.perf_counter()
    heard = recognizer.transcribe(wave, None, sample_rate=sample_rate)
    record.timings["timestamps"] = time.perf_counter() - t
    words = written_words(heard.words, request._spoken)
    if request.timestamps == "word":
        record.words = [w.as_dict() for w in words]
    if request.captions is not None:
        record.captions = {"format": request.captions,
                           "text": captions(words, request.captions, duration=len(wave) / sample_rate)}
