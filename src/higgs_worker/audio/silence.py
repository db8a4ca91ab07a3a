"""Runaway silent tails: a generation that goes on producing near-silence after the last word.

Loudness is measured over 20 ms frames (RMS) relative to the loudest frame of the same waveform, so the rule does
not depend on how loud the voice is. A frame counts as sound when it is within ``threshold_db`` of the loudest.
"""

from __future__ import annotations

import numpy as np

FRAME_S = 0.02


def _frame_rms(wave: np.ndarray, frame: int) -> np.ndarray:
    usable = len(wave) // frame * frame
    frames = wave[:usable].astype(np.float64).reshape(-1, frame)
    rms = np.sqrt(np.mean(frames * frames, axis=1)) if usable else np.zeros(0)
    if usable < len(wave):  # the last partial frame counts too
        tail = wave[usable:].astype(np.float64)
        rms = np.append(rms, np.sqrt(np.mean(tail * tail)))
    return rms


def sound_end(wave: np.ndarray, rate: int, threshold_db: float = -45.0) -> int:
    """Sample index just after the last frame that is not silence (0 when the whole waveform is silent)."""
    wave = np.asarray(wave)
    if wave.size == 0:
        return 0
    frame = max(1, round(rate * FRAME_S))
    rms = _frame_rms(wave.reshape(-1), frame)
    peak = float(rms.max())
    if peak <= 0.0:
        return 0
    loud = np.nonzero(rms >= peak * 10.0 ** (threshold_db / 20.0))[0]
    return min(len(wave), (int(loud[-1]) + 1) * frame)


def trailing_silence_s(wave: np.ndarray, rate: int, threshold_db: float = -45.0) -> float:
    """Seconds of silence at the end of ``wave``."""
    return (len(wave) - sound_end(wave, rate, threshold_db)) / rate


def trim_trailing_silence(wave: np.ndarray, rate: int, max_silence_s: float = 0.5,
                          threshold_db: float = -45.0) -> np.ndarray:
    """``wave`` with its trailing silence cut to at most ``max_silence_s`` seconds (a view, not a copy).

    A waveform that is silent throughout keeps ``max_silence_s`` of itself rather than becoming empty.
    """
    if max_silence_s < 0:
        raise ValueError("max_silence_s must be >= 0")
    keep = sound_end(wave, rate, threshold_db) + round(max_silence_s * rate)
    return wave[:keep] if keep < len(wave) else wave
