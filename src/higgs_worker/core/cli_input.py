"""What the command line takes from the user before any work: files to read, a file to write, option values, and
the request ``synth`` and ``prompt`` build from them (a voice by name, or cloned from a recording with its text).

Each check raises :class:`~.errors.RequestError` whose field is the option as typed (``--text-file``), so the
command says ``error: --text-file: notes.txt: no such file`` in one line and exits, instead of a traceback or a
failure after minutes of generating. The reference recording goes into the request as base64, as over HTTP.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
from pathlib import Path
from typing import Any

from .errors import RequestError
from .schema import SpeechRequest
from .settings import get_settings

#: Output formats by file extension, for ``--out`` without ``--format``.
FORMATS_BY_EXTENSION = {".wav": "wav", ".flac": "flac", ".mp3": "mp3", ".opus": "opus", ".ogg": "opus",
                        ".aac": "aac", ".pcm": "pcm", ".raw": "pcm"}
#: Extensions of audio files, to tell a file given where a voice name belongs.
AUDIO_EXTENSIONS = frozenset({*FORMATS_BY_EXTENSION, ".m4a", ".mp4", ".webm", ".aif", ".aiff", ".wma"})
_VOICE_NAMES = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]*(\s*,\s*[A-Za-z0-9][A-Za-z0-9_\-]*)*")


def _unreadable(option: str, path: Path, exc: OSError) -> RequestError:
    if isinstance(exc, FileNotFoundError):
        return RequestError(option, f"{path}: no such file")
    if isinstance(exc, IsADirectoryError):
        return RequestError(option, f"{path}: is a folder, not a file")
    if isinstance(exc, PermissionError):
        return RequestError(option, f"{path}: not allowed to read it")
    return RequestError(option, f"{path}: cannot be read ({exc.strerror or exc.__class__.__name__})")


def read_text(option: str, path: str | Path, max_chars: int | None = None) -> str:
    """A UTF-8 text file's content (a leading byte-order mark dropped); ``max_chars`` bounds what is read."""
    path = Path(path)
    try:
        if max_chars is not None and path.is_file() and path.stat().st_size > 4 * max_chars + 4:
            raise RequestError(option, f"{path}: {path.stat().st_size} bytes, more than the {max_chars} characters a "
                                       "request takes")
        return path.read_text(encoding="utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise RequestError(option, f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise _unreadable(option, path, exc) from None


def read_audio_base64(option: str, path: str | Path, max_bytes: int) -> str:
    """A reference recording's bytes as a base64 data URI (any format the server decodes), refused past
    ``max_bytes``."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if path.is_file() and size > max_bytes:
            raise RequestError(option, f"{path}: {size} bytes; the limit is {max_bytes} (MAX_REF_AUDIO_BYTES)")
        # as a data URI: never mistaken for a voice name, however short the file
        return "data:application/octet-stream;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError as exc:
        raise _unreadable(option, path, exc) from None


def output_format(option: str, path: str | Path, chosen: str | None, default: str = "wav") -> str:
    """The format to write: ``chosen`` (``--format``) when given, else the one the file name's extension says."""
    if chosen:
        return chosen
    suffix = Path(path).suffix.lower()
    if not suffix:
        return default
    if suffix not in FORMATS_BY_EXTENSION:
        known = ", ".join(sorted(FORMATS_BY_EXTENSION))
        raise RequestError(option, f"{path}: no output format is written as {suffix} (known: {known}); name the "
                                   "file so, or give --format")
    return FORMATS_BY_EXTENSION[suffix]


def check_output(option: str, path: str | Path) -> None:
    """The file can be written where it is asked for: its folder exists and is writable, it is not a folder."""
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise RequestError(option, f"{path}: is a folder; give a file name, such as {path / 'speech.wav'}")
    if not folder.is_dir():
        raise RequestError(option, f"{path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise RequestError(option, f"{path}: not allowed to write there")


def speaker_descriptions(option: str, value: str) -> dict[str, Any] | str:
    """JSON such as ``{"SPEAKER0": "warm"}``, or one plain description; text that starts as JSON must be JSON."""
    stripped = value.strip()
    if not stripped.startswith(("{", "[", '"')):
        return value
    try:
        parsed = json.loads(stripped)
    except ValueError as exc:
        where = f" at character {exc.pos + 1}" if isinstance(exc, json.JSONDecodeError) else ""
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise RequestError(option, f"not valid JSON ({reason}{where}); give JSON such as "
                                   '\'{"SPEAKER0": "feminine; warm"}\', or one description as plain text') from None
    if not isinstance(parsed, dict | str):
        raise RequestError(option, 'must be a JSON object such as \'{"SPEAKER0": "feminine; warm"}\'')
    return parsed


def looks_like_a_file(value: str) -> bool:
    """True when a value meant as voice names is a file path (an existing file, a path, an audio file name)."""
    value = value.strip()
    if "/" in value or "\\" in value or Path(value).suffix.lower() in AUDIO_EXTENSIONS:
        return True
    return not _VOICE_NAMES.fullmatch(value) and Path(value).is_file()


def add_voice_options(p: argparse.ArgumentParser) -> None:
    """``--voice`` (library names) or a voice cloned from a file: ``--ref-audio`` with what it says."""
    p.add_argument("--voice", help="preset or uploaded voice name(s), comma-separated for [SPEAKERn] dialogue")
    p.add_argument("--ref-audio", dest="ref_audio", metavar="FILE",
                   help="clone the voice of this recording (any audio format; 5 to 30 s of clean speech)")
    said = p.add_mutually_exclusive_group()
    said.add_argument("--ref-text", dest="ref_text", help="what the --ref-audio recording says, word for word")
    said.add_argument("--ref-text-file", dest="ref_text_file", metavar="FILE", help="--ref-text from a UTF-8 file")
    p.add_argument("--speaker-descriptions", dest="speaker_descriptions",
                   help='one description, or JSON such as {"SPEAKER0": "feminine; warm"}')
    p.add_argument("--as-written", dest="normalize_text", action="store_false", default=None,
                   help="send numbers, dates and units as written (normalize_text: false), not spelled out")


#: Request fields by the option that sets them, so that an error names what the user typed.
OPTION_OF = {"transcript": "--text", "format": "--format", "scene_prompt": "--scene", "ref_text": "--ref-text",
             "speaker_descriptions": "--speaker-descriptions", "max_new_tokens": "--max-new-tokens",
             "top_p": "--top-p", "top_k": "--top-k", "chunk_method": "--chunk-method"}


def request_body(args: argparse.Namespace, keys: tuple[str, ...]) -> dict:
    """The request fields from synth's or prompt's options; files are read (and refused) here, before any work."""
    settings = get_settings()
    text = args.text if args.text is not None else read_text("--text-file", args.text_file, settings.max_text_chars)
    body: dict = {"transcript": text}
    for key in keys:
        value = getattr(args, key)
        if value is not None:
            body["scene_prompt" if key == "scene" else key] = value
    if args.voice:
        if looks_like_a_file(args.voice):
            raise RequestError("--voice", f"takes voice names from the library, and {args.voice!r} is a file: to "
                                          f"clone it, give --ref-audio {args.voice} --ref-text \"what it says\"")
        body["ref_audio"] = args.voice
    ref_text = args.ref_text if args.ref_text is not None else (
        read_text("--ref-text-file", args.ref_text_file) if args.ref_text_file else None)
    if args.ref_audio:
        if args.voice:
            raise RequestError("--ref-audio", "clones one voice from a file; give it or --voice, not both")
        if not (ref_text or "").strip():
            raise RequestError("--ref-audio", "needs what the recording says: --ref-text \"...\" or --ref-text-file")
        body["ref_audio"] = read_audio_base64("--ref-audio", args.ref_audio, settings.max_ref_audio_bytes)
        body["ref_text"] = ref_text
    elif ref_text is not None:
        raise RequestError("--ref-text", "is what --ref-audio says: give --ref-audio FILE too")
    if args.speaker_descriptions:
        body["speaker_descriptions"] = speaker_descriptions("--speaker-descriptions", args.speaker_descriptions)
    if getattr(args, "normalize_text", None) is False:
        body["normalize_text"] = False
    return body


def for_options(exc: RequestError, voice_option: str) -> RequestError:
    """A request's error as the command line says it: naming the option (``--ref-audio: could not be decoded...``)."""
    option = voice_option if exc.field == "ref_audio" else OPTION_OF.get(exc.field, exc.field)
    return RequestError(option, exc.message)


def parse_request(body: dict, voice_option: str) -> SpeechRequest:
    """The request; its errors name the options (:func:`for_options`)."""
    try:
        return SpeechRequest.parse(body)
    except RequestError as exc:
        raise for_options(exc, voice_option) from None
