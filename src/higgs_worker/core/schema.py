"""The one request schema every entry point converts into (:class:`SpeechRequest`), and its text rules.

Validation only: limits come from :mod:`.settings`; nothing here touches the model. OpenAI's request body is
:mod:`.openai_schema` (it converts into this one); results are :mod:`.results`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from . import text
from .errors import SPEECH_FIELD_HINTS, RequestError, unknown_field
from .settings import get_settings

AudioFormat = Literal["wav", "flac", "mp3", "opus", "aac", "pcm"]
ChunkMethod = Literal["auto", "sentence", "word", "speaker", "none"]

#: A preset or uploaded voice name.
VOICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,63}")  # always matched whole (fullmatch)
_SPEAKER_KEY = re.compile(r"SPEAKER(\d{1,3})")


@dataclass(frozen=True)
class VerifySpec:
    """What ``verify`` asks of each chunk: the word error rate it must reach, and how many tries it gets.

    ``voice_check``: compare each chunk's voice with its speaker's reference (``None``: the server's default, on
    when it has a speaker model); ``min_similarity``: the request's own floor (``None``: the server's)."""

    max_wer: float
    max_attempts: int
    voice_check: bool | None = None
    min_similarity: float | None = None


class SpeechRequest(BaseModel):
    """A text-to-speech request: what to say, in which voice and scene, how to sample, what to return."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, str_strip_whitespace=False)

    transcript: str = Field(..., alias="text", description="Text to speak; `[SPEAKER0]`/`[SPEAKER1]` tags for dialogue.")
    ref_audio: str | None = Field(None, description="Voice: preset name(s) (`belinda` or `belinda,broom_salesman`), base64 audio, or an https URL when enabled (with `ref_text`).")
    ref_text: str | None = Field(None, description="Transcript of base64 `ref_audio`.")
    scene_prompt: str | None = Field(None, description="Scene description placed in the system turn; absent: "
                                                       "`Audio is recorded from a quiet room.`; empty: none.")
    temperature: float = Field(0.3, ge=0.0, le=5.0, description="Sampling temperature; 0 means greedy.")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling mass, in (0, 1].")
    top_k: int = Field(50, ge=0, le=1024, description="Top-k sampling; 0 disables it.")
    seed: int | None = Field(None, ge=0, le=2**63 - 1, description="Random seed; the same seed gives the same audio.")
    max_new_tokens: int = Field(2048, ge=1, description="Most audio frames generated per chunk (25 frames per second).")
    ras_win_len: int = Field(7, ge=0, le=64, description="Repetition-aware sampling window in frames; 0 disables it.")
    ras_win_max_num_repeat: int = Field(2, ge=1, le=64, description="Repeats within the window that trigger resampling.")
    speaker_descriptions: dict[str, str] | None = Field(
        None, description="Voice design: a description per speaker (`{\"SPEAKER0\": \"feminine; warm; British "
                          "accent\"}`, or one string for a single speaker), rendered into the scene as upstream's "
                          "speaker profiles; with or without `ref_audio`.")
    ref_audio_in_system_message: bool = Field(
        False, description="Put the reference audio in the system turn's scene (`SPEAKERn: <audio>`) instead of "
                           "user/assistant turns; implied by `speaker_descriptions`.")
    chunk_method: ChunkMethod | None = Field(
        "auto", description="How long text is split: `auto` (short text whole, long prose in whole sentences, long "
                            "dialogue by turns), `sentence`, upstream's `word` and `speaker`, or `none` (also null).")
    chunk_max_word_num: int = Field(200, ge=1, le=2000, description="Words per chunk (`word`, `sentence`; `auto` also "
                                                                     "keeps a chunk within `max_new_tokens`); jieba words for Chinese.")
    chunk_max_num_turns: int = Field(1, ge=1, le=64, description="Speaker turns per chunk with `speaker` (and long dialogue with `auto`).")
    generation_chunk_buffer_size: int | None = Field(
        2, ge=0, le=32, description="Previous chunks whose audio is fed back as context; null keeps every previous "
                                    "chunk (upstream's default) as far as the model's context allows.")
    format: AudioFormat = Field("wav", description="Output encoding.")
    speed: float = Field(1.0, ge=0.25, le=4.0, description="Playback speed of the result, 0.25 to 4.0: a pitch-preserving "
                                                          "time stretch of the generated audio.")
    save_voice: str | None = Field(None, description="Also keep the generated speech as a library voice under this name "
                                                     "(its text becomes the transcript), to reuse a designed voice.")
    verify: bool | dict[str, Any] = Field(
        False, description="Hear every chunk with speech recognition and generate it again (next seed) when it does not "
                           "say its text: `true`, or `{\"max_wer\": 0.3, \"max_attempts\": 3}`; with a speaker model on the server "
                           "each chunk's voice is also checked against its speaker's reference (`\"voice_check\": "
                           "false` turns that off, `\"min_similarity\": 0.8` sets its floor).")
    timestamps: Literal["word"] | None = Field(None, description="`word`: return the words heard with their start and "
                                                                 "end in seconds of the final audio.")
    captions: Literal["srt", "vtt"] | None = Field(None, description="Return captions of the audio in SRT or WebVTT.")
    trim_silence: bool = Field(True, description="Cut silence at the end longer than `TRIM_SILENCE_S` (whole responses).")
    normalize_text: bool = Field(True, description="Say numbers, money, times, dates, units and abbreviations as words "
                                                   "before chunking (English; Chinese numerals in Chinese text); false "
                                                   "sends the text as written (tags and punctuation are normalised anyway).")
    pronunciations: dict[str, str] | None = Field(
        None, description="Whole words respelled before the model sees them (`{\"Nguyen\": \"Win\"}`): an all-lower-case key "
                          "matches any case, any other only its exact spelling; wins over the `LEXICON_PATH` file.")
    loudness: float | None = Field(None, ge=-70.0, le=-5.0, description="Integrated loudness of the result in LUFS "
                                   "(ITU-R BS.1770), e.g. -16 (web) or -23 (EBU R128), true peak under "
                                   "`LOUDNESS_TRUE_PEAK_DBTP`; absent: `LOUDNESS_TARGET_LUFS`.")

    # Worked out once by the service and kept for the request's life (checks, then generation, reuse them).
    _references: list | None = PrivateAttr(None)  # resolved voices
    _plan: tuple[str, list[str]] | None = PrivateAttr(None)  # normalised text and its chunks
    _spoken: list | None = PrivateAttr(None)  # the text sent, as core.spoken pieces (for word times)

    @model_validator(mode="before")
    @classmethod
    def _one_text(cls, data: Any) -> Any:
        if isinstance(data, dict) and "transcript" in data and "text" in data:
            raise ValueError("give either `transcript` or `text`, not both")
        if surrogate_in_keys(data):  # the job's `input` object
            raise RequestError("input", f"has a field name that {SURROGATE_MESSAGE}")
        if isinstance(data, dict) and "input" in data and "transcript" not in data and "text" not in data:
            raise RequestError("input", unknown_field("input", SPEECH_FIELD_HINTS))  # OpenAI's body sent here
        return data

    @field_validator("transcript")
    @classmethod
    def _text_limits(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        limit = get_settings().max_text_chars
        if len(value) > limit:
            raise ValueError(f"is {len(value)} characters; the limit is {limit} (MAX_TEXT_CHARS)")
        if not text.clean(value).strip():
            raise ValueError("has nothing to speak (only spaces, control or invisible characters)")
        return value

    @field_validator("scene_prompt")
    @classmethod
    def _scene(cls, value: str | None) -> str | None:
        if value is None:
            return None
        limit = get_settings().max_scene_chars
        if len(value) > limit:
            raise ValueError(f"is {len(value)} characters; the limit is {limit} (MAX_SCENE_CHARS)")
        return text.clean(value).strip()  # "" is kept: an explicit empty scene means none, absent the default

    @field_validator("ref_text")
    @classmethod
    def _ref_text(cls, value: str | None) -> str | None:
        return reference_transcript(value) if value is not None and value.strip() else None

    @field_validator("speaker_descriptions", mode="before")
    @classmethod
    def _descriptions(cls, value: Any) -> dict[str, str] | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = {"SPEAKER0": value}
        if not isinstance(value, dict) or not value:
            raise ValueError("must be a description string or an object such as {\"SPEAKER0\": \"feminine; warm\"}")
        settings = get_settings()
        out: dict[str, str] = {}
        for tag, description in value.items():
            match = _SPEAKER_KEY.fullmatch(str(tag))
            if match is None or int(match.group(1)) >= settings.max_speakers:
                raise ValueError(f"keys must be SPEAKER0 to SPEAKER{settings.max_speakers - 1} (MAX_SPEAKERS); "
                                 f"got {str(tag)[:40]!r}")
            if not isinstance(description, str) or not text.clean(description).strip():
                raise ValueError(f"{tag} needs a non-empty description")
            if len(description) > settings.max_scene_chars:
                raise ValueError(f"{tag} is {len(description)} characters; the limit is "
                                 f"{settings.max_scene_chars} (MAX_SCENE_CHARS)")
            out[f"SPEAKER{int(match.group(1))}"] = " ".join(text.clean(description).split())
        return out

    @field_validator("verify", mode="before")
    @classmethod
    def _verify(cls, value: Any) -> bool | dict[str, Any]:
        if value is None or isinstance(value, bool):
            return bool(value)
        if not isinstance(value, dict) or set(value) - {"max_wer", "max_attempts", "voice_check", "min_similarity"}:
            raise ValueError("must be true, false or an object with `max_wer`, `max_attempts`, `voice_check` and/or "
                             "`min_similarity`")
        out: dict[str, Any] = {}
        if "max_wer" in value:
            wer = value["max_wer"]
            if isinstance(wer, bool) or not isinstance(wer, int | float) or not 0 <= wer <= 5:
                raise ValueError("max_wer must be a number from 0 to 5")
            out["max_wer"] = float(wer)
        if "max_attempts" in value:
            attempts = value["max_attempts"]
            if isinstance(attempts, bool) or not isinstance(attempts, int) or not 1 <= attempts <= 8:
                raise ValueError("max_attempts must be a whole number from 1 to 8")
            out["max_attempts"] = attempts
        if "voice_check" in value:
            if not isinstance(value["voice_check"], bool):
                raise ValueError("voice_check must be true or false")
            out["voice_check"] = value["voice_check"]
        if "min_similarity" in value:
            floor = value["min_similarity"]
            if isinstance(floor, bool) or not isinstance(floor, int | float) or not -1 <= floor <= 1:
                raise ValueError("min_similarity must be a number from -1 to 1")
            out["min_similarity"] = float(floor)
        return out

    def verify_spec(self, max_wer: float, max_attempts: int):
        """The check this request asks for (server defaults filled in), or None."""
        if self.verify is False:
            return None
        given = self.verify if isinstance(self.verify, dict) else {}
        return VerifySpec(given.get("max_wer", max_wer), int(given.get("max_attempts", max_attempts)),
                          given.get("voice_check"), given.get("min_similarity"))

    @property
    def needs_asr(self) -> bool:
        return self.verify is not False or self.timestamps is not None or self.captions is not None

    @field_validator("pronunciations")
    @classmethod
    def _pronunciations(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None and (len(value) > 500 or any(not k.strip() or len(k) > 64 or not v.strip() or len(v) > 200
                                                          for k, v in value.items())):
            raise ValueError("takes at most 500 entries, each a word of 1-64 characters and its respelling of "
                             "1-200 characters")
        return {k.strip(): v for k, v in value.items()} if value else None

    @field_validator("save_voice")
    @classmethod
    def _save_voice(cls, value: str | None) -> str | None:
        if value is not None and not VOICE_NAME.fullmatch(value):
            raise ValueError("must be a voice name: 1-64 letters, digits, '_' or '-', starting with a letter or digit")
        return value

    @field_validator("max_new_tokens")
    @classmethod
    def _max_tokens(cls, value: int) -> int:
        limit = get_settings().max_new_tokens_limit
        if value > limit:
            raise ValueError(f"is {value}; the limit is {limit} (MAX_NEW_TOKENS_LIMIT)")
        return value

    @field_validator("ref_audio")
    @classmethod
    def _ref_audio(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        if is_voice_names(value):
            names = voice_names(value)
            limit = get_settings().max_speakers
            if len(names) > limit:
                raise ValueError(f"names {len(names)} voices; the limit is {limit} (MAX_SPEAKERS)")
        return value

    @model_validator(mode="after")
    def _one_voice_per_speaker(self) -> SpeechRequest:
        """A speaker gets a reference voice or a description, never both (the description would drop the voice)."""
        if self.ref_audio is None or not self.speaker_descriptions:
            return self
        count = len(voice_names(self.ref_audio)) if is_voice_names(self.ref_audio) else 1
        both = [f"SPEAKER{i}" for i in range(count) if f"SPEAKER{i}" in self.speaker_descriptions]
        if both:
            raise RequestError("speaker_descriptions", f"{', '.join(both)} also has a voice in `ref_audio`: give "
                                                       "each speaker either a voice or a description, not both")
        return self

    @model_validator(mode="after")
    def _base64_needs_text(self) -> SpeechRequest:
        if self.ref_audio is not None and not is_voice_names(self.ref_audio) and not self.ref_text:
            kind = "a URL" if is_url(self.ref_audio) else "base64"
            raise RequestError("ref_text", f"is required with {kind} `ref_audio` (the transcript of that audio)")
        return self

    @field_validator("*", mode="before")
    @classmethod
    def _valid_unicode(cls, value: Any) -> Any:
        """Every field (the last "before" validator defined, so the first to run): no lone surrogates."""
        return refuse_surrogates(value)

    @classmethod
    def parse(cls, data: Any) -> SpeechRequest:
        """Validate ``data``; raise :class:`RequestError` naming the field on any problem."""
        if not isinstance(data, dict):
            raise RequestError("input", "must be a JSON object")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            cause = exc.errors()[0].get("ctx", {}).get("error")
            if isinstance(cause, RequestError):
                raise cause from None
            raise RequestError.from_validation(exc) from None

    @property
    def voice_names(self) -> list[str]:
        """Preset names in ``ref_audio``, empty when it is absent or base64 audio."""
        if self.ref_audio is None or not is_voice_names(self.ref_audio):
            return []
        return voice_names(self.ref_audio)


SURROGATE_MESSAGE = ("is not valid Unicode text: it holds a lone UTF-16 surrogate (such as \\ud800), which no UTF-8 "
                      "text can carry")


def refuse_surrogates(value: Any) -> Any:
    """``value`` as it is, or a ``ValueError`` (pydantic names the field) when any string in it holds a lone
    surrogate: refused here, where the field is known, instead of failing later in the tokenizer or a log."""
    if text.has_lone_surrogate(value):
        raise ValueError(SURROGATE_MESSAGE)
    return value


def surrogate_in_keys(data: Any) -> bool:
    """Whether a field name holds a lone surrogate: refused before it could be quoted back in an "unknown field"
    error (which could then not be encoded)."""
    return isinstance(data, dict) and any(text.has_lone_surrogate(k) for k in data)


def reference_transcript(value: str, field: str = "ref_text") -> str:
    """What a reference voice's audio says, as given with a request (``ref_text``) or an upload (``transcript``):
    within ``MAX_REF_TEXT_CHARS``, valid Unicode, invisible and control characters removed, and something left.
    Raises :class:`RequestError` naming ``field``."""
    limit = get_settings().max_ref_text_chars
    if len(value) > limit:
        raise RequestError(field, f"is {len(value)} characters; the limit is {limit} (MAX_REF_TEXT_CHARS)")
    if text.has_lone_surrogate(value):
        raise RequestError(field, SURROGATE_MESSAGE)
    cleaned = text.clean(value).strip()
    if not cleaned:
        raise RequestError(field, "has nothing to say (only spaces, control or invisible characters)")
    return cleaned


def voice_names(value: str) -> list[str]:
    return [n.strip() for n in value.split(",")]


def is_url(value: str) -> bool:
    return value[:8].lower().startswith(("https://", "http://"))


def is_voice_names(value: str) -> bool:
    """True when ``value`` is a comma-separated list of voice names rather than base64 audio."""
    return all(VOICE_NAME.fullmatch(n) for n in voice_names(value)) and len(value) <= 64 * 9
