"""The one request schema every entry point converts into, the result, and the error types.

Validation only: limits come from :mod:`.settings`; nothing here touches the model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from . import text
from .errors import RequestError
from .settings import get_settings

AudioFormat = Literal["wav", "flac", "mp3", "opus", "aac", "pcm"]
ChunkMethod = Literal["auto", "sentence", "word", "speaker", "none"]

#: A preset or uploaded voice name.
VOICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,63}")  # always matched whole (fullmatch)
_SPEAKER_KEY = re.compile(r"SPEAKER(\d{1,3})")


@dataclass(frozen=True)
class VerifySpec:
    """What ``verify`` asks of each chunk: the word error rate it must reach, and how many tries it gets."""

    max_wer: float
    max_attempts: int


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
                           "say its text: `true`, or `{\"max_wer\": 0.3, \"max_attempts\": 3}`.")
    timestamps: Literal["word"] | None = Field(None, description="`word`: return the words heard with their start and "
                                                                 "end in seconds of the final audio.")
    captions: Literal["srt", "vtt"] | None = Field(None, description="Return captions of the audio in SRT or WebVTT.")
    trim_silence: bool = Field(True, description="Cut silence at the end longer than `TRIM_SILENCE_S` (whole responses).")

    # Worked out once by the service and kept for the request's life (checks, then generation, reuse them).
    _references: list | None = PrivateAttr(None)  # resolved voices
    _plan: tuple[str, list[str]] | None = PrivateAttr(None)  # normalised text and its chunks

    @model_validator(mode="before")
    @classmethod
    def _one_text(cls, data: Any) -> Any:
        if isinstance(data, dict) and "transcript" in data and "text" in data:
            raise ValueError("give either `transcript` or `text`, not both")
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
            raise ValueError("has nothing to speak (only spaces, control or zero-width characters)")
        return value

    @field_validator("scene_prompt", "ref_text")
    @classmethod
    def _short_text(cls, value: str | None, info) -> str | None:
        if value is None:
            return None
        limit = get_settings().max_scene_chars
        if len(value) > limit:
            raise ValueError(f"is {len(value)} characters; the limit is {limit} (MAX_SCENE_CHARS)")
        cleaned = text.clean(value).strip()
        if info.field_name == "scene_prompt":
            return cleaned  # "" is kept: an explicit empty scene means none, where absent means the default
        return cleaned or None

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
        if not isinstance(value, dict) or set(value) - {"max_wer", "max_attempts"}:
            raise ValueError("must be true, false or an object with `max_wer` and/or `max_attempts`")
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
        return out

    def verify_spec(self, max_wer: float, max_attempts: int):
        """The check this request asks for (server defaults filled in), or None."""
        if self.verify is False:
            return None
        given = self.verify if isinstance(self.verify, dict) else {}
        return VerifySpec(given.get("max_wer", max_wer), int(given.get("max_attempts", max_attempts)))

    @property
    def needs_asr(self) -> bool:
        return self.verify is not False or self.timestamps is not None or self.captions is not None

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


#: ``voice`` values that mean "no cloning: let the model pick a voice".
DEFAULT_VOICES = frozenset({"default", "auto", "random"})


class OpenAISpeech(BaseModel):
    """The body of OpenAI's ``POST /v1/audio/speech``, with the Higgs extras."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(..., description="Any of the names `GET /v1/models` lists.")
    input: str = Field(..., description="Text to speak.")
    voice: str | dict[str, str] = Field(..., description="A preset or uploaded voice name, or OpenAI's object form "
                                                        "`{\"id\": \"NAME\"}`; `default` lets the model choose.")
    instructions: str | None = Field(None, description="How to speak: becomes the scene description.")
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0, description="Playback speed, 0.25 to 4.0 (pitch-preserving time stretch).")
    stream_format: Literal["audio", "sse"] | None = Field(None, description="`audio` (chunked) or `sse` events; unset returns the whole file.")
    seed: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    max_new_tokens: int | None = None
    scene_prompt: str | None = None
    speaker_descriptions: dict[str, str] | str | None = None
    ref_audio_in_system_message: bool | None = None
    save_voice: str | None = None
    verify: bool | dict[str, Any] | None = None
    timestamps: Literal["word"] | None = None
    captions: Literal["srt", "vtt"] | None = None
    trim_silence: bool | None = None
    ref_audio: str | None = Field(None, description="Base64 reference audio (with `ref_text`) instead of `voice`.")
    ref_text: str | None = None
    chunk_method: ChunkMethod | None = None
    chunk_max_word_num: int | None = None
    chunk_max_num_turns: int | None = None
    generation_chunk_buffer_size: int | None = None
    ras_win_len: int | None = None
    ras_win_max_num_repeat: int | None = None

    @field_validator("voice", mode="before")
    @classmethod
    def _voice_id(cls, value: Any) -> str:
        """OpenAI's ``{"id": "NAME"}`` is the name itself; any other key in it is refused by its name. Always a name
        after validation."""
        if isinstance(value, dict):
            unknown = sorted(str(k) for k in value if k != "id")
            if unknown:
                raise ValueError(f"unknown field `{unknown[0][:64]}` in the voice object (it takes only `id`)")
            if not isinstance(value.get("id"), str):
                raise ValueError('an object must be {"id": "NAME"}')
            return value["id"]
        if not isinstance(value, str):
            raise ValueError('must be a voice name or {"id": "NAME"}')
        return value

    def to_request(self) -> SpeechRequest:
        if self.instructions and self.scene_prompt:
            raise RequestError("instructions", "give either `instructions` or `scene_prompt`, not both")
        if self.ref_audio and self.voice not in DEFAULT_VOICES:
            raise RequestError("ref_audio", "give either a named `voice` or base64 `ref_audio`, not both")
        body: dict[str, Any] = {"transcript": self.input, "format": self.response_format, "speed": self.speed}
        body["scene_prompt"] = self.instructions if self.instructions is not None else self.scene_prompt
        body["ref_audio"] = self.ref_audio or (None if self.voice in DEFAULT_VOICES else self.voice)
        if self.ref_audio:
            body["ref_text"] = self.ref_text
        for name in ("seed", "temperature", "top_p", "top_k", "max_new_tokens", "chunk_method", "chunk_max_word_num",
                     "chunk_max_num_turns", "generation_chunk_buffer_size", "ras_win_len", "ras_win_max_num_repeat",
                     "speaker_descriptions", "ref_audio_in_system_message", "save_voice", "verify",
                     "timestamps", "captions", "trim_silence"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        if body["ref_audio"] and not self.ref_audio and not is_voice_names(body["ref_audio"]):
            raise RequestError("voice", "must be a voice name (letters, digits, '_' or '-')")
        return SpeechRequest.parse({k: v for k, v in body.items() if v is not None})


def voice_names(value: str) -> list[str]:
    return [n.strip() for n in value.split(",")]


def is_url(value: str) -> bool:
    return value[:8].lower().startswith(("https://", "http://"))


def is_voice_names(value: str) -> bool:
    """True when ``value`` is a comma-separated list of voice names rather than base64 audio."""
    return all(VOICE_NAME.fullmatch(n) for n in voice_names(value)) and len(value) <= 64 * 9


@dataclass
class Usage:
    """Token accounting: text tokens in the prompts, audio frames generated."""

    prompt_tokens: int = 0
    audio_frames: int = 0
    truncated: bool = False  # a chunk stopped at max_new_tokens before the end of its audio

    def as_dict(self) -> dict[str, int | bool]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.audio_frames,
                "total_tokens": self.prompt_tokens + self.audio_frames, "truncated": self.truncated}


@dataclass
class SpeechResult:
    """Generated speech: the waveform, its encoding and what it cost."""

    waveform: np.ndarray
    sample_rate: int
    format: str
    audio: bytes
    seed: int
    chunks: int
    frames: int
    generation_s: float
    usage: Usage = field(default_factory=Usage)
    timings: dict[str, float] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)  # truncated, saved_voice, ...

    @property
    def truncated(self) -> bool:
        return bool(self.extras.get("truncated"))

    @property
    def duration_s(self) -> float:
        return len(self.waveform) / self.sample_rate

    @property
    def real_time_factor(self) -> float:
        """Generation time over audio duration: below 1 is faster than real time."""
        return self.generation_s / self.duration_s if self.duration_s > 0 else 0.0

    def metadata(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "sample_rate": self.sample_rate,
            "duration_s": round(self.duration_s, 4),
            "frames": self.frames,
            "chunks": self.chunks,
            "seed": self.seed,
            "generation_s": round(self.generation_s, 4),
            "real_time_factor": round(self.real_time_factor, 4),
            "usage": self.usage.as_dict(),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            **self.extras,
        }
