"""Audio in and out: reading any reference clip as 24 kHz mono, and encoding results.

The only place that resamples or mixes channels, and the only place that encodes. Encoders are built on PyAV
(FFmpeg) with one encoder per response, so a stream cut into pieces is still one continuous file.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterable, Iterator

import av
import numpy as np
import soundfile as sf
import torch
import torchaudio

SAMPLE_RATE = 24000

#: Content types of each output format.
MEDIA_TYPES = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "pcm": "audio/L16",
}

# Container and codec of the compressed formats.
_AV_FORMATS: dict[str, tuple[str, str]] = {
    "flac": ("flac", "flac"),
    "mp3": ("mp3", "libmp3lame"),
    "opus": ("ogg", "libopus"),
    "aac": ("adts", "aac"),
}


class AudioDecodeError(ValueError):
    """Bytes that are not audio any decoder here can read."""


def decode_audio(data: bytes) -> tuple[np.ndarray, int]:
    """Decode audio bytes of any common format to float32 ``(channels, samples)`` and its sample rate."""
    if not data:
        raise AudioDecodeError("no audio data")
    try:
        wave, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        return np.ascontiguousarray(wave.T), int(rate)
    except Exception:  # noqa: BLE001 - fall through to FFmpeg for mp3, aac, opus, m4a...
        pass
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = next(s for s in container.streams if s.type == "audio")
            rate = stream.codec_context.sample_rate
            frames = [f.to_ndarray() for f in container.decode(stream)]
    except (av.FFmpegError, StopIteration, ValueError, IndexError) as exc:
        raise AudioDecodeError(f"could not decode audio ({exc.__class__.__name__})") from None
    if not frames or not rate:
        raise AudioDecodeError("audio stream has no samples")
    planar = [f if f.ndim == 2 else f[None, :] for f in frames]
    wave = np.concatenate(planar, axis=1)
    if wave.dtype.kind == "i":
        wave = wave.astype(np.float32) / float(np.iinfo(wave.dtype).max)
    return wave.astype(np.float32, copy=False), int(rate)


def to_model_audio(wave: np.ndarray, rate: int) -> np.ndarray:
    """Mix ``(channels, samples)`` (or 1-D) audio to mono and resample it to 24 kHz, float32 1-D."""
    mono = wave if wave.ndim == 1 else wave.mean(axis=0)
    mono = np.asarray(mono, dtype=np.float32)
    if rate != SAMPLE_RATE:
        mono = torchaudio.functional.resample(torch.from_numpy(mono), rate, SAMPLE_RATE).numpy()
    return np.ascontiguousarray(mono, dtype=np.float32)


def load_model_audio(data: bytes) -> np.ndarray:
    """Bytes of any format, rate and channel count to 24 kHz mono float32."""
    wave, rate = decode_audio(data)
    return to_model_audio(wave, rate)


def to_int16(wave: np.ndarray) -> np.ndarray:
    return (np.clip(wave, -1.0, 1.0) * 32767.0).astype("<i2")


def wav_header(sample_rate: int = SAMPLE_RATE, data_bytes: int | None = None) -> bytes:
    """A 16-bit mono PCM WAV header; with ``data_bytes=None`` the sizes are 0xFFFFFFFF (streaming)."""
    riff = 0xFFFFFFFF if data_bytes is None else 36 + data_bytes
    data = 0xFFFFFFFF if data_bytes is None else data_bytes
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVE" + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate,
            sample_rate * 2, 2, 16) + b"data" + struct.pack("<I", data))


class StreamEncoder:
    """One encoder for one response: feed float chunks, get encoded bytes as they are ready.

    Concatenating everything :meth:`feed` and :meth:`close` return gives one valid file (WAV gets
    the streaming size sentinel 0xFFFFFFFF), without gaps at the joins.
    """

    def __init__(self, fmt: str, sample_rate: int = SAMPLE_RATE) -> None:
        if fmt not in MEDIA_TYPES:
            raise ValueError(f"unsupported format {fmt!r}")
        self.fmt = fmt
        self.sample_rate = sample_rate
        self._started = False
        self._buffer = io.BytesIO()
        self._sent = 0
        self._container = None
        self._stream = None
        self._pts = 0
        if fmt in _AV_FORMATS:
            container_fmt, codec = _AV_FORMATS[fmt]
            self._container = av.open(self._buffer, mode="w", format=container_fmt)
            self._stream = self._container.add_stream(codec, rate=sample_rate, layout="mono")
            if fmt == "mp3":
                self._stream.bit_rate = 64000

    def feed(self, wave: np.ndarray) -> bytes:
        """Encode more samples; returns the bytes ready so far (possibly empty)."""
        if self.fmt in ("wav", "pcm"):
            head = b""
            if self.fmt == "wav" and not self._started:
                head = wav_header(self.sample_rate)
            self._started = True
            return head + to_int16(wave).tobytes()
        samples = to_int16(wave)[None, :]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        self._pts += samples.shape[1]
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._drain()

    def close(self) -> bytes:
        """Flush the encoder; returns the last bytes."""
        if self.fmt == "wav" and not self._started:
            self._started = True
            return wav_header(self.sample_rate)
        if self._container is None:
            return b""
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        self._container = None
        return self._drain()

    def _drain(self) -> bytes:
        data = self._buffer.getvalue()
        new = data[self._sent:]
        self._sent = len(data)
        return new


def encode(wave: np.ndarray, fmt: str, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Encode a whole waveform; WAV and FLAC get exact length fields (a stream cannot know them)."""
    if fmt == "wav":
        pcm = to_int16(wave).tobytes()
        return wav_header(sample_rate, len(pcm)) + pcm
    if fmt == "flac":
        buf = io.BytesIO()
        sf.write(buf, to_int16(wave), sample_rate, format="FLAC", subtype="PCM_16")
        return buf.getvalue()
    enc = StreamEncoder(fmt, sample_rate)
    return enc.feed(wave) + enc.close()


def encode_stream(chunks: Iterable[np.ndarray], fmt: str, sample_rate: int = SAMPLE_RATE) -> Iterator[bytes]:
    """Encode waveform pieces as one continuous stream, yielding bytes as they are ready."""
    enc = StreamEncoder(fmt, sample_rate)
    for chunk in chunks:
        out = enc.feed(chunk)
        if out:
            yield out
    tail = enc.close()
    if tail:
        yield tail

