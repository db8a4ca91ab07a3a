"""Loudness normalisation to a target in LUFS with a true-peak ceiling, measured per ITU-R BS.1770.

Integrated loudness is ``pyloudnorm``'s BS.1770-4 meter (K-weighting, 400 ms blocks, absolute and relative
gates); true peak is the largest magnitude of the signal upsampled four times (BS.1770-4 Annex 2), in dBTP.

* Whole utterances (:func:`normalize`): one gain for the whole audio, never per chunk (per-chunk gains make the
  volume pump). When that gain would put the true peak over the ceiling, a look-ahead peak limiter (its gain never
  above what any peak within 5 ms needs, smoothed over 2.5 ms) takes the peaks down and the gain is set again, up
  to four times; the result's loudness and true peak are measured and reported.
* Streams (:class:`StreamLeveller`): one constant gain, set once from the voice's reference audio and the first
  second of speech measured together (the first second alone without a reference), and lowered if needed so that
  first second stays under the ceiling. The first second is held back until the gain is known; later audio gets
  the same gain, so the stream's loudness is close to, not exactly at, the target, and a later peak over full scale
  is clipped there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyloudnorm
from scipy.ndimage import minimum_filter1d, uniform_filter1d
from scipy.signal import resample_poly

#: Shortest audio with an integrated loudness: one 400 ms gating block.
MIN_SECONDS = 0.4
_OVERSAMPLE = 4


def integrated_lufs(wave: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness in LUFS; ``-inf`` for silence or audio shorter than one 400 ms block."""
    if len(wave) < MIN_SECONDS * sample_rate:
        return -math.inf
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(np.asarray(wave, dtype=np.float64)))


def _oversampled_peaks(wave: np.ndarray) -> np.ndarray:
    """Per input sample, the largest magnitude among its four upsampled values (the true peak around it)."""
    up = np.abs(resample_poly(np.asarray(wave, dtype=np.float64), _OVERSAMPLE, 1))
    return up[:len(wave) * _OVERSAMPLE].reshape(len(wave), _OVERSAMPLE).max(axis=1)


def true_peak_dbtp(wave: np.ndarray) -> float:
    if len(wave) == 0:
        return -math.inf
    peak = float(_oversampled_peaks(wave).max())
    return 20 * math.log10(peak) if peak > 0 else -math.inf


def limit(wave: np.ndarray, sample_rate: int, ceiling_dbtp: float) -> np.ndarray:
    """``wave`` with its true peaks brought under ``ceiling_dbtp`` by a smooth look-ahead gain (never a boost)."""
    ceiling = 10 ** (ceiling_dbtp / 20)
    need = np.minimum(1.0, ceiling / np.maximum(_oversampled_peaks(wave), 1e-12))
    window = max(1, int(0.005 * sample_rate))
    # The minimum over +-window, averaged over +-window/2: every average includes the sample's own need, so the
    # gain at a peak is never above what that peak needs.
    gain = uniform_filter1d(minimum_filter1d(need, 2 * window + 1), window | 1)
    return (wave * gain).astype(np.float32)


@dataclass
class LoudnessReport:
    target_lufs: float
    ceiling_dbtp: float
    measured_lufs: float | None  # before
    gain_db: float
    result_lufs: float | None = None
    true_peak_dbtp: float | None = None
    method: str = "whole"

    def as_dict(self) -> dict:
        def r(v: float | None) -> float | None:
            return None if v is None or not math.isfinite(v) else round(v, 2)

        return {"target_lufs": self.target_lufs, "ceiling_dbtp": self.ceiling_dbtp, "method": self.method,
                "measured_lufs": r(self.measured_lufs), "gain_db": r(self.gain_db), "lufs": r(self.result_lufs),
                "true_peak_dbtp": r(self.true_peak_dbtp)}


def normalize(wave: np.ndarray, sample_rate: int, target_lufs: float | None,
              ceiling_dbtp: float) -> tuple[np.ndarray, dict | None]:
    """``wave`` at ``target_lufs`` with its true peak under ``ceiling_dbtp``, and the report; unchanged (report
    without a gain) when it is silent or shorter than 400 ms; ``(wave, None)`` when ``target_lufs`` is None."""
    if target_lufs is None:
        return wave, None
    measured = integrated_lufs(wave, sample_rate)
    if not math.isfinite(measured):
        return wave, LoudnessReport(target_lufs, ceiling_dbtp, None, 0.0).as_dict()
    out = (wave * 10 ** ((target_lufs - measured) / 20)).astype(np.float32)
    for _ in range(4):
        if true_peak_dbtp(out) <= ceiling_dbtp:
            break
        out = limit(out, sample_rate, ceiling_dbtp - 0.1)
        now = integrated_lufs(out, sample_rate)
        out = (out * 10 ** ((target_lufs - now) / 20)).astype(np.float32)
    if true_peak_dbtp(out) > ceiling_dbtp:  # the ceiling wins over the target
        out = limit(out, sample_rate, ceiling_dbtp - 0.1)
    report = LoudnessReport(target_lufs, ceiling_dbtp, measured, target_lufs - measured,
                            integrated_lufs(out, sample_rate), true_peak_dbtp(out))
    return out, report.as_dict()


class StreamLeveller:
    """One constant gain for a stream (see the module's note): feed pieces, get them back levelled."""

    def __init__(self, sample_rate: int, target_lufs: float | None, ceiling_dbtp: float,
                 reference: np.ndarray | None = None, first_seconds: float = 1.0) -> None:
        self.sample_rate = sample_rate
        self.target = target_lufs
        self.ceiling = ceiling_dbtp
        self.reference = reference if reference is not None and len(reference) else None
        self.first = int(first_seconds * sample_rate)
        self.gain: float | None = None if target_lufs is not None else 1.0
        self.measured: float | None = None
        self._held: list[np.ndarray] = []
        self._held_samples = 0

    def feed(self, piece: np.ndarray, last: bool = False) -> np.ndarray:
        """The levelled audio ready now: nothing while the first second is held, then pieces at the gain."""
        if self.gain is None:
            self._held.append(piece)
            self._held_samples += len(piece)
            if self._held_samples < self.first and not last:
                return piece[:0]
            held = np.concatenate(self._held)
            self._held = []
            self.gain = self._gain_for(held)
            piece = held
        if self.gain == 1.0 or not len(piece):
            return piece
        return np.clip(piece * self.gain, -1.0, 1.0).astype(np.float32)

    def _gain_for(self, first: np.ndarray) -> float:
        assert self.target is not None
        sample = first if self.reference is None else np.concatenate([self.reference, first])
        self.measured = integrated_lufs(sample, self.sample_rate)
        if not math.isfinite(self.measured):
            return 1.0
        gain_db = self.target - self.measured
        peak = true_peak_dbtp(first)
        if math.isfinite(peak):
            gain_db = min(gain_db, self.ceiling - peak)
        return 10 ** (gain_db / 20)

    def report(self) -> dict | None:
        if self.target is None:
            return None
        gain_db = 20 * math.log10(self.gain) if self.gain else 0.0
        return LoudnessReport(self.target, self.ceiling, self.measured, gain_db, method="stream").as_dict()
