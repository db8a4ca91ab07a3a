import base64
import io
import threading

import numpy as np
import pytest
import soundfile as sf

from fixture_voices import VOICES, encoded
from higgs_worker.audio import SAMPLE_RATE
from higgs_worker.core.errors import RequestError
from higgs_worker.voices.library import VoiceLibrary


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


# -- hardening: whole-name matching, atomic uploads, caps, a byte-bounded cache, hostile audio ----------------

def upload_bytes(seconds=1.0):
    return encoded("flac", seconds, 44100, 2)


@pytest.mark.parametrize("name", ["alto\n", "new_voice\n", "a" * 65, "-lead", "sp ace", "dot.wav", "../up"])
def test_names_are_matched_whole(voices_dir, name):
    lib = library(voices_dir)
    with pytest.raises(RequestError) as err:
        lib.add_upload(name, upload_bytes(), "words")
    assert err.value.field == "name"
    with pytest.raises(RequestError, match="unknown voice"):
        lib.get(name)
    assert lib.delete_upload(name) is False
    assert not (voices_dir / "uploads").exists() or not list((voices_dir / "uploads").glob("*.wav"))


def test_parallel_uploads_of_one_name_store_exactly_one(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from higgs_worker.voices.library import VoiceExists

    lib = library(tmp_path)
    start = threading.Barrier(8)
    raw = upload_bytes()

    def upload(i):
        start.wait()
        try:
            return lib.add_upload("shared", raw, f"take {i}").transcript
        except VoiceExists:
            return None

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(upload, range(8)))
    winners = [o for o in outcomes if o is not None]
    assert len(winners) == 1
    assert (tmp_path / "uploads" / "shared.txt").read_text("utf-8").strip() == winners[0]  # no silent overwrite
    assert sorted(p.name for p in (tmp_path / "uploads").iterdir() if not p.name.startswith(".lock")) == \
        ["shared.txt", "shared.wav"]  # no temporary file left behind


def test_upload_count_and_byte_caps(tmp_path):
    lib = VoiceLibrary(tmp_path, 10_000_000, 60.0, max_uploads=2, max_upload_bytes=10_000_000)
    lib.add_upload("one", upload_bytes(), "w")
    lib.add_upload("two", upload_bytes(), "w")
    with pytest.raises(RequestError, match=r"limit is 2 \(MAX_UPLOADED_VOICES\)") as err:
        lib.add_upload("three", upload_bytes(), "w")
    assert err.value.field == "name"
    assert lib.delete_upload("one")
    lib.add_upload("three", upload_bytes(), "w")

    small = VoiceLibrary(tmp_path / "small", 10_000_000, 60.0, max_uploads=100, max_upload_bytes=150_000)
    small.add_upload("first", upload_bytes(2.0), "w")  # 96 KB of 24 kHz 16-bit WAV
    with pytest.raises(RequestError, match=r"the limit is 150000 \(MAX_UPLOADED_VOICE_BYTES\)") as err:
        small.add_upload("second", upload_bytes(2.0), "w")
    assert err.value.field == "audio" and small.names() == ["first"]


def test_waveform_cache_is_bounded_by_bytes_least_recently_used_first(voices_dir):
    # float32 at 24 kHz: alto 2.2 s, tenor 1.8 s, bass 1.5 s; room for any two of them, not all three
    lib = VoiceLibrary(voices_dir, 10_000_000, 60.0, cache_bytes=int(4.5 * 24000 * 4))
    lib.get("alto")
    lib.get("tenor")
    assert "alto" in lib.cache and "tenor" in lib.cache
    lib.get("alto")  # alto is now the most recently used
    lib.get("bass")
    assert "tenor" not in lib.cache and "alto" in lib.cache and "bass" in lib.cache
    assert lib.cache.bytes <= lib.cache.max_bytes
    assert lib.get("alto") is lib.get("alto")  # a hit is the same object
    nothing = VoiceLibrary(voices_dir, 10_000_000, 60.0, cache_bytes=0)
    nothing.get("alto")
    assert "alto" not in nothing.cache and nothing.cache.bytes == 0


def test_a_changed_preset_is_read_again(voices_dir):
    lib = library(voices_dir)
    before = lib.get("alto")
    sf.write(str(voices_dir / "alto.wav"), np.zeros(12000, dtype=np.float32) + 0.1, 24000)
    after = lib.get("alto")
    assert after is not before and len(after.wave) == 12000


