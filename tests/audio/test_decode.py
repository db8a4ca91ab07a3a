"""Decoding untrusted audio: allow-listed containers only, header checks before decoding, a block budget, bounded
memory and a cap on decodes at once."""

from __future__ import annotations

import io
import threading
import tracemalloc

import av
import numpy as np
import pytest
import soundfile as sf

from fixture_voices import encoded, speech_like
from higgs_worker import audio
from higgs_worker.audio import decode as audio_decode
from higgs_worker.core import settings as settings_module
from higgs_worker.audio.decode import (AudioDecodeError, AudioLimitError, AudioTooLong, DecodeLimits, decode_mono,
                                       sniff_container)
from hostile_media import ffconcat, playlist, silent_flac

LIMITS = DecodeLimits(max_seconds=60.0, max_channels=8, max_sample_rate=192_000)


def soundfile_bytes(fmt: str, seconds=1.0, rate=16000, channels=2, subtype=None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, speech_like(seconds, rate, 150.0, channels), rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def pyav_bytes(container: str, codec: str, seconds=1.0, rate=48000) -> bytes:
    wave = speech_like(seconds, rate, 150.0)
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as box:
        stream = box.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(wave[None, :], format="flt", layout="mono")
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=stream.format, layout="mono", rate=rate,
                                      frame_size=stream.codec_context.frame_size or None)
        for piece in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(piece):
                box.mux(packet)
        for packet in stream.encode(None):
            box.mux(packet)
    return buf.getvalue()


ACCEPTED = {
    "wav": lambda: encoded("wav", 1.0, 22050, 2),
    "flac": lambda: encoded("flac", 1.0, 44100, 2),
    "ogg": lambda: encoded("ogg", 1.0, 22050, 1),
    "mp3": lambda: encoded("mp3", 1.0, 44100, 2),
    "m4a": lambda: encoded("m4a", 1.0, 48000, 1),
    "opus": lambda: encoded("opus", 1.0, 48000, 2),
    "aac": lambda: audio.encode(speech_like(1.0, 24000, 150.0), "aac"),
    "webm": lambda: pyav_bytes("webm", "libopus"),
    "aiff": lambda: soundfile_bytes("AIFF"),
    "caf": lambda: soundfile_bytes("CAF"),
    "wav-24bit-6ch": lambda: soundfile_bytes("WAV", channels=6, subtype="PCM_24"),
    "wav-u8": lambda: soundfile_bytes("WAV", channels=1, subtype="PCM_U8"),
    "wav-double": lambda: soundfile_bytes("WAV", channels=2, subtype="DOUBLE"),
}


@pytest.mark.parametrize("kind", sorted(ACCEPTED))
def test_accepted_containers_decode_to_mono_at_the_model_rate(kind):
    wave = decode_mono(ACCEPTED[kind](), 24000, LIMITS)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) / 24000 - 1.0) < 0.1, len(wave)  # lossy codecs add a few tens of ms at most
    assert 0.05 < float(np.abs(wave).max()) <= 1.0


def test_channels_are_averaged_and_integer_samples_scaled():
    data = np.stack([np.full(16000, 0.5), np.full(16000, -0.25), np.full(16000, 0.5)], axis=1)
    for subtype in ("PCM_16", "PCM_U8", "PCM_32", "FLOAT"):
        buf = io.BytesIO()
        sf.write(buf, data, 16000, format="WAV", subtype=subtype)
        wave = decode_mono(buf.getvalue(), 16000, LIMITS)
        assert len(wave) == 16000 and np.allclose(wave, 0.25, atol=0.01), subtype


@pytest.mark.parametrize("payload", [ffconcat("secret.wav"), playlist("secret.wav"),
                                     b"\x89PNG\r\n\x1a\n" + b"\0" * 64, b"RIFF\0\0\0\0AVI LIST" + b"\0" * 64,
                                     b"file 'secret.wav'\n", b"\0" * 256])
def test_containers_that_can_name_other_files_are_refused_before_demuxing(tmp_path, monkeypatch, payload):
    (tmp_path / "secret.wav").write_bytes(encoded("wav", 1.0))  # what a concat script or playlist would read
    monkeypatch.chdir(tmp_path)
    opened = []
    monkeypatch.setattr(audio_decode.av, "open", lambda *a, **k: opened.append(a) or pytest.fail("demuxer opened"))
    with pytest.raises(AudioDecodeError, match="accepted audio container"):
        decode_mono(payload, 24000, LIMITS)
    assert opened == []


