"""Decoding untrusted reference audio (base64 ``ref_audio``, URL references, voice uploads) within a budget.

A few kilobytes of audio can claim hours of many-channel sound, and some FFmpeg demuxers (``concat``, playlists,
image sequences) can name other files or URLs. So, in this order:

1. the container is chosen from the bytes' own signature, and only an allow-list of plain audio containers is
   ever opened (the demuxer is forced: FFmpeg never probes for another one);
2. channels, sample rate and declared length are refused from the container's own header, before decoding;
3. decoding goes block by block: each block is checked again (a header can lie, and a FLAC frame can change its
   channel count), mixed to mono and resampled to the model rate at once, so full-rate multichannel audio is never
   held, and decoding stops as soon as the decoded length passes the limit. A stream whose rate or channels change
   midway (chained Ogg, ADTS or FLAC) is resampled block by block, each at its own rate; a block whose rate the
   decoder itself contradicts (FFmpeg's MP3 decoder labels the first block after a rate change with the old rate)
   is refused, never resampled at a guess;
4. at most ``MAX_CONCURRENT_DECODES`` decodes run at once in the process, so parallel uploads cannot multiply the
   peak.

Bytes in no accepted container are refused as :class:`NotAudio`, which says how many there are and, where the
leading bytes tell cheaply, what they look like instead (text, JSON, HTML, an image, base64 encoded twice...), so a
caller who sent the wrong file hears which one.
"""

from __future__ import annotations

import codecs
import io
import re
import threading
from dataclasses import dataclass

import av
import numpy as np

from ..core.settings import get_settings
from .resample import StreamingResampler

#: The model's sample rate: every reference clip is decoded to it.
SAMPLE_RATE = 24000

#: FFmpeg demuxers that may open untrusted bytes. None of them can name another file or URL.
ALLOWED_DEMUXERS = frozenset({"wav", "flac", "mp3", "ogg", "mov", "matroska", "aac", "aiff", "caf"})

#: Decoded length a declared (header) length may exceed the limit by: codec priming and padding, never a second.
_HEADER_GRACE_S = 1.0

#: The accepted containers as a caller knows them, for messages.
ACCEPTED_CONTAINERS = "WAV, FLAC, MP3, Ogg, MP4/M4A, WebM/Matroska, AAC, AIFF or CAF"

# Demuxer options: the mov demuxer must never follow data references to other files (off by default; say so).
_DEMUXER_OPTIONS = {"mov": {"enable_drefs": "0", "use_absolute_path": "0"}}


class AudioDecodeError(ValueError):
    """Bytes that are not audio any decoder here will read; the message says why (safe to show)."""


class NotAudio(AudioDecodeError):
    """Bytes in no accepted audio container: ``size`` of them, looking like ``looks_like`` (None when unknown)."""

    def __init__(self, size: int, looks_like: str | None) -> None:
        self.size = size
        self.looks_like = looks_like
        super().__init__(self.describe("is"))

    def describe(self, verb: str) -> str:
        """The refusal after ``verb`` (``is``; ``decodes to`` for base64): the size, the look, what is accepted."""
        seems = f" (they look like {self.looks_like})" if self.looks_like else ""
        return (f"{verb} {self.size} bytes that are not audio in any known format{seems}; the accepted audio "
                f"containers are {ACCEPTED_CONTAINERS}")


