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


# -- the headers carry the rate and the channel count that was asked for -------------------------------------------

def wav_fields(data: bytes) -> dict:
    """The fields of a canonical 44-byte PCM WAV header."""
    import struct

    assert data[:4] == b"RIFF" and data[8:16] == b"WAVEfmt " and data[36:40] == b"data"
    riff, = struct.unpack("<I", data[4:8])
    fmt_size, codec, channels, rate, byte_rate, align, bits = struct.unpack("<IHHIIHH", data[16:36])
    size, = struct.unpack("<I", data[40:44])
    return {"riff": riff, "fmt_size": fmt_size, "codec": codec, "channels": channels, "rate": rate,
            "byte_rate": byte_rate, "align": align, "bits": bits, "data": size}


def pcm16_mono(rate: int, data: int) -> dict:
    return {"riff": data if data == 0xFFFFFFFF else 36 + data, "fmt_size": 16, "codec": 1, "channels": 1,
            "rate": rate, "byte_rate": rate * 2, "align": 2, "bits": 16, "data": data}


@pytest.mark.parametrize("rate", [24000, 16000, 44100, 48000])
def test_wav_header_carries_rate_channels_and_sizes(rate):
    wave = tone(0.25, rate)
    data = audio.encode(wave, "wav", rate)
    assert wav_fields(data) == pcm16_mono(rate, 2 * len(wave)) and len(data) == 44 + 2 * len(wave)
    info = sf.info(io.BytesIO(data))
    assert (info.samplerate, info.channels, info.frames) == (rate, 1, len(wave))
    import wave as wave_module

    with wave_module.open(io.BytesIO(data)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (rate, 1, 2, len(wave))


@pytest.mark.parametrize("rate", [24000, 16000, 44100])
def test_streamed_wav_header_carries_the_rate_with_unknown_sizes(rate):
    pieces = np.array_split(tone(0.3, rate), 4)
    chunks = list(audio.encode_stream(pieces, "wav", rate))
    assert wav_fields(chunks[0]) == pcm16_mono(rate, 0xFFFFFFFF)
    assert b"".join(chunks)[44:] == audio.to_int16(np.concatenate(pieces)).tobytes()
    empty = audio.StreamEncoder("wav", rate)  # nothing generated: still a header with the rate
    assert wav_fields(empty.close()) == pcm16_mono(rate, 0xFFFFFFFF) and empty.close() == b""


def test_the_default_rate_is_the_model_rate():
    assert audio.SAMPLE_RATE == 24000
    assert wav_fields(audio.encode(tone(0.1), "wav"))["rate"] == 24000
    assert wav_fields(next(audio.encode_stream([tone(0.1)], "wav")))["rate"] == 24000
    assert wav_fields(audio.wav_header())["rate"] == 24000


@pytest.mark.parametrize("fmt", ["flac", "mp3", "aac"])
@pytest.mark.parametrize("rate", [16000, 44100])
def test_compressed_formats_carry_the_rate_whole_and_streamed(fmt, rate):
    wave = tone(0.5, rate)
    for data in (audio.encode(wave, fmt, rate), b"".join(audio.encode_stream(np.array_split(wave, 3), fmt, rate))):
        with av.open(io.BytesIO(data)) as c:
            stream = c.streams.audio[0]
            decoded = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(stream)])
            assert stream.codec_context.sample_rate == rate and stream.codec_context.channels == 1
        assert len(decoded) / rate == pytest.approx(0.5, abs=0.08)


def test_opus_is_mono_and_keeps_the_duration_at_another_rate():
    wave = tone(0.5, 16000)
    with av.open(io.BytesIO(audio.encode(wave, "opus", 16000))) as c:
        stream = c.streams.audio[0]
        decoded = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(stream)])
        assert stream.codec_context.channels == 1
        assert len(decoded) / stream.codec_context.sample_rate == pytest.approx(0.5, abs=0.08)


def test_int16_conversion_clips_and_scales():
    got = audio.to_int16(np.array([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0], dtype=np.float32))
    assert got.dtype == np.dtype("<i2")
    assert got.tolist() == [-32767, -32767, -16383, 0, 16383, 32767, 32767]


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="ogg"):
        audio.StreamEncoder("ogg")
    assert set(audio.MEDIA_TYPES) == {"wav", "flac", "mp3", "opus", "aac", "pcm"}
    assert audio.MEDIA_TYPES["mp3"] == "audio/mpeg" and audio.MEDIA_TYPES["pcm"] == "audio/L16"


def decoded_frames(data: bytes):
    with av.open(io.BytesIO(data)) as c:
        stream = c.streams.audio[0]
        return [(f.pts, f.samples) for f in c.decode(stream)], stream


@pytest.mark.parametrize("fmt", ["opus"])  # the container with sample timestamps (granule positions)
def test_a_stream_in_pieces_has_contiguous_timestamps_from_zero(fmt):
    wave = tone(1.0)
    streamed = b"".join(audio.encode_stream(np.array_split(wave, 7), fmt))
    frames, _ = decoded_frames(streamed)
    whole, _ = decoded_frames(audio.encode(wave, fmt))
    assert frames[0][0] == 0
    assert all(p + n == q for (p, n), (q, _) in zip(frames, frames[1:]))  # no gap, no overlap
    assert sum(n for _, n in frames) == sum(n for _, n in whole)


def test_mp3_is_64_kbps():
    _, stream = decoded_frames(audio.encode(tone(1.0), "mp3"))
    assert stream.bit_rate == 64000


@pytest.mark.parametrize("fmt", ["wav", "pcm", "flac", "mp3", "opus", "aac"])
def test_closing_twice_gives_nothing_more(fmt):
    enc = audio.StreamEncoder(fmt)
    enc.feed(tone(0.2))
    enc.close()
    assert enc.close() == b""


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "opus", "aac", "pcm"])
def test_empty_audio_is_a_file_every_decoder_opens(fmt):
    """A generation that ended at once (issue 25): no exception (it was a 500), and a file that decodes: no samples
    for wav, flac and pcm, at most 50 ms of silence for the lossy formats, whole or streamed."""
    empty = np.zeros(0, dtype=np.float32)
    for data in (audio.encode(empty, fmt), b"".join(audio.encode_stream([empty], fmt)),
                 b"".join(audio.encode_stream([], fmt))):
        if fmt == "pcm":
            assert data == b""
            continue
        with av.open(io.BytesIO(data)) as c:
            stream = c.streams.audio[0]
            samples = sum(f.samples for f in c.decode(stream))
            seconds = samples / stream.codec_context.sample_rate
        assert seconds == 0 if fmt in ("wav", "flac") else 0 < seconds <= 0.15, (fmt, seconds)
        if seconds:
            assert np.abs(decode_any(data, fmt)[0]).max() < 0.01  # silence


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac"])
def test_an_empty_piece_mid_stream_is_skipped(fmt):
    pieces = [tone(0.2), np.zeros(0, dtype=np.float32), tone(0.2)]
    wave, rate = decode_any(b"".join(audio.encode_stream(pieces, fmt)), fmt)
    assert abs(len(wave) / rate - 0.4) < 0.1
