"""Generated speech and what it cost: :class:`SpeechResult` and its :class:`Usage`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Usage:
    """Token accounting: text tokens in the prompts, audio frames generated."""

    prompt_tokens: int = 0
    audio_frames: int = 0
    truncated: bool = False  # a chunk stopped at max_new_tokens before the end of its audio

    def as_dict(self) -> dict[str, int | bool]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.audio_frames,
                "total_tokens": self.prompt_tokens + self.audio_frames, "truncated": self.truncated}


@dataclass
class SpeechResult:
    """Generated speech: the waveform, its encoding and what it cost."""

    waveform: np.ndarray
    sample_rate: int
    format: str
    audio: bytes
    seed: int
    chunks: int
    frames: int
    generation_s: float
    usage: Usage = field(default_factory=Usage)
    timings: dict[str, float] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)  # truncated, saved_voice, ...

    @property
    def truncated(self) -> bool:
        return bool(self.extras.get("truncated"))

    @property
    def duration_s(self) -> float:
        return len(self.waveform) / self.sample_rate

    @property
    def real_time_factor(self) -> float:
        """Generation time over audio duration: below 1 is faster than real time."""
        return self.generation_s / self.duration_s if self.duration_s > 0 else 0.0

    def metadata(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "sample_rate": self.sample_rate,
            "duration_s": round(self.duration_s, 4),
            "frames": self.frames,
            "chunks": self.chunks,
            "seed": self.seed,
            "generation_s": round(self.generation_s, 4),
            "real_time_factor": round(self.real_time_factor, 4),
            "usage": self.usage.as_dict(),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            **self.extras,
        }
