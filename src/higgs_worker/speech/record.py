"""What one request cost and made, filled in while it runs: the books behind every result's metadata."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ..core.results import SpeechResult, Usage
from . import quality
from .progress import Progress


@dataclass
class Record:
    """What one request cost, filled in while it runs."""

    seed: int
    started: float
    chunks: int = 0  # chunks started
    chunks_done: int = 0  # chunks whose audio is complete
    chunks_total: int | None = None  # the plan's chunks (None while text still arrives)
    frames: int = 0
    speed: float = 1.0  # the request's speed: audio made is counted as the listener will hear it
    generation_s: float = 0.0
    usage: Usage = field(default_factory=Usage)
    timings: dict[str, float] = field(default_factory=dict)
    first_audio_s: float | None = None
    codes: list[torch.Tensor] = field(default_factory=list)
    truncated_chunks: list[int] = field(default_factory=list)  # chunks cut at max_new_tokens
    saved_voice: str | None = None
    save_voice_error: str | None = None
    quality: list = field(default_factory=list)  # quality.ChunkQuality per chunk, with verify
    words: list[dict[str, Any]] | None = None
    captions: dict[str, str] | None = None
    trimmed_s: float = 0.0
    warnings: list[str] = field(default_factory=list)  # unknown [tags], read as text
    loudness: dict[str, float] | None = None  # audio.loudness: target, measured, gain, true peak

    def extras(self) -> dict[str, Any]:
        """Fields every result carries beyond the audio: truncation, checks, timings, the saved voice."""
        out: dict[str, Any] = {"truncated": bool(self.truncated_chunks)}
        if self.quality:
            out["quality"] = quality.summary(self.quality)
        if self.words is not None:
            out["words"] = self.words
        if self.captions is not None:
            out["captions"] = self.captions
        if self.trimmed_s:
            out["trimmed_silence_s"] = round(self.trimmed_s, 3)
        if self.warnings:
            out["warnings"] = list(self.warnings)
        if self.loudness is not None:
            out["loudness"] = self.loudness
        if self.truncated_chunks:
            out["truncated_chunks"] = list(self.truncated_chunks)
        if self.saved_voice:
            out["saved_voice"] = self.saved_voice
        if self.save_voice_error:
            out["save_voice_error"] = self.save_voice_error
        return out

    def progress(self, frame_rate: float, frames_under_way: int = 0) -> Progress:
        """How far the request has come, ``frames_under_way`` of the chunk being generated included."""
        audio_s = (self.frames + frames_under_way) / frame_rate / self.speed
        return Progress(self.chunks_done, self.chunks_total, self.chunks, audio_s, time.perf_counter() - self.started)

    def result(self, wave, sample_rate: int, fmt: str, encoded: bytes) -> SpeechResult:
        self.timings["total"] = time.perf_counter() - self.started
        return SpeechResult(waveform=wave, sample_rate=sample_rate, format=fmt, audio=encoded, seed=self.seed,
                            chunks=self.chunks, frames=self.frames, generation_s=self.generation_s,
                            usage=self.usage, timings=self.timings, extras=self.extras())
