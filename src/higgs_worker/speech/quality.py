"""Speech checks: hear each generated chunk, score it against its text, and decide whether to generate it again.

Counted as a failed attempt: a word error rate above ``max_wer`` (characters for Chinese and Japanese), no end of
audio by ``max_new_tokens``, or audio far longer than the text can need (a babbling or silent tail). The best
attempt is kept (:func:`preference`): a passing one if any; else one that ended its audio within the text's length
over a runaway (cut at ``max_new_tokens`` or far too long), whatever their scores; then the fewest problems; then the
lowest word error rate; then the earliest attempt.

The service calls :func:`check_chunk` with functions that generate, decode and hear, so this module knows
nothing of the engine, HTTP or RunPod; its unit tests use a stub recogniser.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..asr.scoring import word_error_rate
from ..core.schema import VerifySpec
from ..core.text import is_mostly_cjk

#: Seeds of the attempts at one chunk: the chunk's seed, then this far apart (no clash with the next chunks).
SEED_STRIDE = 1_000_003
_TAGS = re.compile(r"\[SPEAKER\d+\]|<SE[_se]*>.*?</SE[_se]*>")


@dataclass
class Attempt:
    seed: int
    heard: str
    wer: float
    problems: list[str]
    ran_away: bool = False  # no end of audio by max_new_tokens, or audio far longer than the text needs
    voice: dict[str, Any] = field(default_factory=dict)  # the voice check's figures (similarity, nearest speaker)

    @property
    def passed(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "heard": self.heard, "wer": round(self.wer, 4), "problems": self.problems,
                **self.voice}


@dataclass
class ChunkQuality:
    index: int
    text: str
    attempts: list[Attempt] = field(default_factory=list)
    kept: int = 0  # index into attempts
    budget_spent: bool = False  # attempts stopped because the request's frame budget was spent

    @property
    def best(self) -> Attempt:
        return self.attempts[self.kept]

    @property
    def passed(self) -> bool:
        return self.best.passed

    def as_dict(self) -> dict[str, Any]:
        best = self.best
        return {"index": self.index, "text": self.text, "heard": best.heard, "wer": round(best.wer, 4),
                "passed": best.passed, "attempts": len(self.attempts), "kept_attempt": self.kept + 1,
                "problems": best.problems, **best.voice, "history": [a.as_dict() for a in self.attempts],
                **({"budget_spent": True} if self.budget_spent else {})}


def spoken_text(chunk: str) -> str:
    """What the audio should say: the chunk without speaker tags and sound-event markers."""
    return " ".join(_TAGS.sub(" ", chunk).split())


def scoring_language(chunk: str) -> str | None:
    """A language hint for the recogniser: Chinese for Han text without kana, else detection."""
    if is_mostly_cjk(chunk) and not re.search(r"[\u3040-\u30ff]", chunk):
        return "zh"
    return None


def longest_plausible_s(chunk: str) -> float:
    """Seconds the slowest reasonable reading of ``chunk`` could take (1.2 s a word, 0.6 s a CJK character),
    plus 2 s: audio far beyond that is a runaway tail."""
    spoken = spoken_text(chunk)
    if is_mostly_cjk(spoken):
        units = len(re.sub(r"\s", "", spoken)) * 0.6
    else:
        units = len(spoken.split()) * 1.2
    return 2.0 + units


def ran_away(chunk: str, seconds: float, truncated: bool) -> bool:
    """Whether an attempt failed to end its audio: cut at ``max_new_tokens``, or far longer than ``chunk`` needs."""
    return truncated or seconds > longest_plausible_s(chunk)


def preference(attempt: Attempt, position: int) -> tuple[bool, int, float, int]:
    """The sort key of the attempt to keep, smallest first: ended its audio (a runaway's low word error rate is no
    comfort: its tail is still babble or silence); fewest problems (so a passing attempt, with none, beats all);
    lowest word error rate; earliest."""
    return (attempt.ran_away, len(attempt.problems), attempt.wer, position)


def judge(chunk: str, heard: str, seconds: float, truncated: bool, spec: VerifySpec) -> tuple[float, list[str]]:
    """The score of one attempt and its problems (none means it passed)."""
    reference = spoken_text(chunk)
    wer = word_error_rate(reference, heard, scoring_language(chunk)) if reference else 0.0
    problems = []
    if wer > spec.max_wer:
        problems.append(f"word error rate {wer:.2f} is over {spec.max_wer:.2f}")
    if truncated:
        problems.append("no end of audio by max_new_tokens")
    if seconds > longest_plausible_s(chunk):  # the same rule as ran_away
        problems.append(f"{seconds:.1f} s of audio is far longer than the text needs")
    return wer, problems


def check_chunk(index: int, chunk: str, seed: int, spec: VerifySpec, first: Any,
                generate: Callable[[int], Any], hear: Callable[[Any], tuple[str, float]],
                truncated: Callable[[Any], bool],
                voice: Callable[[Any], tuple[dict[str, Any], list[str]]] | None = None,
                may_retry: Callable[[], bool] | None = None) -> tuple[Any, ChunkQuality]:
    """Judge ``first`` (a generation of ``chunk``); generate again with the next seeds until one passes or
    ``spec.max_attempts`` are spent. Returns the generation to keep and the chunk's report.

    ``generate(seed)`` makes a new attempt, ``hear(generation)`` gives (text heard, seconds of audio), and
    ``truncated(generation)`` says whether it stopped at ``max_new_tokens``. ``voice(generation)``, when given
    (the voice check, :mod:`.voice_check`), gives its figures and its problems, which count like the others.
    ``may_retry()``, when given, is asked before each new attempt: False (the request's frame budget is spent)
    stops the attempts, and the best so far is kept.
    """
    report = ChunkQuality(index, chunk)
    generations = []
    current = first
    for attempt in range(spec.max_attempts):
        attempt_seed = seed + attempt * SEED_STRIDE
        if attempt:
            if may_retry is not None and not may_retry():
                report.budget_spent = True
                break
            current = generate(attempt_seed)
        heard, seconds = hear(current)
        cut = truncated(current)
        wer, problems = judge(chunk, heard, seconds, cut, spec)
        figures, voice_problems = voice(current) if voice is not None else ({}, [])
        report.attempts.append(Attempt(attempt_seed, heard, wer, problems + voice_problems,
                                       ran_away(chunk, seconds, cut), figures))
        generations.append(current)
        if not report.attempts[-1].problems:
            break
    report.kept = min(range(len(report.attempts)), key=lambda i: preference(report.attempts[i], i))
    return generations[report.kept], report


def summary(chunks: list[ChunkQuality]) -> dict[str, Any]:
    """The ``quality`` block of a result."""
    return {"passed": all(c.passed for c in chunks), "chunks": [c.as_dict() for c in chunks],
            "attempts": sum(len(c.attempts) for c in chunks)}
