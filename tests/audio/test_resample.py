"""Resampling as upstream's tokenizer resamples (librosa's default: soxr HQ, length fixed to ceil(n * r))."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soxr

from higgs_worker.audio.resample import StreamingResampler


def upstream(x: np.ndarray, source: int, target: int) -> np.ndarray:
    """librosa.resample(res_type="soxr_hq") written out: soxr one-shot, then the length fixed."""
    y = soxr.resample(x, source, target, quality="soxr_hq")
    n = math.ceil(len(x) * target / source)
    return np.pad(y, (0, max(0, n - len(y))))[:n]


@pytest.mark.parametrize("source", [44100, 48000, 22050, 16000, 8000, 11025])
@pytest.mark.parametrize("block", [1024, 4096, 999])
def test_blocks_resample_to_exactly_upstreams_samples(source, block):
    rng = np.random.default_rng(source + block)
    x = (0.3 * rng.standard_normal(source + 1234)).astype(np.float32)
    resampler = StreamingResampler(source, 24000)
    got = np.concatenate([resampler.feed(x[i:i + block]) for i in range(0, len(x), block)] + [resampler.finish()])
    want = upstream(x, source, 24000)
    assert got.shape == want.shape == (math.ceil(len(x) * 24000 / source),)
    assert np.array_equal(got, want)


def test_ffmpegs_resampler_is_not_upstreams():
    """The point of it: the SNR between FFmpeg's swr and soxr HQ on a 44.1 kHz voice is far from bit-exact."""
    import av

    rng = np.random.default_rng(1)
    x = (0.3 * rng.standard_normal(44100)).astype(np.float32)
    frame = av.AudioFrame.from_ndarray(x[None, :], format="flt", layout="mono")
    frame.sample_rate = 44100
    swr = av.AudioResampler(format="flt", layout="mono", rate=24000)
    y = np.concatenate([f.to_ndarray().reshape(-1) for f in [*swr.resample(frame), *swr.resample(None)]])
    want = upstream(x, 44100, 24000)
    n = min(len(y), len(want))
    assert not np.allclose(y[:n], want[:n], atol=1e-3)


@pytest.mark.parametrize(("rate", "channels"), [(44100, 1), (48000, 2), (22050, 1), (16000, 2)])
def test_a_reference_decodes_to_the_samples_upstreams_loader_gives(rate, channels):
    """A WAV reference comes out as librosa.load(sr=None, mono=True) then librosa.resample would give it (soundfile's
    float samples, channels averaged, soxr HQ, length fixed): the audio the model's codes were trained on."""
    import io

    import soundfile as sf

    from higgs_worker.audio import load_model_audio

    rng = np.random.default_rng(rate)
    pcm = (rng.standard_normal((rate + 321, channels)) * 6000).astype(np.int16)
    buf = io.BytesIO()
    sf.write(buf, pcm, rate, format="WAV", subtype="PCM_16")
    data = buf.getvalue()
    floats, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    want = upstream(floats.mean(axis=1).astype(np.float32), rate, 24000)
    got = load_model_audio(data)
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-6