def test_hostile_audio_is_refused_naming_the_limit(tmp_path):
    from hostile_media import ffconcat, silent_flac

    lib = library(tmp_path)
    (tmp_path / "secret.wav").write_bytes(encoded("wav", 1.0))
    for payload in (ffconcat(str(tmp_path / "secret.wav")), ffconcat("secret.wav")):
        with pytest.raises(RequestError, match="accepted audio container") as err:
            lib.add_upload("sneaky", payload, "words")
        assert err.value.field == "ref_audio"
    with pytest.raises(RequestError, match="MAX_REF_AUDIO_SECONDS") as err:
        lib.from_base64(base64.b64encode(silent_flac(150, declared_total=0)).decode(), "w")
    assert err.value.field == "ref_audio"
    with pytest.raises(RequestError, match=r"limit is 2 \(MAX_REF_CHANNELS\)"):
        VoiceLibrary(tmp_path, 10_000_000, 60.0, max_channels=2).from_base64(
            base64.b64encode(silent_flac(2)).decode(), "w")
    assert lib.names() == []


def test_large_base64_is_decoded_in_steps_and_checked_everywhere(tmp_path):
    raw = wav_bytes(40.0, 24000)  # about 1.9 MB: several decoding steps
    text = base64.b64encode(raw).decode()
    ref = library(tmp_path).from_base64("data:audio/wav;base64," + text, "w")
    assert abs(ref.duration_s - 40.0) < 1e-3
    broken = text[:len(text) // 2] + "*" + text[len(text) // 2 + 1:]
    with pytest.raises(RequestError, match="valid base64"):
        library(tmp_path).from_base64(broken, "w")


def test_base64_of_exactly_the_byte_limit_is_accepted(tmp_path):
    raw = wav_bytes(1.0)
    for extra in range(3):  # every padding length
        data = raw + b"\0" * extra
        ref = library(tmp_path, max_bytes=len(data)).from_base64(base64.b64encode(data).decode(), "w")
        assert ref.duration_s == pytest.approx(1.0, abs=1e-3)
        with pytest.raises(RequestError, match="MAX_REF_AUDIO_BYTES"):
            library(tmp_path, max_bytes=len(data) - 1).from_base64(base64.b64encode(data).decode(), "w")


# -- upload transcripts cleaned and bounded like ref_text; names unique whatever their case --------------------

def test_an_upload_transcript_keeps_no_nul_bidi_override_or_terminal_escape(voices_dir):
    lib = library(voices_dir)
    ref = lib.add_upload("clean", upload_bytes(), " Hel\x00lo \u202ewor\u200bld,\x1b[31m in red\x1b[0m.\u2066 ")
    assert ref.transcript == "Hello world, in red."
    assert (voices_dir / "uploads" / "clean.txt").read_text("utf-8") == "Hello world, in red.\n"
    assert lib.get("clean").transcript == "Hello world, in red."
    assert {v["name"]: v["transcript"] for v in lib.describe()}["clean"] == "Hello world, in red."


@pytest.mark.parametrize("junk", ["\x00\u202e\x1b[0m", "\u3164\u2800", "\U000e0041\U000e007f"])
def test_an_upload_transcript_with_nothing_in_it_is_refused_naming_it(voices_dir, junk):
    lib = library(voices_dir)
    with pytest.raises(RequestError) as err:
        lib.add_upload("blank", upload_bytes(), junk)
    assert err.value.field == "transcript" and "nothing to say" in err.value.message
    assert "blank" not in lib.names()


def test_an_upload_transcript_is_bounded_by_the_reference_text_limit(env, voices_dir):
    env(MAX_REF_TEXT_CHARS="30")
    lib = library(voices_dir)
    lib.add_upload("fits", upload_bytes(), "x" * 30)
    with pytest.raises(RequestError) as err:
        lib.add_upload("long", upload_bytes(), "\u200b" * 31)  # counted as sent, before cleaning
    assert err.value.field == "transcript" and err.value.message == "is 31 characters; the limit is 30 (MAX_REF_TEXT_CHARS)"


def test_a_transcript_written_to_disk_is_cleaned_when_read(voices_dir):
    (voices_dir / "alto.txt").write_text("Al\x00to \u202esings\x1b[0m.\n", "utf-8")
    lib = library(voices_dir)
    assert lib.get("alto").transcript == "Alto sings."
    assert {v["name"]: v["transcript"] for v in lib.describe()}["alto"] == "Alto sings."


@pytest.mark.parametrize(("taken", "upload"), [("alto", "Alto"), ("alto", "ALTO"), ("mine", "MINE"), ("Mine", "mine")])
def test_an_upload_may_not_imitate_another_voice_by_case(voices_dir, taken, upload):
    from higgs_worker.voices.library import VoiceExists

    lib = library(voices_dir)
    if taken not in lib.names():
        lib.add_upload(taken, upload_bytes(), "the first")
    with pytest.raises(VoiceExists) as err:
        lib.add_upload(upload, upload_bytes(), "an imitation")
    assert err.value.field == "name" and repr(taken) in err.value.message and repr(upload) in err.value.message
    assert upload not in lib.names() and not (voices_dir / "uploads" / f"{upload}.wav").exists()


def test_parallel_uploads_of_one_name_in_different_cases_store_exactly_one(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from higgs_worker.voices.library import VoiceExists

    lib = library(tmp_path)
    start = threading.Barrier(6)
    raw = upload_bytes()
    names = ["shared", "Shared", "SHARED", "sHared", "shaRed", "SHAREd"]

    def upload(name):
        start.wait()
        try:
            return lib.add_upload(name, raw, "words").name
        except VoiceExists:
            return None

    with ThreadPoolExecutor(6) as pool:
        winners = [n for n in pool.map(upload, names) if n is not None]
    assert len(winners) == 1 and lib.names() == winners  # the check under the lock folds case too


# -- refusals that say what to do: near-miss names, base64 that is not audio or not base64 -----------------------

@pytest.mark.parametrize(("name", "expected", "hint"), [
    ("Alto", "unknown voice 'Alto'; did you mean 'alto'? (voice names are case-sensitive; available: ",
     "; did you mean 'alto'? (voice names are case-sensitive)"),
    ("STEREO_HALL", "unknown voice 'STEREO_HALL'; did you mean 'stereo_hall'? (voice names are case-sensitive; ",
     "; did you mean 'stereo_hall'? (voice names are case-sensitive)"),
    ("tenr", "unknown voice 'tenr'; did you mean 'tenor'? (available: ", "; did you mean 'tenor'?"),
    ("nobody", "unknown voice 'nobody'; available: alto, bass, stereo_hall, tenor", ""),
])
def test_a_name_that_is_no_voice_suggests_the_one_meant(voices_dir, name, expected, hint):
    """Names stay case-sensitive (``Alto`` is not taken for ``alto``); the refusal names the voice meant, and the
    voice routes' 404 says the same (``did_you_mean``)."""
    lib = library(voices_dir)
    with pytest.raises(RequestError) as err:
        lib.get(name)
    assert err.value.field == "ref_audio" and err.value.message.startswith(expected), err.value.message
    assert lib.did_you_mean(name) == hint


def test_a_name_shaped_base64_of_text_or_an_image_is_refused_as_not_audio(voices_dir):
    lib = library(voices_dir)
    for data, looks_like in ((b"hello world!", "text"), (b"\x89PNG\r\n\x1a\n" + bytes(40), "a PNG image")):
        name = base64.b64encode(data).decode()
        assert lib.names() and name.isalnum()  # a voice name's shape: the library is asked for it by name
        with pytest.raises(RequestError) as err:
            lib.get(name)
        assert err.value.message.startswith(f"could not be decoded as audio: it decodes to {len(data)} bytes that "
                                            f"are not audio in any known format (they look like {looks_like})")
        assert "available: alto, bass, stereo_hall, tenor" in err.value.message


@pytest.mark.parametrize(("payload", "expected"), [
    ("Alto.", ("unknown voice 'Alto.'; did you mean 'alto'? (available: alto, bass, stereo_hall, tenor; a voice "
               "name has only letters, digits, '_' or '-', and this is not base64 audio either)")),
    ("A" * 100 + "-_", ("is neither a known voice name nor valid base64 audio: it holds '-' at character 100, which "
                        "is URL-safe base64; send standard base64 ('+' and '/')")),
    ("QUJD\nREVG" * 10, "it holds whitespace ('\\n') at character 4; send base64 without spaces or line breaks"),
    ("data:audio/wav;base64," + "A" * 99, "it is 99 base64 characters, not a multiple of 4"),
    ("A" * 96 + "=AAA", "it has '=' padding at character 96, before its end"),
    ("A" * 96 + "é", "it holds 'é' at character 96, which base64 does not use"),
])
def test_a_value_that_is_not_base64_says_where(voices_dir, payload, expected):
    with pytest.raises(RequestError) as err:
        library(voices_dir).from_base64(payload, "words")
    assert err.value.field == "ref_audio" and expected in err.value.message, err.value.message


def test_bytes_that_are_not_audio_are_counted_as_decoded_or_as_sent(tmp_path):
    lib = library(tmp_path)
    html = b"<!doctype html><title>404</title>"
    with pytest.raises(RequestError) as err:
        lib.from_base64(base64.b64encode(html).decode(), "words")
    assert err.value.message.startswith(f"could not be decoded as audio: it decodes to {len(html)} bytes that are "
                                        "not audio in any known format (they look like HTML); the accepted audio "
                                        "containers are WAV, FLAC")
    with pytest.raises(RequestError) as err:
        lib.add_upload("page", html, "words")
    assert err.value.message.startswith(f"could not be decoded as audio: it is {len(html)} bytes that are not audio")
