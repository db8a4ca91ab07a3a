"""What recognition returns, kept free of torch so captions and scoring can use it anywhere."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Word:
    """One recognised word and where it sits in the audio, in seconds from the start of that audio."""

    word: str
    start: float
    end: float

    def shifted(self, seconds: float) -> Word:
        return Word(self.word, self.start + seconds, self.end + seconds)

    def as_dict(self) -> dict[str, float | str]:
        """The response shape: ``{"word", "start", "end"}`` with times rounded to milliseconds."""
        return {"word": self.word, "start": round(self.start, 3), "end": round(self.end, 3)}


@dataclass(frozen=True)
class Transcript:
    """The text heard in one waveform, with word times when the model can align them.

    ``words`` is empty when the model has no alignment heads (``word_timestamps`` False) or heard nothing.
    ``language`` is the Whisper code used to decode (given by the caller or detected).
    """

    text: str
    words: tuple[Word, ...] = field(default_factory=tuple)
    language: str | None = None
    duration: float = 0.0
    word_timestamps: bool = True

    def offset(self, seconds: float) -> Transcript:
        """The same transcript placed ``seconds`` later (a chunk's position in the final audio)."""
        return Transcript(self.text, tuple(w.shifted(seconds) for w in self.words), self.language,
                          self.duration, self.word_timestamps)
