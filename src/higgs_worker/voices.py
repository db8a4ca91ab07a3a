"""Reference voices: presets on disk (``NAME.wav`` + ``NAME.txt``) and base64 audio sent with a request.

Every reference becomes 24 kHz mono audio plus its transcript; the engine encodes it (once, cached by
content hash) into the codes the prompt carries.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import SAMPLE_RATE, AudioDecodeError, load_model_audio
from .schema import VOICE_NAME, RequestError, SpeechRequest

_DATA_URI = re.compile(r"^data:[\w/+.-]*(;[\w=.-]+)*;base64,", re.IGNORECASE)


@dataclass(frozen=True)
class Reference:
    """A voice to clone: its name, what it says, and the audio at 24 kHz mono."""

    name: str
    transcript: str
    wave: np.ndarray

    @property
    def duration_s(self) -> float:
        return len(self.wave) / SAMPLE_RATE


class VoiceLibrary:
    """Presets in ``root``: ``NAME.wav`` with its transcript in ``NAME.txt``."""

    def __init__(self, root: Path, max_bytes: int, max_seconds: float) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self._cache: dict[str, tuple[float, Reference]] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.stem for p in self.root.glob("*.wav")
                      if VOICE_NAME.match(p.stem) and p.with_suffix(".txt").exists())

    def get(self, name: str) -> Reference:
        """The preset ``name``; :class:`RequestError` on ``ref_audio`` when there is none."""
        wav = self.root / f"{name}.wav"
        txt = wav.with_suffix(".txt")
        if not VOICE_NAME.match(name) or not wav.is_file() or not txt.is_file():
            known = ", ".join(self.names()) or "none installed"
            raise RequestError("ref_audio", f"unknown voice {name!r}; available: {known}")
        mtime = wav.stat().st_mtime
        with self._lock:
            hit = self._cache.get(name)
            if hit is not None and hit[0] == mtime:
                return hit[1]
        ref = Reference(name, txt.read_text(encoding="utf-8").strip(), self._load(wav.read_bytes()))
        with self._lock:
            self._cache[name] = (mtime, ref)
        return ref

    def from_base64(self, data: str, transcript: str) -> Reference:
        """Base64 audio (raw or a ``data:`` URI) of any format; size-capped before decoding."""
        data = _DATA_URI.sub("", data.strip(), count=1)
        approx = len(data) * 3 // 4
        if approx > self.max_bytes:
            raise RequestError("ref_audio", f"decodes to about {approx} bytes; the limit is {self.max_bytes} "
                                            "(MAX_REF_AUDIO_BYTES)")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError("ref_audio", "is neither a known voice name nor valid base64 audio") from None
        return Reference("inline", transcript, self._load(raw))

    def _load(self, raw: bytes) -> np.ndarray:
        if len(raw) > self.max_bytes:
            raise RequestError("ref_audio", f"is {len(raw)} bytes; the limit is {self.max_bytes} (MAX_REF_AUDIO_BYTES)")
        try:
            wave = load_model_audio(raw)
        except AudioDecodeError as exc:
            raise RequestError("ref_audio", f"could not be decoded as audio: {exc}") from None
        seconds = len(wave) / SAMPLE_RATE
        if seconds > self.max_seconds:
            raise RequestError("ref_audio", f"is {seconds:.1f} s long; the limit is {self.max_seconds:g} s "
                                            "(MAX_REF_AUDIO_SECONDS)")
        if seconds < 0.2:
            raise RequestError("ref_audio", f"is {seconds:.2f} s long; at least 0.2 s of speech is needed")
        return wave

    def resolve(self, request: SpeechRequest) -> list[Reference]:
        """The request's reference voices, in speaker order (``SPEAKER0`` first)."""
        if request.ref_audio is None:
            return []
        names = request.voice_names
        if names:
            return [self.get(n) for n in names]
        return [self.from_base64(request.ref_audio, request.ref_text or "")]
