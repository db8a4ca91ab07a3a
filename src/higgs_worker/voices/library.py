"""Reference voices: presets on disk (``NAME.wav`` + ``NAME.txt``) and base64 audio sent with a request.

Every reference becomes 24 kHz mono audio plus its transcript; the engine encodes it (once, cached by
content hash) into the codes the prompt carries. Every clip is decoded through :mod:`higgs_worker.audio.decode`,
within the request limits, whoever sent it.

Names are case-sensitive (they are file names on disk): a name that is no voice is refused, naming the voices
available and the one it was likely meant as (the same name in other letter case, or a close spelling), never
taken for it silently. A value that is no voice but is base64 of something recognisable (text, an image) is refused
as what it is: bytes that are not audio.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from filelock import FileLock, Timeout

from ..audio import SAMPLE_RATE, AudioDecodeError, AudioLimitError, DecodeLimits, load_model_audio
from ..audio.decode import NotAudio, describe_content
from ..core import text
from ..core.errors import Cancelled, RequestError
from ..core.safe_fetch import FetchCancelled, FetchRefused, GuardedFetcher
from ..core.schema import SpeechRequest, is_url, reference_transcript
from ..core.settings import Settings, get_settings
from .inline import DATA_URI, b64decode, base64_problem, strict_base64
from .names import did_you_mean, likely_meant, unknown_voice, valid_name


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
    """An upload under a name already taken, or one that differs from a taken name only in case."""

    def __init__(self, name: str, taken: str | None = None) -> None:
        if taken is None or taken == name:
            super().__init__("name", f"a voice named {name!r} already exists")
        else:
            super().__init__("name", f"{name!r} differs only in case from the voice {taken!r}, which already exists; "
                                     "choose a name that is not another voice's in other letters")


class WaveCache:
    """Decoded voices by name, bounded by bytes; the least recently used leave first."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[str, tuple[object, Reference]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str, stamp: object) -> Reference | None:
        with self._lock:
            hit = self._items.get(name)
            if hit is None or hit[0] != stamp:
                return None
            self._items.move_to_end(name)
            return hit[1]

    def put(self, name: str, stamp: object, ref: Reference) -> None:
        size = ref.wave.nbytes
        with self._lock:
            self._drop(name)
            if size > self.max_bytes:
                return  # larger than the whole cache: serve it, keep nothing
            while self._items and self.bytes + size > self.max_bytes:
                self._drop(next(iter(self._items)))
            self._items[name] = (stamp, ref)
            self.bytes += size

    def pop(self, name: str) -> None:
        with self._lock:
            self._drop(name)

    def _drop(self, name: str) -> None:
        old = self._items.pop(name, None)
        if old is not None:
            self.bytes -= old[1].wave.nbytes

    def __contains__(self, name: str) -> bool:
        with self._lock:
            return name in self._items


