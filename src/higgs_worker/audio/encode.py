"""Encoding results: wav, flac, mp3, opus, aac and pcm, whole or as one continuous stream.

Reading untrusted clips lives in :mod:`.decode` (the one place that mixes and resamples them); this is the only
place that encodes. Encoders are built on PyAV (FFmpeg) with one encoder per response, so a stream
cut into pieces is still one continuous file.

Empty audio (a generation that ended at once) still gives a file every decoder opens: a WAV or FLAC header with no
samples, raw PCM of no bytes, and for the lossy formats (which cannot hold zero samples) 50 ms of silence.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterable, Iterator

import av
import numpy as np
import soundfile as sf

from .decode import SAMPLE_RATE

__all__ = ["MEDIA_TYPES", "StreamEncoder", "encode", "encode_stream", "to_int16", "wav_header"]

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
        if self.fmt in _AV_FORMATS and wave.size == 0:
            return b""  # an encoder cannot take a frame of no samples
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
        head = b""
        if self._pts == 0:  # nothing was fed: a file with no audio
            if self.fmt == "flac":
                self._container.start_encoding()  # the header alone is a valid, empty FLAC
            else:  # 50 ms of silence: lossy encoders and their containers cannot hold zero samples
                head = self.feed(np.zeros(self.sample_rate // 20, dtype=np.float32))
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        self._container = None
        return head + self._drain()

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
    if fmt == "flac" and wave.size:
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