def test_sniffing_picks_the_demuxer_from_the_signature_alone():
    assert sniff_container(ACCEPTED["mp3"]()) == "mp3"  # ID3 tag first
    assert sniff_container(ACCEPTED["aac"]()) == "aac"  # ADTS
    assert sniff_container(ACCEPTED["m4a"]()) == "mov"
    assert sniff_container(ACCEPTED["webm"]()) == "matroska"
    assert sniff_container(b"ffconcat version 1.0\n") is None and sniff_container(b"") is None


def test_a_header_declaring_too_much_is_refused_before_any_block_is_decoded(monkeypatch):
    blocks = []
    real = audio_decode.block_to_mono
    monkeypatch.setattr(audio_decode, "block_to_mono", lambda frame: blocks.append(1) or real(frame))
    hostile = silent_flac(150)  # about 5 KB declaring 1229 s on 8 channels
    assert len(hostile) < 6000
    with pytest.raises(AudioTooLong, match=r"declares 1228\.8 s.*MAX_REF_AUDIO_SECONDS"):
        decode_mono(hostile, 24000, LIMITS)
    assert blocks == []
    with pytest.raises(AudioLimitError, match="8 channels; the limit is 2 .MAX_REF_CHANNELS"):
        decode_mono(silent_flac(2), 24000, DecodeLimits(60.0, max_channels=2))
    with pytest.raises(AudioLimitError, match="96000 Hz; the limit is 48000 Hz .MAX_REF_SAMPLE_RATE"):
        decode_mono(soundfile_bytes("WAV", rate=96000), 24000, DecodeLimits(60.0, max_sample_rate=48000))
    assert blocks == []


@pytest.mark.parametrize("declared_total", [0, 8000])  # "unknown", and a lie: one second
def test_a_lying_header_is_stopped_by_the_block_budget(monkeypatch, declared_total):
    blocks = []
    real = audio_decode.block_to_mono
    monkeypatch.setattr(audio_decode, "block_to_mono", lambda frame: blocks.append(1) or real(frame))
    with pytest.raises(AudioTooLong, match="is longer than 60 s.*MAX_REF_AUDIO_SECONDS"):
        decode_mono(silent_flac(150, declared_total=declared_total), 24000, LIMITS)
    # 60 s at 8 kHz is 7.3 blocks of 65535 samples: decoding stopped at the first block past it, of 150
    assert len(blocks) <= 8


def test_a_stream_that_grows_channels_after_its_header_is_stopped_at_that_block(monkeypatch):
    blocks = []
    real = audio_decode.block_to_mono
    monkeypatch.setattr(audio_decode, "block_to_mono", lambda frame: blocks.append(1) or real(frame))
    hostile = silent_flac(30, channels=8, rate=48000, declared_channels=1, mono_frames=20)
    with pytest.raises(AudioLimitError, match="8 channels; the limit is 2"):
        decode_mono(hostile, 24000, DecodeLimits(60.0, max_channels=2))
    assert len(blocks) == 20