class AudioLimitError(AudioDecodeError):
    """Audio refused for exceeding a limit; ``setting`` names the environment variable that sets it."""

    def __init__(self, message: str, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


class AudioTooLong(AudioLimitError):
    """Longer than ``MAX_REF_AUDIO_SECONDS``, from the header or while decoding."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "MAX_REF_AUDIO_SECONDS")


@dataclass(frozen=True)
class DecodeLimits:
    """What one untrusted clip may contain."""

    max_seconds: float = 60.0
    max_channels: int = 8
    max_sample_rate: int = 192_000


def sniff_container(head: bytes) -> str | None:
    """The FFmpeg demuxer for these leading bytes, or None when they are not an accepted audio container.

    Decided from the signature alone, so a text file (``ffconcat``, an m3u8 playlist) or an image never reaches a
    demuxer that would follow what it names.
    """
    if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[4:8] == b"ftyp":
        return "mov"
    if head[:4] == b"\x1aE\xdf\xa3":
        return "matroska"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[:4] == b"caff":
        return "caf"
    if head[:3] == b"ID3" and len(head) >= 10:
        # An ID3v2 tag (syncsafe size) may precede MPEG audio, ADTS AAC or FLAC: look past it.
        size = (head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | (head[9] & 0x7F)
        after = head[10 + size + (10 if head[5] & 0x10 else 0):]
        if after[:4] == b"fLaC":
            return "flac"
        return "aac" if _is_adts(after) else "mp3"
    if _is_adts(head):
        return "aac"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06:
        return "mp3"  # MPEG audio frame sync, layer I, II or III
    return None


def _is_adts(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0


#: Leading bytes of files people send by mistake, and what to call them.
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "a PNG image"), (0, b"\xff\xd8\xff", "a JPEG image"), (0, b"GIF87a", "a GIF image"),
    (0, b"GIF89a", "a GIF image"), (8, b"WEBP", "a WebP image"), (8, b"AVI ", "an AVI video"),
    (0, b"II*\x00", "a TIFF image"), (0, b"MM\x00*", "a TIFF image"), (0, b"%PDF-", "a PDF document"),
    (0, b"PK\x03\x04", "a ZIP archive or an Office document"), (0, b"\x1f\x8b", "gzip-compressed data"),
    (0, b"MThd", "a MIDI file, which holds notes, not recorded sound"), (0, b"\x7fELF", "a program"),
)

#: Base64 text (lines of it, padded or not; standard or URL-safe alphabet) with both letter cases and a digit, as
#: encoded data always has and words seldom do.
_BASE64_TEXT = re.compile(r"(?=.*[a-z])(?=.*[A-Z])(?=.*[0-9])[A-Za-z0-9+/\-_]{16,}={0,2}")


def describe_content(head: bytes) -> str | None:
    """What bytes that are not audio look like, from their first few kilobytes: ``a PNG image``, ``JSON``, ``HTML``,
    ``text``...; None when nothing cheap tells. Only ever used to word a refusal."""
    for offset, magic, kind in _SIGNATURES:
        if head[offset:offset + len(magic)] == magic:
            return kind
    text = _as_text(head)
    if text is None:
        return None
    start = text.lstrip()[:512].lower()
    if start.startswith(("{", "[")):
        return "JSON"
    if start.startswith("<!doctype html") or "<html" in start:
        return "HTML"
    if "<svg" in start:
        return "an SVG image"
    if start.startswith("<?xml"):
        return "XML"
    if start.startswith("data:") and ";base64," in start:
        return "a base64 data: URI; was the audio base64-encoded twice?"
    if _BASE64_TEXT.fullmatch(text.strip().replace("\r", "").replace("\n", "")):
        return "base64 text; was the audio base64-encoded twice?"
    return "text"


def _as_text(head: bytes) -> str | None:
    """``head`` as UTF-8 text when it is printable text (a character cut at the end allowed), else None."""
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False).removeprefix("\ufeff")
    except UnicodeDecodeError:
        return None
    if len(text.strip()) < 2 or not all(ch.isprintable() or ch in "\t\n\r\f" for ch in text):
        return None
    return text


_slots: threading.BoundedSemaphore | None = None
_slots_lock = threading.Lock()


def decode_slots() -> threading.BoundedSemaphore:
    """The process-wide cap on decodes at once (``MAX_CONCURRENT_DECODES``), made on first use."""
    global _slots
    with _slots_lock:
        if _slots is None:
            _slots = threading.BoundedSemaphore(get_settings().max_concurrent_decodes)
        return _slots


def decode_mono(data: bytes, rate: int, limits: DecodeLimits,
                slots: threading.BoundedSemaphore | None = None) -> np.ndarray:
    """Untrusted audio bytes to float32 mono at ``rate``, refused as soon as they break ``limits``.

    ``slots`` bounds concurrent decodes (the process-wide :func:`decode_slots` when None).
    """
    if not data:
        raise AudioDecodeError("no audio data")
    head = bytes(data[:4096])
    demuxer = sniff_container(head)
    if demuxer is None:
        raise NotAudio(len(data), describe_content(head))
    with slots if slots is not None else decode_slots():
        return _decode(data, demuxer, rate, limits)


def _decode(data: bytes, demuxer: str, rate: int, limits: DecodeLimits) -> np.ndarray:
    try:
        container = av.open(io.BytesIO(data), mode="r", format=demuxer, options=_DEMUXER_OPTIONS.get(demuxer, {}))
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise AudioDecodeError(f"could not be opened as {demuxer} ({exc.__class__.__name__})") from None
    with container:
        if not ALLOWED_DEMUXERS.intersection(container.format.name.split(",")):
            raise AudioDecodeError(f"container {container.format.name!r} is not accepted")
        if not container.streams.audio:
            raise AudioDecodeError("has no audio stream")
        stream = container.streams.audio[0]
        _check_header(stream, limits)
        mixer = _MonoResampler(rate)
        seconds = 0.0
        try:
            for frame in container.decode(stream):
                _check_block(frame, limits)
                _check_block_rate(frame, stream.codec_context.sample_rate)
                seconds += frame.samples / frame.sample_rate
                if seconds > limits.max_seconds:
                    raise AudioTooLong(f"is longer than {limits.max_seconds:g} s; the limit is "
                                       f"{limits.max_seconds:g} s (MAX_REF_AUDIO_SECONDS)")
                mixer.add(frame)
        except av.FFmpegError as exc:
            raise AudioDecodeError(f"could not be decoded ({exc.__class__.__name__})") from None
        wave = mixer.finish()
    if not wave.size:
        raise AudioDecodeError("audio stream has no samples")
    return wave


def _check_header(stream: av.audio.stream.AudioStream, limits: DecodeLimits) -> None:
    """Refuse from what the container declares, before a single sample is decoded."""
    ctx = stream.codec_context
    channels = ctx.channels
    if channels > limits.max_channels:
        raise AudioLimitError(f"has {channels} channels; the limit is {limits.max_channels} (MAX_REF_CHANNELS)",
                              "MAX_REF_CHANNELS")
    if not ctx.sample_rate:
        raise AudioDecodeError("declares no sample rate")
    if ctx.sample_rate > limits.max_sample_rate:
        raise AudioLimitError(f"has a sample rate of {ctx.sample_rate} Hz; the limit is {limits.max_sample_rate} Hz "
                              "(MAX_REF_SAMPLE_RATE)", "MAX_REF_SAMPLE_RATE")
    declared = None
    if stream.duration and stream.time_base:
        declared = float(stream.duration * stream.time_base)
    elif stream.frames and ctx.frame_size:
        declared = stream.frames * ctx.frame_size / ctx.sample_rate
    if declared is not None and declared > limits.max_seconds + _HEADER_GRACE_S:
        raise AudioTooLong(f"declares {declared:.1f} s; the limit is {limits.max_seconds:g} s (MAX_REF_AUDIO_SECONDS)")


def _check_block(frame: av.AudioFrame, limits: DecodeLimits) -> None:
    """Every decoded block again: the header may have lied, and some codecs change shape mid-stream."""
    channels = frame.layout.nb_channels
    if channels > limits.max_channels:
        raise AudioLimitError(f"has {channels} channels; the limit is {limits.max_channels} (MAX_REF_CHANNELS)",
                              "MAX_REF_CHANNELS")
    if not frame.sample_rate or frame.sample_rate > limits.max_sample_rate:
        raise AudioLimitError(f"has a sample rate of {frame.sample_rate} Hz; the limit is {limits.max_sample_rate} "
                              "Hz (MAX_REF_SAMPLE_RATE)", "MAX_REF_SAMPLE_RATE")


def _check_block_rate(frame: av.AudioFrame, decoder_rate: int) -> None:
    """A block's rate must be the one its decoder reads at. The channel count needs no such check: a block's
    samples are laid out by its own channel layout, so mixing it to mono cannot go wrong."""
    if frame.sample_rate != decoder_rate:
        raise AudioDecodeError(f"changes its sample rate mid-stream in a way that cannot be decoded reliably (a block "
                               f"labelled {frame.sample_rate} Hz while its decoder reads {decoder_rate} Hz); convert "
                               "it to one sample rate first")


#: Scale of each integer sample format to [-1, 1], and its zero point.
_INT_SCALE = {np.dtype(np.uint8): (128.0, 128.0), np.dtype(np.int16): (32768.0, 0.0),
              np.dtype(np.int32): (2147483648.0, 0.0), np.dtype(np.int64): (9223372036854775808.0, 0.0)}


def block_to_mono(frame: av.AudioFrame) -> np.ndarray:
    """One decoded block as float32 mono (the mean of its channels), whatever its sample format."""
    samples = frame.to_ndarray()
    channels = frame.layout.nb_channels
    if frame.format.is_planar:
        planes = samples.reshape(channels, -1)
        axis = 0
    else:
        planes = samples.reshape(-1, channels)
        axis = 1
    scale = _INT_SCALE.get(planes.dtype)
    mono = planes.mean(axis=axis, dtype=np.float64)
    if scale is not None:
        mono = (mono - scale[1]) / scale[0]
    return mono.astype(np.float32)


class _MonoResampler:
    """Mono blocks at any input rate in, one float32 array at the output rate out: each run of blocks at one rate
    resampled as upstream's tokenizer resamples a reference (soxr HQ, length fixed; :mod:`.resample`)."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._pieces: list[np.ndarray] = []
        self._resampler: StreamingResampler | None = None
        self._in_rate = 0

    def add(self, frame: av.AudioFrame) -> None:
        mono = block_to_mono(frame)
        if frame.sample_rate != self._in_rate:  # the first block, or the rate changed: the last rate's tail first
            self._flush()
            self._in_rate = frame.sample_rate
            if frame.sample_rate != self.rate:
                self._resampler = StreamingResampler(frame.sample_rate, self.rate)
        if self._resampler is None:
            self._pieces.append(mono)
            return
        self._pieces.append(self._resampler.feed(mono))

    def _flush(self) -> None:
        if self._resampler is not None:
            self._pieces.append(self._resampler.finish())
            self._resampler = None

    def finish(self) -> np.ndarray:
        self._flush()
        if not self._pieces:
            return np.zeros(0, dtype=np.float32)
        wave = np.concatenate(self._pieces)
        self._pieces = []
        return np.ascontiguousarray(wave, dtype=np.float32)


def load_model_audio(data: bytes, limits: DecodeLimits | None = None) -> np.ndarray:
    """Bytes of any accepted format, rate and channel count to 24 kHz mono float32, decoded within ``limits``.

    Decoding untrusted bytes (allow-listed containers, header checks, a sample budget, a cap on decodes at once)
    is this module; this is the model-rate entry to it.
    """
    return decode_mono(data, SAMPLE_RATE, limits or DecodeLimits())
