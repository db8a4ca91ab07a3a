"""Realtime sessions: text that arrives in pieces (an LLM's tokens) spoken as it comes, one voice across a turn.

A :class:`SpeechSession` holds a session's settings (a :class:`~higgs_worker.core.schema.SpeechRequest` whose own
text is never spoken) and its turns. A :class:`SpeechTurn` takes text deltas; its :class:`Segmenter` hands out
a segment at the first clause or sentence boundary once ``min_words`` words have arrived, and later segments at
sentence boundaries as more text comes (a flush, or ``flush_idle_s`` without new text, hands out the rest). The
segments feed :meth:`SpeechService.synthesize_segments
<higgs_worker.speech.service.SpeechService.synthesize_segments>`: one generation after another on the engine's
shared scheduler, each with the earlier segments' audio as context, all decoded as one stream without seams. A
cancel stops the turn at the scheduler's next decode step.

Nothing here knows sockets or events: the HTTP route (``http/routes_realtime.py``) drives it.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..core import text as text_rules
from ..core.errors import RequestError
from ..core.schema import SpeechRequest
from .service import SpeechService
from .stream import SpeechStream

__all__ = ["SegmentRules", "Segmenter", "SpeechSession", "SpeechTurn", "TextTurn"]


@dataclass(frozen=True)
class SegmentRules:
    """When buffered text becomes a segment, and how much text one turn may take."""

    min_words: int = 4  # words before the first boundary that may start speech
    max_words: int = 200  # most words in one segment (the request's chunk budget)
    flush_idle_s: float = 1.0  # buffered text with no new text for this long is spoken as it is
    max_chars: int = 4000  # most text one turn takes


#: Words that end in a full stop without ending the sentence (``Dr. Smith``), lower-cased without the stop.
_ABBREVIATIONS = frozenset(
    ["mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "etc", "e.g", "i.e", "no", "fig", "vol", "approx", "dept", "est", "inc", "ltd", "co"])
_CLOSERS = r"""["'\u201d\u2019)\]]*"""
#: A sentence ends at . ! ? or an ellipsis (closing quotes and brackets stay with it) before a space, at a CJK full
#: stop, or at a line break.
_SENTENCE = re.compile(rf"""[.!?\u2026]+{_CLOSERS}(?=\s|$)|[\u3002\uff01\uff1f]+{_CLOSERS}|\n""")
#: A clause ends at , ; : or a dash before a space, or at their CJK forms.
_CLAUSE = re.compile(rf"""(?:[,;:]|\u2014)+{_CLOSERS}(?=\s|$)|[\uff0c\uff1b\uff1a\u3001]+""")


class Segmenter:
    """Text deltas in, speakable segments out; not thread-safe (:class:`TextTurn` guards it)."""

    def __init__(self, min_words: int, max_words: int) -> None:
        self.min_words = min_words
        self.max_words = max(min_words, max_words)
        self.buffer = ""

    def append(self, delta: str) -> None:
        self.buffer += delta

    @property
    def pending(self) -> bool:
        return bool(self.buffer.strip())

    def _boundaries(self, pattern: re.Pattern[str]) -> list[int]:
        """Ends of the confirmed boundaries in the buffer. One at the very end of the buffer counts unless more
        text could still change it: a full stop or comma after a digit (``3.`` of ``3.5``), an abbreviation."""
        ends = []
        buf = self.buffer
        for m in pattern.finditer(buf):
            end = m.end()
            mark = m.group().lstrip()[:1]
            before = buf[:m.start()].split()
            last = before[-1].lower() if before else ""
            if mark == ".":
                if last.rstrip(".") in _ABBREVIATIONS or (len(last) == 1 and last.isalpha()):
                    continue  # "Dr. No", "J. R. R. Tolkien"
                if end == len(buf) and last[-1:].isdigit():
                    continue  # "3." may yet be "3.5"
            if mark == "," and end == len(buf) and last[-1:].isdigit():
                continue  # "1," may yet be "1,000"
            ends.append(end)
        return ends

    def _words(self, end: int) -> int:
        return text_rules.word_count(self.buffer[:end])

    def take(self, first: bool) -> str | None:
        """The next segment, or None while none is ready. The first segment ends at the first clause or sentence
        boundary after ``min_words`` words (speech starts as early as it can); later ones at the last sentence
        boundary in the buffer (else the last clause boundary) with at least ``min_words`` words before it. A
        segment never passes ``max_words``: without a boundary in reach it is cut between words."""
        sentences = [e for e in self._boundaries(_SENTENCE) if self._words(e) >= self.min_words]
        clauses = [e for e in self._boundaries(_CLAUSE) if self._words(e) >= self.min_words]
        if first:
            ends = sorted(sentences + clauses)[:1]
        else:
            ends = sentences[-1:] or clauses[-1:]
        if ends and self._words(ends[0]) <= self.max_words:
            return self._cut(ends[0])
        within = [e for e in sorted(set(sentences + clauses)) if self._words(e) <= self.max_words]
        if within:
            return self._cut(within[-1])
        if text_rules.word_count(self.buffer) > self.max_words:  # a run-on without a boundary in reach
            return self._cut(self._word_end(self.max_words))
        return None

    def take_all(self) -> str | None:
        """Everything buffered (a flush), or None when nothing is."""
        return self._cut(len(self.buffer)) if self.pending else None

    def clear(self) -> None:
        self.buffer = ""

    def _word_end(self, words: int) -> int:
        """The index just after the ``words``-th space-separated word."""
        found = 0
        for m in re.finditer(r"\S+", self.buffer):
            found += 1
            if found == words:
                return m.end()
        return len(self.buffer)

    def _cut(self, end: int) -> str | None:
        piece, self.buffer = self.buffer[:end].strip(), self.buffer[end:].lstrip()
        return piece or None


class TextTurn:
    """One turn's text, shared by the thread that receives it and the thread that speaks it."""

    def __init__(self, rules: SegmentRules, cancel: threading.Event,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rules = rules
        self._cancel = cancel
        self._clock = clock
        self._cond = threading.Condition()
        self._segmenter = Segmenter(rules.min_words, rules.max_words)
        self._last_text = clock()
        self.committed = False
        self.chars = 0
        self.spoken: list[str] = []  # the segments handed out, in order
        self.first_ready_at: float | None = None  # when the first segment was handed out (``clock``)

    def append(self, delta: str) -> None:
        """Add text; :class:`RequestError` on ``text`` past the turn's limit (nothing of it is kept)."""
        with self._cond:
            if self.chars + len(delta) > self.rules.max_chars:
                raise RequestError("text", f"would bring this turn to {self.chars + len(delta)} characters; the "
                                           f"limit is {self.rules.max_chars} (REALTIME_MAX_TURN_CHARS): commit the "
                                           "turn and go on in the next")
            self.chars += len(delta)
            self._segmenter.append(delta)
            self._last_text = self._clock()
            self._cond.notify_all()

    def commit(self) -> None:
        """No more text: what is buffered is spoken, then the turn ends."""
        with self._cond:
            self.committed = True
            self._cond.notify_all()

    def clear(self) -> None:
        """Drop the text not handed out yet (what is already speaking goes on)."""
        with self._cond:
            self._segmenter.clear()

    def wake(self) -> None:
        """Let a waiting :meth:`segments` see a cancel."""
        with self._cond:
            self._cond.notify_all()

    def segments(self) -> Iterator[str]:
        """Normalised segments as they become ready; blocks between them. Ends after the last one once committed,
        or at once on cancel."""
        for first in itertools.chain([True], itertools.repeat(False)):
            segment = self._next(first)
            if segment is None:
                return
            if self.first_ready_at is None:
                self.first_ready_at = self._clock()
            self.spoken.append(segment)
            yield segment

    def _next(self, first: bool) -> str | None:
        with self._cond:
            while not self._cancel.is_set():
                segment = self._segmenter.take(first)
                idle = self._clock() - self._last_text
                if segment is None and (self.committed or idle >= self.rules.flush_idle_s):
                    segment = self._segmenter.take_all()
                if segment is not None:
                    spoken = text_rules.normalize(segment)
                    if spoken.strip():
                        return spoken
                    continue  # only punctuation or spaces: nothing to say, look again
                if self.committed:
                    return None
                wait = self.rules.flush_idle_s - idle if self._segmenter.pending else None
                self._cond.wait(wait)
            return None


class SpeechTurn:
    """One turn of a session: text deltas in, encoded speech out (iterate :meth:`encoded` on a worker thread)."""

    def __init__(self, service: SpeechService, request: SpeechRequest, rules: SegmentRules, turn_id: str) -> None:
        self.id = turn_id
        self.cancel_event = threading.Event()
        self.text = TextTurn(rules, self.cancel_event)
        self.stream: SpeechStream = service.synthesize_segments(request, self.text.segments(), self.cancel_event)
        self.first_audio_at: float | None = None  # time.monotonic() of the first encoded bytes

    def append(self, delta: str) -> None:
        self.text.append(delta)

    def commit(self) -> None:
        self.text.commit()

    def clear(self) -> None:
        self.text.clear()

    def cancel(self) -> None:
        """Barge-in: the generation in flight stops at the scheduler's next step; nothing more is spoken."""
        self.cancel_event.set()
        self.text.wake()

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def encoded(self) -> Iterator[bytes]:
        """The turn's speech in the session's format, as one stream (blocking; raises ``Cancelled`` on cancel)."""
        for data in self.stream.encoded():
            if self.first_audio_at is None:
                self.first_audio_at = time.monotonic()
            yield data

    def summary(self) -> dict:
        """What the turn said and cost, once it has ended."""
        meta = self.stream.metadata()
        usage = meta["usage"]
        out = {"text": " ".join(self.text.spoken), "segments": meta["chunks"], "duration_s": meta["duration_s"],
               "sample_rate": meta["sample_rate"], "seed": meta["seed"], "truncated": meta["truncated"],
               "generation_s": meta["generation_s"],
               "usage": {"input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"],
                         "total_tokens": usage["total_tokens"]}}
        if self.first_audio_at is not None and self.text.first_ready_at is not None:
            out["first_audio_s"] = round(max(0.0, self.first_audio_at - self.text.first_ready_at), 4)
        if "words" in meta:
            out["words"] = meta["words"]
        warnings = text_rules.tag_warnings(out["text"])  # the turn's own text (the session request holds none)
        if warnings:
            out["warnings"] = warnings
        if meta.get("loudness") is not None:
            out["loudness"] = meta["loudness"]
        return out


class SpeechSession:
    """A session's settings and its turns: text goes to the open turn (a new one after a commit), turns speak in
    order. Thread-safe for one receiving thread (or event loop) and the turns' speaking threads."""

    def __init__(self, service: SpeechService, request: SpeechRequest, rules: SegmentRules) -> None:
        self.service = service
        self.request = request
        self.rules = rules
        self.open: SpeechTurn | None = None  # the turn taking text
        self.turns = 0

    def configure(self, request: SpeechRequest) -> None:
        """New settings for the turns that start from now on; the voices are checked first (blocking)."""
        self.service.check_voices(request)
        self.request = request

    def max_words(self, request: SpeechRequest) -> int:
        return text_rules.auto_word_budget(request.max_new_tokens, request.chunk_max_word_num)

    def append(self, delta: str) -> tuple[SpeechTurn, bool]:
        """Text for the open turn, opening one if needed; returns the turn and whether it is new."""
        created = self.open is None
        if created:
            self.turns += 1
            rules = SegmentRules(self.rules.min_words, self.max_words(self.request), self.rules.flush_idle_s,
                                 self.rules.max_chars)
            turn = SpeechTurn(self.service, self.request, rules, f"resp_{self.turns:04d}")
        else:
            turn = self.open
        turn.append(delta)  # refused past the limit: a new turn is then not kept open
        self.open = turn
        return turn, created

    def commit(self) -> SpeechTurn | None:
        """End the open turn (its rest is spoken); None when no turn is open."""
        turn, self.open = self.open, None
        if turn is not None:
            turn.commit()
        return turn

    def clear(self) -> None:
        if self.open is not None:
            self.open.clear()
