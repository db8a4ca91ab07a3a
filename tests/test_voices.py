import base64
import io

import numpy as np
import pytest
import soundfile as sf

from conftest import shared_voices_or_skip
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
    assert lib.names() == ["belinda", "broom_salesman", "chadwick", "en_man"]
    ref = lib.get("belinda")
    assert ref.transcript.startswith("Twas the night before my birthday")
    assert ref.wave.dtype == np.float32 and ref.wave.ndim == 1


def test_44k_stereo_preset_is_resampled_to_24k_mono(voices_dir):
    src = shared_voices_or_skip() / "broom_salesman.wav"
    info = sf.info(str(src))
    assert (info.samplerate, info.channels) == (44100, 2)
    ref = library(voices_dir).get("broom_salesman")
    assert ref.wave.ndim == 1
    assert abs(len(ref.wave) - info.frames * 24000 / 44100) <= 2
    original, _ = sf.read(str(src), dtype="float32")
    assert abs(ref.duration_s - len(original) / 44100) < 1e-3


def test_unknown_voice_names_the_field_and_the_choices(voices_dir):
    with pytest.raises(RequestError) as err:
        library(voices_dir).get("nobody")
    assert err.value.field == "ref_audio" and "belinda" in err.value.message


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
