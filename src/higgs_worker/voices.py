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
import soundfile as sf

from .audio import SAMPLE_RATE, AudioDecodeError, load_model_audio
from .safe_fetch import FetchRefused, GuardedFetcher
from .schema import VOICE_NAME, RequestError, SpeechRequest, is_url

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


class VoiceExists(RequestError):
    """An upload under a name already taken."""

    def __init__(self, name: str) -> None:
        super().__init__("name", f"a voice named {name!r} already exists")


class VoiceLibrary:
    """Presets in ``root`` (``NAME.wav`` with its transcript in ``NAME.txt``) and uploads in ``root/uploads``."""

    def __init__(self, root: Path, max_bytes: int, max_seconds: float,
                 fetcher: GuardedFetcher | None = None) -> None:
        self.fetcher = fetcher  # None: URL references are disabled
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self._cache: dict[str, tuple[float, Reference]] = {}
        self._lock = threading.Lock()

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    def _voices(self) -> dict[str, tuple[str, Path]]:
        """name -> (kind, wav path); presets first, uploads cannot shadow them."""
        found: dict[str, tuple[str, Path]] = {}
        for kind, folder in (("upload", self.uploads), ("preset", self.root)):
            if folder.is_dir():
                for wav in folder.glob("*.wav"):
                    if VOICE_NAME.match(wav.stem) and wav.with_suffix(".txt").exists():
                        found[wav.stem] = (kind, wav)
        return found

    def names(self) -> list[str]:
        return sorted(self._voices())

    def describe(self) -> list[dict[str, object]]:
        """Every voice with its kind, transcript and duration (for the voice list route)."""
        out = []
        for name, (kind, wav) in sorted(self._voices().items()):
            info = sf.info(str(wav))
            out.append({"name": name, "kind": kind, "transcript": wav.with_suffix(".txt").read_text("utf-8").strip(),
                        "duration_s": round(info.frames / info.samplerate, 3)})
        return out

    def add_upload(self, name: str, raw: bytes, transcript: str) -> Reference:
        """Validate and store an uploaded voice as 24 kHz mono WAV + transcript; refuse taken names."""
        if not VOICE_NAME.match(name):
            raise RequestError("name", "must be 1-64 letters, digits, '_' or '-', starting with a letter or digit")
        if not transcript.strip():
            raise RequestError("transcript", "must not be empty")
        if len(transcript) > 4000:
            raise RequestError("transcript", "is longer than 4000 characters")
        if name in self._voices():
            raise VoiceExists(name)
        ref = Reference(name, transcript.strip(), self._load(raw))
        self.uploads.mkdir(parents=True, exist_ok=True)
        tmp_wav = self.uploads / f".{name}.wav.tmp"
        sf.write(str(tmp_wav), ref.wave, SAMPLE_RATE, format="WAV", subtype="PCM_16")
        (self.uploads / f"{name}.txt").write_text(ref.transcript + "\n", encoding="utf-8")
        tmp_wav.replace(self.uploads / f"{name}.wav")
        return ref

    def delete_upload(self, name: str) -> bool:
        """Remove an uploaded voice; presets are read-only. False when there is no such upload."""
        kind_path = self._voices().get(name)
        if kind_path is None:
            return False
        if kind_path[0] != "upload":
            raise RequestError("name", f"{name!r} is a preset; presets are read-only")
        for ext in (".wav", ".txt"):
            (self.uploads / f"{name}{ext}").unlink(missing_ok=True)
        with self._lock:
            self._cache.pop(name, None)
        return True

    def get(self, name: str) -> Reference:
        """The voice ``name``; :class:`RequestError` on ``ref_audio`` when there is none."""
        entry = self._voices().get(name) if VOICE_NAME.match(name) else None
        if entry is None:
            known = ", ".join(self.names()) or "none installed"
            raise RequestError("ref_audio", f"unknown voice {name!r}; available: {known}")
        wav = entry[1]
        txt = wav.with_suffix(".txt")
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

    def from_url(self, url: str, transcript: str) -> Reference:
        """Audio at an https URL, fetched under the SSRF guards, then validated like any reference."""
        if self.fetcher is None:
            raise RequestError("ref_audio", "URL references are disabled on this server (ALLOW_REF_AUDIO_URLS)")
        try:
            raw = self.fetcher.fetch(url)
        except FetchRefused as exc:
            raise RequestError("ref_audio", str(exc)) from None
        return Reference("url", transcript, self._load(raw))

    def resolve(self, request: SpeechRequest) -> list[Reference]:
        """The request's reference voices, in speaker order (``SPEAKER0`` first). Blocking: call off the loop."""
        if request.ref_audio is None:
            return []
        names = request.voice_names
        if names:
            return [self.get(n) for n in names]
        if is_url(request.ref_audio):
            return [self.from_url(request.ref_audio, request.ref_text or "")]
        return [self.from_base64(request.ref_audio, request.ref_text or "")]
