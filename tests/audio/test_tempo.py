"""speed: pitch-preserving time stretch with atempo."""

import numpy as np
import pytest

from higgs_worker.audio.tempo import TempoStretcher, atempo_chain, stretch

RATE = 24000


def tone(seconds: float, hz: float = 220.0) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * hz * np.arange(int(seconds * RATE)) / RATE)).astype(np.float32)


def dominant_hz(wave: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / RATE)[int(np.argmax(spectrum))])


@pytest.mark.parametrize("speed", [0.25, 0.5, 0.8, 1.25, 2.0, 3.0, 4.0])
def test_duration_scales_and_pitch_stays(speed):
    wave = tone(3.0)
    out = stretch(wave, RATE, speed)
    assert abs(len(out) / len(wave) - 1 / speed) < 0.03 * (1 / speed)
    assert abs(dominant_hz(out) - 220.0) < 5.0  # a resample would have moved it to 220 * speed


def test_chain_stays_within_atempo_limits():
    for speed in (0.25, 0.3, 0.5, 1.0, 2.0, 3.9, 4.0):
        chain = atempo_chain(speed)
        assert all(0.5 <= f <= 2.0 for f in chain) and abs(np.prod(chain) - speed) < 1e-9
    with pytest.raises(ValueError):
        atempo_chain(4.5)


def test_streamed_blocks_equal_the_whole_length_and_speed_one_is_untouched():
    wave = tone(2.0, 300.0)
    stretcher = TempoStretcher(1.5, RATE)
    pieces = [stretcher.feed(wave[i:i + 960]) for i in range(0, len(wave), 960)] + [stretcher.close()]
    streamed = np.concatenate(pieces)
    assert abs(len(streamed) - len(stretch(wave, RATE, 1.5))) <= 960
    assert stretch(wave, RATE, 1.0) is wave
