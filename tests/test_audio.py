import io

import av
import numpy as np
import pytest
import soundfile as sf

from higgs_worker import audio


def tone(seconds=1.0, rate=24000):
    t = np.arange(int(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)


def decode_any(data: bytes, fmt: str):
    if fmt == "pcm":
        return np.frombuffer(data, "<i2").astype(np.float32) / 32767, 24000
    with av.open(io.BytesIO(data)) as c:
        stream = c.streams.audio[0]
        frames = [f.to_ndarray().reshape(-1) for f in c.decode(stream)]
        rate = stream.codec_context.sample_rate
    wave = np.concatenate(frames)
    if wave.dtype.kind == "i":
        wave = wave.astype(np.float32) / 32767
    return wave, rate


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "opus", "aac", "pcm"])
def test_every_format_decodes_at_24k_with_the_right_length(fmt):
    wave = tone(1.0)
    data = audio.encode(wave, fmt)
    decoded, rate = decode_any(data, fmt)
    assert rate in ((24000, 48000) if fmt == "opus" else (24000,))
    seconds = len(decoded) / rate
    assert seconds == pytest.approx(1.0, abs=0.08), fmt


def test_wav_has_exact_sizes_and_lossless_formats_round_trip():
    wave = tone(0.5)
    data = audio.encode(wave, "wav")
    back, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == 24000 and np.abs(back - wave).max() < 1e-4
    flac, _ = sf.read(io.BytesIO(audio.encode(wave, "flac")), dtype="float32")
    assert np.abs(flac - wave).max() < 1e-4


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac", "pcm"])
def test_stream_of_pieces_is_one_file(fmt):
    wave = tone(1.2)
    pieces = np.array_split(wave, 7)
    streamed = b"".join(audio.encode_stream(pieces, fmt))
    if fmt == "wav":
        assert streamed[4:8] == b"\xff\xff\xff\xff" and streamed[40:44] == b"\xff\xff\xff\xff"
        assert np.array_equal(np.frombuffer(streamed[44:], "<i2"), audio.to_int16(wave))
        return
    decoded, _ = decode_any(streamed, fmt)
    whole, _ = decode_any(audio.encode(wave, fmt), fmt)
    assert len(decoded) == len(whole)
    assert np.abs(decoded - whole).max() < 1e-3


def test_reference_any_rate_and_channels_to_24k_mono():
    stereo = np.stack([tone(1.0, 44100), -tone(1.0, 44100) * 0.5])
    buf = io.BytesIO()
    sf.write(buf, stereo.T, 44100, format="WAV")
    mono = audio.load_model_audio(buf.getvalue())
    assert mono.ndim == 1 and abs(len(mono) - 24000) <= 1
    mp3 = audio.encode(tone(1.0), "mp3")
    assert abs(len(audio.load_model_audio(mp3)) - 24000) < 2000


def test_garbage_is_a_decode_error():
    with pytest.raises(audio.AudioDecodeError):
        audio.load_model_audio(b"\x00\x01garbage" * 100)
    with pytest.raises(audio.AudioDecodeError):
        audio.load_model_audio(b"")