class VoiceLibrary:
    """Presets in ``root`` (``NAME.wav`` with its transcript in ``NAME.txt``) and uploads in ``root/uploads``.

    Limits left as None come from the process settings (:func:`get_settings`).
    """

    def __init__(self, root: Path, max_bytes: int, max_seconds: float, fetcher: GuardedFetcher | None = None, *,
                 max_channels: int | None = None, max_sample_rate: int | None = None,
                 max_uploads: int | None = None, max_upload_bytes: int | None = None,
                 cache_bytes: int | None = None) -> None:
        settings = get_settings() if None in (max_channels, max_sample_rate, max_uploads, max_upload_bytes,
                                              cache_bytes) else None
        self.fetcher = fetcher  # None: URL references are disabled
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.max_seconds = max_seconds
        self.limits = DecodeLimits(
            max_seconds=max_seconds,
            max_channels=settings.max_ref_channels if max_channels is None else max_channels,
            max_sample_rate=settings.max_ref_sample_rate if max_sample_rate is None else max_sample_rate)
        self.max_uploads = settings.max_uploaded_voices if max_uploads is None else max_uploads
        self.max_upload_bytes = settings.max_uploaded_voice_bytes if max_upload_bytes is None else max_upload_bytes
        self.cache = WaveCache(settings.voice_cache_bytes if cache_bytes is None else cache_bytes)
        self._write_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, fetcher: GuardedFetcher | None = None) -> VoiceLibrary:
        return cls(settings.voices_dir, settings.max_ref_audio_bytes, settings.max_ref_audio_seconds, fetcher,
                   max_channels=settings.max_ref_channels, max_sample_rate=settings.max_ref_sample_rate,
                   max_uploads=settings.max_uploaded_voices, max_upload_bytes=settings.max_uploaded_voice_bytes,
                   cache_bytes=settings.voice_cache_bytes)

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    def _voices(self) -> dict[str, tuple[str, Path]]:
        """name -> (kind, wav path); presets first, uploads cannot shadow them."""
        found: dict[str, tuple[str, Path]] = {}
        for kind, folder in (("upload", self.uploads), ("preset", self.root)):
            if folder.is_dir():
                for wav in folder.glob("*.wav"):
                    if valid_name(wav.stem) and wav.with_suffix(".txt").exists():
                        found[wav.stem] = (kind, wav)
        return found

    def names(self) -> list[str]:
        return sorted(self._voices())

    def did_you_mean(self, name: str) -> str:
        """``; did you mean 'alto'?`` for a name that is no voice here (:func:`did_you_mean`), or ``""``."""
        return did_you_mean(name, self.names())

    def unknown(self, name: str) -> RequestError:
        """The refusal of ``name``, which is no voice here: the voice it was likely meant as and those available;
        or, when it is base64 of something recognisable (text, an image), that it decodes to bytes that are not
        audio."""
        names = self.names()
        raw = None if likely_meant(name, names) else strict_base64(name)
        looks_like = describe_content(raw) if raw else None
        if raw is not None and looks_like is not None:
            not_audio = NotAudio(len(raw), looks_like).describe("it decodes to")
            return RequestError("ref_audio", f"could not be decoded as audio: {not_audio} (and it is no voice name "
                                             f"either; available: {', '.join(names) or 'none installed'})")
        return RequestError("ref_audio", unknown_voice(name, names))

    def reference_file(self, name: str) -> Path | None:
        """The WAV file of voice ``name`` as stored (its reference recording), or None when there is no such voice."""
        entry = self._voices().get(name) if valid_name(name) else None
        return entry[1] if entry is not None else None

    def _check_name_free(self, name: str) -> None:
        """Refuse ``name`` when a voice has it, in any letter case: ``Synthetic_Alto`` may not pose as the preset
        ``synthetic_alto``."""
        folded = name.casefold()
        for taken in self._voices():
            if taken.casefold() == folded:
                raise VoiceExists(name, taken)

    def describe(self) -> list[dict[str, object]]:
        """Every voice with its kind, transcript and duration (for the voice list route)."""
        out = []
        for name, (kind, wav) in sorted(self._voices().items()):
            try:
                info = sf.info(str(wav))
                transcript = _stored_transcript(wav)
            except (OSError, RuntimeError):
                continue  # deleted (or being replaced) while listing
            out.append({"name": name, "kind": kind, "transcript": transcript,
                        "duration_s": round(info.frames / info.samplerate, 3)})
        return out

    # -- uploads -----------------------------------------------------------------------------------------

    def _library_lock(self) -> FileLock:
        """Serialises changes to the uploads across processes sharing the volume (the thread lock within one)."""
        self.uploads.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.uploads / ".lock"), timeout=60)

    def _upload_usage(self) -> tuple[int, int]:
        """(number of uploaded voices, bytes they take on disk)."""
        count = total = 0
        if self.uploads.is_dir():
            for wav in self.uploads.glob("*.wav"):
                txt = wav.with_suffix(".txt")
                if valid_name(wav.stem) and txt.exists():
                    count += 1
                    try:
                        total += wav.stat().st_size + txt.stat().st_size
                    except OSError:
                        pass
        return count, total

    def _check_room(self, adding_bytes: int) -> None:
        count, total = self._upload_usage()
        if count >= self.max_uploads:
            raise RequestError("name", f"the library already holds {count} uploaded voices; the limit is "
                                       f"{self.max_uploads} (MAX_UPLOADED_VOICES); delete one first")
        if total + adding_bytes > self.max_upload_bytes:
            raise RequestError("audio", f"uploaded voices would take {total + adding_bytes} bytes; the limit is "
                                        f"{self.max_upload_bytes} (MAX_UPLOADED_VOICE_BYTES); delete one first")

    def add_upload(self, name: str, raw: bytes, transcript: str) -> Reference:
        """Validate and store an uploaded voice as 24 kHz mono WAV + transcript; refuse taken names.

        Decoding runs outside the lock; the name check and the rename into place run under it, so of several
        uploads of one name exactly one is stored and the others get :class:`VoiceExists`.
        """
        if not valid_name(name):
            raise RequestError("name", "must be 1-64 letters, digits, '_' or '-', starting with a letter or digit")
        if not transcript.strip():
            raise RequestError("transcript", "must not be empty")
        transcript = reference_transcript(transcript, "transcript")  # bounded, control and invisible removed
        self._check_name_free(name)
        self._check_room(0)
        ref = Reference(name, transcript, self._load(raw))
        self.uploads.mkdir(parents=True, exist_ok=True)
        temps: list[Path] = []
        try:
            tmp_wav = self._temp(name, ".wav", temps)
            sf.write(str(tmp_wav), ref.wave, SAMPLE_RATE, format="WAV", subtype="PCM_16")
            tmp_txt = self._temp(name, ".txt", temps)
            tmp_txt.write_text(ref.transcript + "\n", encoding="utf-8")
            size = tmp_wav.stat().st_size + tmp_txt.stat().st_size
            with self._write_lock:
                try:
                    with self._library_lock():
                        self._check_name_free(name)
                        self._check_room(size)
                        # The transcript first: the voice exists once its WAV is in place.
                        os.replace(tmp_txt, self.uploads / f"{name}.txt")
                        os.replace(tmp_wav, self.uploads / f"{name}.wav")
                except Timeout:
                    raise RequestError("name", "the voice library is busy; retry") from None
        finally:
            for tmp in temps:
                tmp.unlink(missing_ok=True)
        self.cache.pop(name)
        return ref

    def _temp(self, name: str, suffix: str, temps: list[Path]) -> Path:
        fd, path = tempfile.mkstemp(prefix=f".{name}.", suffix=f"{suffix}.tmp", dir=self.uploads)
        os.close(fd)
        temps.append(Path(path))
        return temps[-1]

    def delete_upload(self, name: str) -> bool:
        """Remove an uploaded voice; presets are read-only. False when there is no such upload."""
        if not valid_name(name):
            return False
        with self._write_lock:
            try:
                with self._library_lock():
                    kind_path = self._voices().get(name)
                    if kind_path is None:
                        return False
                    if kind_path[0] != "upload":
                        raise RequestError("name", f"{name!r} is a preset; presets are read-only")
                    for ext in (".wav", ".txt"):  # the WAV first: without it the voice is gone at once
                        (self.uploads / f"{name}{ext}").unlink(missing_ok=True)
            except Timeout:
                raise RequestError("name", "the voice library is busy; retry") from None
        self.cache.pop(name)
        return True

    # -- references ----------------------------------------------------------------------------------------

    def get(self, name: str) -> Reference:
        """The voice ``name``; :class:`RequestError` on ``ref_audio`` when there is none."""
        entry = self._voices().get(name) if valid_name(name) else None
        try:
            if entry is None:
                raise FileNotFoundError(name)
            wav = entry[1]
            stat = wav.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            hit = self.cache.get(name, stamp)
            if hit is not None:
                return hit
            transcript = _stored_transcript(wav)
            raw = wav.read_bytes()
        except OSError:
            raise self.unknown(name) from None
        ref = Reference(name, transcript, self._load(raw))
        self.cache.put(name, stamp, ref)
        return ref

    def from_base64(self, data: str, transcript: str) -> Reference:
        """Base64 audio (raw or a ``data:`` URI) of any format; size-capped before decoding."""
        data = data.strip()
        prefix = DATA_URI.match(data[:512])
        start = prefix.end() if prefix else 0
        approx = (len(data) - start) * 3 // 4 - (len(data) - len(data.rstrip("=")))
        if approx > self.max_bytes:
            raise RequestError("ref_audio", f"decodes to about {approx} bytes; the limit is {self.max_bytes} "
                                            "(MAX_REF_AUDIO_BYTES)")
        raw = b64decode(data, start)
        if raw is None:
            raise self._not_base64(data, start)
        return Reference("inline", transcript, self._load(raw, decoded=True))

    def _not_base64(self, data: str, start: int) -> RequestError:
        """The refusal of ``data``, which is neither a voice name nor valid base64: a short one reads as a mistyped
        voice name (``Alto.``), so it is answered as one; a long one is told where its base64 breaks."""
        if not start and len(data) <= 64 and "\n" not in data:
            return RequestError("ref_audio", unknown_voice(data, self.names(), "a voice name has only letters, "
                                                           "digits, '_' or '-', and this is not base64 audio either"))
        return RequestError("ref_audio", f"is neither a known voice name nor valid base64 audio: "
                                         f"{base64_problem(data, start)}")

    def _load(self, raw: bytes, decoded: bool = False) -> np.ndarray:
        """``raw`` (``decoded`` from base64, or as sent) as 24 kHz mono, within the limits."""
        if len(raw) > self.max_bytes:
            raise RequestError("ref_audio", f"is {len(raw)} bytes; the limit is {self.max_bytes} (MAX_REF_AUDIO_BYTES)")
        try:
            wave = load_model_audio(raw, self.limits)
        except AudioLimitError as exc:
            raise RequestError("ref_audio", str(exc)) from None
        except NotAudio as exc:
            verb = "it decodes to" if decoded else "it is"
            raise RequestError("ref_audio", f"could not be decoded as audio: {exc.describe(verb)}") from None
        except AudioDecodeError as exc:
            raise RequestError("ref_audio", f"could not be decoded as audio: {exc}") from None
        seconds = len(wave) / SAMPLE_RATE
        if seconds > self.max_seconds:
            raise RequestError("ref_audio", f"is {seconds:.1f} s long; the limit is {self.max_seconds:g} s "
                                            "(MAX_REF_AUDIO_SECONDS)")
        if seconds < 0.2:
            raise RequestError("ref_audio", f"is {seconds:.2f} s long; at least 0.2 s of speech is needed")
        return wave

    def from_url(self, url: str, transcript: str, cancel: threading.Event | None = None) -> Reference:
        """Audio at an https URL, fetched under the SSRF guards, then validated like any reference.

        ``cancel`` (the job's) stops the fetch; it then raises the engine's ``Cancelled``.
        """
        if self.fetcher is None:
            raise RequestError("ref_audio", "URL references are disabled on this server (ALLOW_REF_AUDIO_URLS)")
        try:
            raw = self.fetcher.fetch(url) if cancel is None else self.fetcher.fetch(url, cancel=cancel)
        except FetchCancelled:
            raise Cancelled() from None
        except FetchRefused as exc:
            raise RequestError("ref_audio", str(exc)) from None
        return Reference("url", transcript, self._load(raw))

    def resolve(self, request: SpeechRequest, cancel: threading.Event | None = None) -> list[Reference]:
        """The request's reference voices, in speaker order (``SPEAKER0`` first). Blocking: call off the loop."""
        if request.ref_audio is None:
            return []
        names = request.voice_names
        if names:
            return [self.get(n) for n in names]
        if is_url(request.ref_audio):
            return [self.from_url(request.ref_audio, request.ref_text or "", cancel)]
        return [self.from_base64(request.ref_audio, request.ref_text or "")]


def _stored_transcript(wav: Path) -> str:
    """The transcript beside a voice's WAV, cleaned as on upload (files written by hand, or before uploads were
    cleaned, may hold control or invisible characters)."""
    return text.clean(wav.with_suffix(".txt").read_text(encoding="utf-8", errors="replace")).strip()


