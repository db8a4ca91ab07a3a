import base64
import io

import numpy as np
import pytest
import soundfile as sf

from fixture_voices import VOICES, encoded
from higgs_worker.audio import SAMPLE_RATE
from higgs_worker.schema import RequestError
from higgs_worker.voices import VoiceLibrary


def library(root, max_bytes=10_000_000, max_seconds=60.0):
    return VoiceLibrary(root, max_bytes, max_seconds)


def wav_bytes(seconds=1.0, rate=16000, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 220 * t)
    data = np.stack([tone] * channels, axis=1) if channels > 1 else tone
    buf = io.BytesIO()
    sf.write(buf, data, rate, format="WAV")
    return buf.getvalue()


def test_presets_listed_and_loaded(voices_dir):
    lib = library(voices_dir)
    assert lib.names() == sorted(VOICES)
    ref = lib.get("alto")
    assert ref.transcript.startswith("Twas the night before my birthday")
    assert ref.wave.dtype == np.float32 and ref.wave.ndim == 1


@pytest.mark.parametrize("name", sorted(VOICES))
def test_every_rate_channel_count_and_sample_type_becomes_24k_mono(voices_dir, name):
    spec = VOICES[name]
    info = sf.info(str(voices_dir / f"{name}.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (spec.rate, spec.channels, spec.subtype)
    ref = library(voices_dir).get(name)
    assert ref.wave.dtype == np.float32 and ref.wave.ndim == 1
    assert abs(len(ref.wave) - info.frames * SAMPLE_RATE / info.samplerate) <= 2
    assert 0.05 < float(np.abs(ref.wave).max()) <= 1.0


@pytest.mark.parametrize(("fmt", "rate", "channels"),
                         [("flac", 44100, 2), ("ogg", 22050, 1), ("mp3", 44100, 2), ("m4a", 48000, 1),
                          ("opus", 48000, 2), ("wav", 8000, 1)])
def test_base64_reference_in_every_common_format(tmp_path, fmt, rate, channels):
    data = encoded(fmt, seconds=1.5, rate=rate, channels=channels)
    ref = library(tmp_path).from_base64(base64.b64encode(data).decode(), "words")
    assert ref.wave.ndim == 1
    # lossy codecs add encoder delay and padding (a few tens of ms), never a different length
    assert abs(ref.duration_s - 1.5) < 0.1, ref.duration_s


def test_44k_stereo_preset_is_resampled_to_24k_mono(voices_dir):
    src = voices_dir / "stereo_hall.wav"
    info = sf.info(str(src))
    assert (info.samplerate, info.channels) == (44100, 2)
    ref = library(voices_dir).get("stereo_hall")
    assert ref.wave.ndim == 1
    assert abs(len(ref.wave) - info.frames * 24000 / 44100) <= 2
    original, _ = sf.read(str(src), dtype="float32")
    assert abs(ref.duration_s - len(original) / 44100) < 1e-3


def test_unknown_voice_names_the_field_and_the_choices(voices_dir):
    with pytest.raises(RequestError) as err:
        library(voices_dir).get("nobody")
    assert err.value.field == "ref_audio" and "alto" in err.value.message


def test_base64_audio_any_rate_and_data_uri(tmp_path):
    lib = library(tmp_path)
    raw = base64.b64encode(wav_bytes(1.0, 16000, 2)).decode()
    ref = lib.from_base64("data:audio/wav;base64," + raw, "words")
    assert abs(len(ref.wave) - 24000) <= 2 and ref.transcript == "words"


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ("not base64 at all!!", "base64"),
        (base64.b64encode(b"definitely not audio" * 50).decode(), "decoded as audio"),
        (base64.b64encode(wav_bytes(0.05)).decode(), "at least 0.2 s"),
    ],
)
def test_bad_base64_audio(tmp_path, payload, needle):
    with pytest.raises(RequestError) as err:
        library(tmp_path).from_base64(payload, "words")
    assert err.value.field == "ref_audio" and needle in err.value.message


def test_size_and_duration_limits_before_and_after_decoding(tmp_path):
    raw = base64.b64encode(wav_bytes(2.0)).decode()
    with pytest.raises(RequestError, match="MAX_REF_AUDIO_BYTES"):
        library(tmp_path, max_bytes=1000).from_base64(raw, "w")
    with pytest.raises(RequestError, match="MAX_REF_AUDIO_SECONDS"):
        library(tmp_path, max_seconds=1.0).from_base64(raw, "w")
