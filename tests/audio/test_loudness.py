"""Loudness normalisation: BS.1770 integrated loudness on target, true peak under the ceiling, constant stream gain."""

from __future__ import annotations

import numpy as np
import pytest

from higgs_worker.audio import loudness
from higgs_worker.core.schema import SpeechRequest

SR = 24000


def noise(level_db: float, seconds: float = 6.0, seed: int = 0, burst: bool = True) -> np.ndarray:
    """White noise whose RMS is ``level_db`` dBFS, with bursts 12 dB louder (peaks a limiter must catch)."""
    rng = np.random.default_rng(seed)
    wave = rng.standard_normal(int(seconds * SR)) * 10 ** (level_db / 20)
    if burst:
        wave[SR:SR + SR // 10] *= 4
    return wave.astype(np.float32)


@pytest.mark.parametrize("level", [-45.0, -25.0, -8.0])
@pytest.mark.parametrize(("target", "ceiling"), [(-16.0, -1.0), (-23.0, -2.0)])
def test_noise_at_three_levels_reaches_the_target_under_the_ceiling(level, target, ceiling):
    out, report = loudness.normalize(noise(level), SR, target, ceiling)
    assert abs(loudness.integrated_lufs(out, SR) - target) <= 0.5
    assert loudness.true_peak_dbtp(out) <= ceiling
    assert report["lufs"] == pytest.approx(loudness.integrated_lufs(out, SR), abs=0.01)
    assert report["measured_lufs"] == pytest.approx(loudness.integrated_lufs(noise(level), SR), abs=0.01)


def test_off_silent_and_short_audio_are_left_alone():
    wave = noise(-20)
    assert loudness.normalize(wave, SR, None, -1.0) == (wave, None)
    silent = np.zeros(SR, np.float32)
    out, report = loudness.normalize(silent, SR, -16.0, -1.0)
    assert out is silent and report["measured_lufs"] is None
    short = noise(-20, seconds=0.2)
    assert loudness.normalize(short, SR, -16.0, -1.0)[0] is short


def test_a_stream_gets_one_constant_gain():
    wave = noise(-30, seconds=5.0, burst=False)
    wave[3 * SR:] *= 0.25  # quieter later: a per-chunk gain would pump it back up
    leveller = loudness.StreamLeveller(SR, -20.0, -1.0, reference=noise(-30, seconds=3.0, seed=1, burst=False))
    pieces = np.array_split(wave, 17)
    out = [leveller.feed(p, last=i == len(pieces) - 1) for i, p in enumerate(pieces)]
    assert sum(len(o) for o in out[:2]) == 0  # the first second is held until the gain is known
    joined = np.concatenate(out)
    assert len(joined) == len(wave)
    ratios = joined[np.abs(wave) > 1e-4] / wave[np.abs(wave) > 1e-4]
    assert np.allclose(ratios, ratios[0], rtol=1e-4)  # the same gain on every sample of every piece
    assert abs(20 * np.log10(ratios[0]) - leveller.report()["gain_db"]) < 0.01
    assert abs(loudness.integrated_lufs(joined[:SR * 3], SR) - -20.0) < 0.5  # set from the reference and first second


def test_a_stream_shorter_than_a_second_is_levelled_when_it_ends():
    leveller = loudness.StreamLeveller(SR, -20.0, -1.0)
    assert len(leveller.feed(noise(-35, seconds=0.3))) == 0
    tail = leveller.feed(noise(-35, seconds=0.3, seed=2), last=True)
    assert len(tail) == int(0.6 * SR) and leveller.report()["gain_db"] > 10


def test_whole_responses_report_their_loudness(service):
    body = {"text": "Loudness check.", "max_new_tokens": 40, "seed": 3, "loudness": -20}
    result = service.synthesize(SpeechRequest.parse(body))
    report = result.extras["loudness"]
    if report["measured_lufs"] is not None:  # the tiny random model may say nothing above the gate
        assert abs(loudness.integrated_lufs(result.waveform, result.sample_rate) - -20) <= 0.5
        assert report["true_peak_dbtp"] <= -1.0
    assert "loudness" not in service.synthesize(SpeechRequest.parse({**body, "loudness": None})).extras


def test_jobs_and_the_server_default_use_the_setting(service, env):
    env(LOUDNESS_TARGET_LUFS="-18")
    from higgs_worker.core.settings import get_settings

    service.settings = get_settings()
    result = service.synthesize(SpeechRequest.parse({"text": "Loudness check.", "max_new_tokens": 40, "seed": 3}))
    assert result.extras["loudness"]["target_lufs"] == -18.0
    stream = service.synthesize_stream(SpeechRequest.parse({"text": "Loudness check.", "max_new_tokens": 40,
                                                            "seed": 3, "loudness": -24}))
    list(stream)
    assert stream.metadata()["loudness"]["method"] == "stream"
    assert stream.metadata()["loudness"]["target_lufs"] == -24
