"""The body of OpenAI's ``POST /v1/audio/speech`` (with the Higgs extras), converted into the one request schema."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .errors import RequestError
from .schema import (SURROGATE_MESSAGE, ChunkMethod, SpeechRequest, is_voice_names, refuse_surrogates,
                     surrogate_in_keys)


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
    normalize_text: bool | None = None
    pronunciations: dict[str, str] | None = None
    loudness: float | None = None
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

    @model_validator(mode="before")
    @classmethod
    def _valid_keys(cls, data: Any) -> Any:
        if surrogate_in_keys(data):
            raise ValueError(f"has a field name that {SURROGATE_MESSAGE}")  # reported on `body`
        return data

    @field_validator("*", mode="before")
    @classmethod
    def _valid_unicode(cls, value: Any) -> Any:
        """Every field (the last "before" validator defined, so the first to run): no lone surrogates."""
        return refuse_surrogates(value)

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
                     "timestamps", "captions", "trim_silence", "normalize_text", "pronunciations", "loudness"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        if body["ref_audio"] and not self.ref_audio and not is_voice_names(body["ref_audio"]):
            raise RequestError("voice", "must be a voice name (letters, digits, '_' or '-')")
        return SpeechRequest.parse({k: v for k, v in body.items() if v is not None})


