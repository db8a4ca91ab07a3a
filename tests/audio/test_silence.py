"""Trailing silence: cut to the allowed length, measured relative to the utterance's own loudness."""

import numpy as np
import pytest

from higgs_worker.audio.silence import sound_end, trailing_silence_s, trim_trailing_silence

RATE = 24000


def tone(seconds, amplitude=0.5, freq=220.0):
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def hiss(seconds, db):
    rng = np.random.default_rng(0)
    return (rng.standard_normal(int(seconds * RATE)) * 10 ** (db / 20)).astype(np.float32)


def test_a_long_silent_tail_is_cut_to_the_allowed_length():
    wave = np.concatenate([tone(1.0), hiss(3.0, -80)])
    trimmed = trim_trailing_silence(wave, RATE, max_silence_s=0.5)
    assert len(trimmed) / RATE == pytest.approx(1.5, abs=0.021)
    assert np.array_equal(trimmed, wave[:len(trimmed)])
    assert trailing_silence_s(trimmed, RATE) == pytest.approx(0.5, abs=0.021)


def test_a_short_tail_is_kept_whole():
    wave = np.concatenate([tone(1.0), np.zeros(int(0.3 * RATE), np.float32)])
    assert len(trim_trailing_silence(wave, RATE, max_silence_s=0.5)) == len(wave)
    assert len(trim_trailing_silence(tone(1.0), RATE, max_silence_s=0.0)) == RATE


def test_the_threshold_follows_the_voice_not_full_scale():
    quiet_voice = np.concatenate([tone(1.0, amplitude=0.01), hiss(2.0, -90)])  # a voice at -43 dBFS
    assert sound_end(quiet_voice, RATE) == pytest.approx(RATE, abs=RATE * 0.02)
    breath = np.concatenate([tone(1.0), tone(1.0, amplitude=0.05), hiss(1.0, -90)])  # 20 dB down: still sound
    assert sound_end(breath, RATE) == pytest.approx(2 * RATE, abs=RATE * 0.02)
    assert sound_end(breath, RATE, threshold_db=-10) == pytest.approx(RATE, abs=RATE * 0.02)


def test_all_silence_keeps_the_allowed_silence_and_empty_stays_empty():
    assert len(trim_trailing_silence(np.zeros(RATE * 3, np.float32), RATE, 0.5)) == RATE // 2
    assert len(trim_trailing_silence(np.zeros(0, np.float32), RATE, 0.5)) == 0
    with pytest.raises(ValueError):
        trim_trailing_silence(tone(1.0), RATE, -1.0)
