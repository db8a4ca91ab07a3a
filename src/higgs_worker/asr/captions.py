"""Captions from timed words: SRT and WebVTT, laid out the way subtitle guidelines ask.

A cue holds at most ``max_lines`` lines of at most ``max_line_chars`` columns (a wide CJK character takes two)
and lasts at most ``max_cue_s``. Cues end at the end of a sentence when they have some length already, and at a
pause longer than ``max_gap_s``; when a cue is full, it ends after the last clause punctuation of its second half
if there is one, so lines break where a reader pauses. Two lines are balanced rather than filled greedily.
Scripts written without spaces (Chinese, Japanese) join their words without them and may break anywhere between
characters.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from .scoring import scored_by_characters
from .types import Word

SENTENCE_END = tuple(".!?。！？…‽")
CLAUSE_END = tuple(",;:，、；：—–")
_MIN_SENTENCE_CUE_COLUMNS = 20


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def offset_words(words: Iterable[Word], seconds: float) -> list[Word]:
    """``words`` moved ``seconds`` later: a chunk's word times placed in the final audio."""
    return [w.shifted(seconds) for w in words]


def width(text: str) -> int:
    """Columns ``text`` takes on screen: wide (CJK) characters count two, so a 42-column line holds 21 of them."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _no_space(ch: str) -> bool:
    return scored_by_characters(ch) or "\u3000" <= ch <= "\u303f" or "\uff00" <= ch <= "\uffef"


def _join(words: Sequence[str]) -> str:
    out = ""
    for w in words:
        if out and not (_no_space(out[-1]) and _no_space(w[0])):
            out += " "
        out += w
    return out


def _wrap(words: Sequence[str], columns: int, max_lines: int) -> list[str] | None:
    """Lines for ``words`` within ``columns`` (see :func:`width`), balanced when two; ``None`` if too many."""
    lines: list[list[str]] = [[]]
    for w in words:
        if lines[-1] and width(_join([*lines[-1], w])) > columns:
            lines.append([])
        lines[-1].append(w)
    if len(lines) > max_lines or any(width(_join(line)) > columns for line in lines):
        return None
    if len(lines) == 2:
        best: tuple[int, int, int] | None = None
        for cut in range(1, len(words)):
            first, second = _join(words[:cut]), _join(words[cut:])
            longest = max(width(first), width(second))
            if longest > columns:
                continue
            at_punctuation = 0 if first.endswith(CLAUSE_END + SENTENCE_END) else 1
            key = (longest + 8 * at_punctuation, at_punctuation, cut)  # a clause break is worth 8 columns
            if best is None or key < best:
                best = key
        if best is not None:
            return [_join(words[:best[2]]), _join(words[best[2]:])]
    return [_join(line) for line in lines]


def _split_long(word: Word, columns: int) -> list[Word]:
    """A word longer than a line is cut into line-sized pieces, its time shared by characters."""
    text = word.word
    if width(text) <= columns:
        return [word]
    pieces: list[str] = [""]
    for ch in text:
        if width(pieces[-1] + ch) > columns:
            pieces.append("")
        pieces[-1] += ch
    per_char = (word.end - word.start) / len(text)
    out, at = [], word.start
    for piece in pieces:
        out.append(Word(piece, at, at + per_char * len(piece)))
        at += per_char * len(piece)
    return out


def build_cues(words: Iterable[Word], *, max_line_chars: int = 42, max_lines: int = 2, max_cue_s: float = 7.0,
               max_gap_s: float = 1.5, min_cue_s: float = 0.5, duration: float | None = None) -> list[Cue]:
    """Group timed words into cues (see the module docstring for the rules).

    ``min_cue_s`` extends a cue shorter than that into the silence after it, never over the next cue nor past
    ``duration`` (the audio's length) when given. Cue times never decrease and cues never overlap.
    """
    items: list[Word] = []
    for w in words:
        text = " ".join(w.word.split())
        if text:
            items.extend(_split_long(Word(text, w.start, max(w.end, w.start)), max_line_chars))

    groups: list[list[Word]] = []
    current: list[Word] = []

    def fits(candidate: list[Word]) -> bool:
        return (_wrap([w.word for w in candidate], max_line_chars, max_lines) is not None
                and candidate[-1].end - candidate[0].start <= max_cue_s)

    for w in items:
        if current and w.start - current[-1].end > max_gap_s:
            groups.append(current)
            current = []
        elif current and not fits([*current, w]):
            carry: list[Word] = []
            for k in range(len(current) - 2, len(current) // 2 - 1, -1):
                if current[k].word.endswith(CLAUSE_END + SENTENCE_END):
                    carry = current[k + 1:]
                    current = current[:k + 1]
                    break
            groups.append(current)
            current = carry
            if current and not fits([*current, w]):  # the carried words and w cannot share a cue
                groups.append(current)
                current = []
        current.append(w)
        if w.word.endswith(SENTENCE_END) and width(_join([x.word for x in current])) >= _MIN_SENTENCE_CUE_COLUMNS:
            groups.append(current)
            current = []
    if current:
        groups.append(current)

    cues: list[Cue] = []
    for i, group in enumerate(groups):
        start = group[0].start
        if cues:
            start = max(start, cues[-1].end)
        end = max(group[-1].end, start)
        limit = groups[i + 1][0].start if i + 1 < len(groups) else (duration if duration is not None else None)
        if end - start < min_cue_s:
            end = start + min_cue_s if limit is None else max(end, min(start + min_cue_s, limit))
        end = min(end, start + max_cue_s)  # a single word longer than a cue is cut, not the rule
        end = max(end, start + 0.001)  # a cue lasts at least a millisecond
        lines = _wrap([w.word for w in group], max_line_chars, max_lines)
        assert lines is not None  # every group was built to fit
        cues.append(Cue(start, end, tuple(lines)))
    return cues


def _timestamp(seconds: float, separator: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{separator}{ms:03d}"


def _millisecond_times(cues: Sequence[Cue]) -> list[tuple[int, int]]:
    """Cue times in whole milliseconds, each cue at least 1 ms long and none overlapping after rounding."""
    times, last = [], 0
    for cue in cues:
        start = max(round(cue.start * 1000), last)
        end = max(round(cue.end * 1000), start + 1)
        times.append((start, end))
        last = end
    return times


_SRT_ARROW = re.compile(r"-{2,}>")


def srt_escape(line: str) -> str:
    """A caption line with no ``-->`` (which SubRip reads as a cue's times): every run of hyphens before ``>``
    becomes ``->``. Idempotent, and no longer arrow is left behind (``--->`` once became ``-->``)."""
    return _SRT_ARROW.sub("->", line)


def to_srt(cues: Sequence[Cue]) -> str:
    """SubRip text: numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, a blank line after each."""
    blocks = []
    for n, (cue, (start, end)) in enumerate(zip(cues, _millisecond_times(cues)), start=1):
        text = "\n".join(srt_escape(line) for line in cue.lines)
        blocks.append(f"{n}\n{_timestamp(start / 1000, ',')} --> {_timestamp(end / 1000, ',')}\n{text}\n")
    return "\n".join(blocks)


def _vtt_escape(line: str) -> str:
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(cues: Sequence[Cue]) -> str:
    """WebVTT text: the ``WEBVTT`` header, then cues with ``HH:MM:SS.mmm`` times and escaped text."""
    blocks = ["WEBVTT\n"]
    for cue, (start, end) in zip(cues, _millisecond_times(cues)):
        text = "\n".join(_vtt_escape(line) for line in cue.lines)
        blocks.append(f"{_timestamp(start / 1000, '.')} --> {_timestamp(end / 1000, '.')}\n{text}\n")
    return "\n".join(blocks)


def captions(words: Iterable[Word], fmt: Literal["srt", "vtt"], **layout: float | int | None) -> str:
    """Caption text in ``fmt`` for ``words`` (``layout`` goes to :func:`build_cues`)."""
    cues = build_cues(words, **layout)  # type: ignore[arg-type]
    if fmt == "srt":
        return to_srt(cues)
    if fmt == "vtt":
        return to_vtt(cues)
    raise ValueError(f"unknown caption format {fmt!r} (srt or vtt)")