def test_decoding_a_hostile_clip_allocates_little():
    hostile = silent_flac(150, declared_total=0)
    decode_mono(silent_flac(2), 24000, LIMITS)  # warm the code paths
    tracemalloc.start()
    try:
        with pytest.raises(AudioTooLong):
            decode_mono(hostile, 24000, LIMITS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # all of it at full rate would be 150 x 65535 x 8 float32 = 315 MB; the budget stops near 60 s of mono 24 kHz
    assert peak < 16 * 1024 * 1024, peak


class CountingSlots:
    """A semaphore that records how many holders it had at once."""

    def __init__(self, n: int) -> None:
        self._sem = threading.BoundedSemaphore(n)
        self._lock = threading.Lock()
        self.held = self.most = self.taken = 0

    def __enter__(self):
        self._sem.acquire()
        with self._lock:
            self.held += 1
            self.taken += 1
            self.most = max(self.most, self.held)
        return self

    def __exit__(self, *exc):
        with self._lock:
            self.held -= 1
        self._sem.release()


def test_concurrent_decodes_share_a_bounded_number_of_slots():
    slots = CountingSlots(2)
    data = encoded("flac", 2.0, 44100, 2)
    start = threading.Barrier(6)
    results = []

    def decode():
        start.wait()
        results.append(len(decode_mono(data, 24000, LIMITS, slots=slots)))

    threads = [threading.Thread(target=decode) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 6 and slots.taken == 6 and slots.most <= 2 and slots.held == 0


def test_process_wide_slots_come_from_the_setting(monkeypatch):
    monkeypatch.setenv("MAX_CONCURRENT_DECODES", "3")
    monkeypatch.setattr(audio_decode, "_slots", None)
    settings_module.reset_settings()
    try:
        slots = audio_decode.decode_slots()
    finally:
        settings_module.reset_settings()
    assert [slots.acquire(blocking=False) for _ in range(4)] == [True, True, True, False]
    for _ in range(3):
        slots.release()
    assert audio_decode.decode_slots() is slots


def test_garbage_inside_an_accepted_container_is_a_decode_error():
    with pytest.raises(AudioDecodeError):
        decode_mono(b"fLaC" + b"\xff" * 500, 24000, LIMITS)
    with pytest.raises(AudioDecodeError):
        decode_mono(b"RIFF\x24\0\0\0WAVEfmt " + b"\0" * 40, 24000, LIMITS)


def chained(container: str, codec: str, pieces: list[tuple[int, str, float, float]], **options: str) -> bytes:
    """Files of one codec played back to back, as a chained stream: each of ``pieces`` (rate, layout, tone in Hz,
    seconds) encoded on its own and the bytes concatenated, so the rate and channels change between blocks."""
    out = b""
    for rate, layout, tone_hz, seconds in pieces:
        channels = 2 if layout == "stereo" else 1
        tone = (0.5 * np.sin(2 * np.pi * tone_hz * np.arange(int(rate * seconds)) / rate)).astype(np.float32)
        buf = io.BytesIO()
        with av.open(buf, "w", format=container, options=options) as box:
            stream = box.add_stream(codec, rate=rate, layout=layout)
            frame = av.AudioFrame.from_ndarray(np.tile(tone, (channels, 1)), format="fltp", layout=layout)
            frame.sample_rate = rate
            resampler = av.AudioResampler(format=stream.format, layout=layout, rate=rate,
                                          frame_size=stream.codec_context.frame_size or None)
            for piece in resampler.resample(frame) + resampler.resample(None):
                for packet in stream.encode(piece):
                    box.mux(packet)
            for packet in stream.encode(None):
                box.mux(packet)
        out += buf.getvalue()
    return out


def dominant_hz(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / rate)[spectrum.argmax()])


def test_a_stream_that_changes_rate_and_channels_midway_is_resampled_block_by_block_at_each_rate():
    # ADTS AAC: 8 kHz mono, then 48 kHz stereo, then 24 kHz mono; each block carries its own rate
    data = chained("adts", "aac", [(8000, "mono", 440.0, 1.5), (48000, "stereo", 1000.0, 1.5),
                                   (24000, "mono", 2000.0, 1.5)])
    with av.open(io.BytesIO(data), format="aac") as box:  # the file really is what the test says
        blocks = [(f.sample_rate, f.layout.nb_channels, f.samples) for f in box.decode(audio=0)]
    assert {(rate, channels) for rate, channels, _ in blocks} == {(8000, 1), (48000, 2), (24000, 1)}
    wave = decode_mono(data, 24000, LIMITS)
    # every sample of every block, each at its own rate (none lost where the rate changes); 4.5 s plus AAC's
    # priming and padding, where a block read at another rate would make its piece 6 times longer or shorter
    assert len(wave) == pytest.approx(sum(n / rate for rate, _, n in blocks) * 24000, abs=1)
    assert 4.5 <= len(wave) / 24000 < 4.8, len(wave) / 24000
    # each tone at its own pitch (the windows sit inside each piece, whatever the codec's padding)
    tones = [dominant_hz(wave[int(start * 24000):int((start + 0.8) * 24000)], 24000) for start in (0.4, 1.9, 3.4)]
    assert tones == pytest.approx([440.0, 1000.0, 2000.0], abs=5.0), tones


def test_the_length_budget_counts_each_block_at_its_own_rate():
    # half a second at 48 kHz, then two at 8 kHz: 2.5 s, though the header's 48 kHz would make it 0.83 s
    data = chained("adts", "aac", [(48000, "mono", 440.0, 0.5), (8000, "mono", 440.0, 2.0)])
    with pytest.raises(AudioTooLong, match=r"is longer than 2 s"):
        decode_mono(data, 24000, DecodeLimits(max_seconds=2.0))
    assert len(decode_mono(data, 24000, DecodeLimits(max_seconds=3.0))) / 24000 == pytest.approx(2.5, abs=0.25)


def test_a_block_that_raises_the_rate_past_the_limit_midway_is_refused():
    data = chained("adts", "aac", [(16000, "mono", 440.0, 0.5), (96000, "mono", 440.0, 0.5)])
    with pytest.raises(AudioLimitError, match="96000 Hz; the limit is 48000 Hz .MAX_REF_SAMPLE_RATE"):
        decode_mono(data, 24000, DecodeLimits(max_sample_rate=48000))


def test_a_rate_change_the_decoder_mislabels_is_refused_not_resampled_at_the_wrong_rate():
    # Chained MP3 frames, 48 kHz then 16 kHz: FFmpeg labels the first block after each change with the old rate
    # (its decoder reads the new one), so resampling by the label would play those blocks at the wrong pitch
    data = chained("mp3", "libmp3lame", [(48000, "mono", 440.0, 1.0), (16000, "mono", 1000.0, 1.0)],
                   write_xing="0", id3v2_version="0")
    assert sniff_container(data) == "mp3"
    with av.open(io.BytesIO(data), format="mp3") as box:
        stream = box.streams.audio[0]
        labels = [(frame.sample_rate, stream.codec_context.sample_rate) for frame in box.decode(stream)]
    assert any(label != read for label, read in labels)  # what the refusal guards against
    with pytest.raises(AudioDecodeError, match="changes its sample rate mid-stream"):
        decode_mono(data, 24000, LIMITS)
    # one rate throughout is decoded as before
    single = chained("mp3", "libmp3lame", [(16000, "mono", 1000.0, 1.0)], write_xing="0", id3v2_version="0")
    wave = decode_mono(single, 24000, LIMITS)
    assert dominant_hz(wave, 24000) == pytest.approx(1000.0, abs=5.0)


@pytest.mark.parametrize(("data", "looks_like"), [
    (b"Not audio.\n", "text"), (b'  {"ref_audio": "..."}', "JSON"), (b"[1, 2]", "JSON"),
    (b"<!DOCTYPE html>\n<html lang=en>", "HTML"), (b"<?xml version='1.0'?><svg/>", "an SVG image"),
    (b"<?xml version='1.0'?><a/>", "XML"), (b"\x89PNG\r\n\x1a\n" + bytes(64), "a PNG image"),
    (b"\xff\xd8\xff\xe0" + bytes(64), "a JPEG image"), (b"GIF89a" + bytes(64), "a GIF image"),
    (b"RIFF\0\0\0\0WEBPVP8 ", "a WebP image"), (b"RIFF\0\0\0\0AVI LIST", "an AVI video"),
    (b"%PDF-1.7\n", "a PDF document"), (b"PK\x03\x04" + bytes(64), "a ZIP archive or an Office document"),
    (b"MThd\0\0\0\x06", "a MIDI file, which holds notes, not recorded sound"),
    (b"UklGRiQAAABXQVZFZm10IBAAAAABAAEAwF0AAIC7AAACABAAZGF0YQAAAAA=\n",
     "base64 text; was the audio base64-encoded twice?"),
    (b"data:audio/wav;base64,UklGRiQAAABXQVZF", "a base64 data: URI; was the audio base64-encoded twice?"),
    (b"Supercalifragilisticexpialidocious", "text"), (b"caf\xc3\xa9 " * 900 + b"\xc3", "text"),
    (bytes(256), None), (bytes(range(256)), None), (b"\n", None),
])
def test_bytes_that_are_not_audio_are_described_cheaply(data, looks_like):
    """What a refusal says the bytes look like instead: from signatures and a look at the text, never a parser."""
    assert audio_decode.describe_content(data[:4096]) == looks_like
    with pytest.raises(audio_decode.NotAudio) as err:
        decode_mono(data, 24000, LIMITS)
    assert err.value.size == len(data) and err.value.looks_like == looks_like
    seems = f" (they look like {looks_like})" if looks_like else ""
    assert str(err.value) == (f"is {len(data)} bytes that are not audio in any known format{seems}; the accepted "
                              "audio containers are WAV, FLAC, MP3, Ogg, MP4/M4A, WebM/Matroska, AAC, AIFF or CAF")
