"""Reference voices the tests make themselves: speech-like audio in several rates, channel counts and formats.

The tiny random model clones any audio, so a voice only has to look like a real preset on disk (``NAME.wav``
plus ``NAME.txt``) with the awkward shapes real files have: 16, 24, 44.1 and 48 kHz, mono and stereo, 16-bit,
24-bit and float samples. Nothing here reads files from outside the test's own folders.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import av
import soundfile as sf

from higgs_worker.voices.demo import speech_like


@dataclass(frozen=True)
class FixtureVoice:
    name: str
    rate: int
    channels: int
    subtype: str
    seconds: float
    pitch_hz: float
    transcript: str


VOICES: dict[str, FixtureVoice] = {v.name: v for v in (
    FixtureVoice("alto", 24000, 1, "PCM_16", 2.2, 210.0,
                 "Twas the night before my birthday, and the kettle was singing."),
    FixtureVoice("tenor", 16000, 1, "PCM_24", 1.8, 140.0, "Good morning, this is the weather for today."),
    FixtureVoice("stereo_hall", 44100, 2, "PCM_16", 2.0, 120.0,
                 "Brooms for sale, fine brooms, sweep your troubles away."),
    FixtureVoice("bass", 48000, 2, "FLOAT", 1.5, 95.0, "Slowly, the river found its way to the sea."),
)}


def write_voices(folder: Path, names: list[str] | None = None) -> Path:
    """Write the named fixture voices (all by default) as ``NAME.wav`` + ``NAME.txt`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names or list(VOICES)):
        v = VOICES[name]
        data = speech_like(v.seconds, v.rate, v.pitch_hz, v.channels, seed=i)
        sf.write(str(folder / f"{name}.wav"), data, v.rate, subtype=v.subtype)
        (folder / f"{name}.txt").write_text(v.transcript + "\n", "utf-8")
    return folder


def encoded(fmt: str, seconds: float = 1.0, rate: int = 24000, channels: int = 1, pitch_hz: float = 180.0) -> bytes:
    """Speech-like audio as the bytes of a file in ``fmt``: wav, flac, ogg (vorbis) through soundfile; mp3, m4a
    (AAC) and opus through PyAV."""
    data = speech_like(seconds, rate, pitch_hz, channels)
    buf = io.BytesIO()
    if fmt in ("wav", "flac", "ogg"):
        sf.write(buf, data, rate, format={"wav": "WAV", "flac": "FLAC", "ogg": "OGG"}[fmt])
        return buf.getvalue()
    codec, container = {"mp3": ("libmp3lame", "mp3"), "m4a": ("aac", "mp4"), "opus": ("libopus", "ogg")}[fmt]
    out_rate = 48000 if fmt == "opus" else rate
    layout = "mono" if channels == 1 else "stereo"
    planar = data.reshape(len(data), -1).T.copy()
    with av.open(buf, "w", format=container) as box:
        stream = box.add_stream(codec, rate=out_rate, layout=layout)
        resampler = av.AudioResampler(format=stream.format, layout=layout, rate=out_rate)
        frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=layout)
        frame.sample_rate = rate
        for piece in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(piece):
                box.mux(packet)
        for packet in stream.encode(None):
            box.mux(packet)
    return buf.getvalue()
