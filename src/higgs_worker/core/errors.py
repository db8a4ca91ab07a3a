"""The error types every layer raises, and what a caller may be told about any error (:func:`public_error`).

Kept at the bottom of the package so the engine, the stores and the faces can all raise and recognise them
without importing each other.
"""

from __future__ import annotations

import logging
import secrets

from pydantic import ValidationError

log = logging.getLogger(__name__)

#: Error locations reported under an alias, and the field name users are told instead.
_ALIASES = {"text": "transcript"}

#: OpenAI's names sent to the worker's own schema (jobs, ``/runsync``, RunPod): the field meant instead.
SPEECH_FIELD_HINTS = {"input": "transcript", "response_format": "format", "voice": "ref_audio",
                      "instructions": "scene_prompt", "model": None}
#: The worker's names (or other APIs') sent to OpenAI's ``/v1/audio/speech``: the field meant instead.
OPENAI_FIELD_HINTS = {"text": "input", "transcript": "input", "format": "response_format",
                      "output_format": "response_format", "voice_id": "voice", "scene": "instructions"}


def unknown_field(field: str, hints: dict[str, str | None]) -> str:
    """The message for a field a schema does not take, with the one meant where a common mix-up is recognised."""
    if field not in hints:
        return "unknown field"
    meant = hints[field]
    if hints is SPEECH_FIELD_HINTS:
        where = "this route takes the worker's own field names; OpenAI's go to /v1/audio/speech"
        return f"unknown field ({where})" if meant is None else f"unknown field: did you mean `{meant}`? ({where})"
    return f"unknown field: did you mean `{meant}`?"


class RequestError(ValueError):
    """A request the worker refuses; ``field`` names the offending input and ``message`` says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    @classmethod
    def from_validation(cls, exc: ValidationError) -> RequestError:
        """The first problem pydantic found, phrased with its field name."""
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ())) or "request"
        loc = _ALIASES.get(loc, loc)
        msg = first.get("msg", "invalid value")
        if first.get("type") == "extra_forbidden":
            msg = unknown_field(loc, SPEECH_FIELD_HINTS)
        msg = msg.removeprefix("Value error, ")
        return cls(loc, msg)


class EngineError(RuntimeError):
    """The model failed on a valid request (load failure, out of memory, ...)."""


class ModelLoadError(RuntimeError):
    """The model folders are missing, incomplete or unreadable."""


class Cancelled(Exception):
    """The caller gave up on the request."""


class DeviceFault(RuntimeError):
    """The GPU failed in a way this process cannot recover from; every later model call would fail too.

    The message is written for callers (it quotes the device's own error line, which names no files)."""


class StorageError(RuntimeError):
    """The object store refused or could not be reached; the message is safe to show."""


def public_error(exc: BaseException, context: str = "") -> str:
    """What a caller may be told about ``exc``.

    Refusals written for users (the field and the limit) pass as they are; anything else (a model that failed to
    load, a bug) becomes a generic reason with a short error id, and the full detail, which may name files or
    internals, goes to the log once under that id.
    """
    if isinstance(exc, RequestError | StorageError | DeviceFault):  # DeviceFault: the GPU failed; written for users
        return str(exc)
    if isinstance(exc, EngineError) and isinstance(exc.__cause__, MemoryError):
        return str(exc)  # "out of accelerator memory even alone ...; shorten the text": written for users
    ref = getattr(exc, "_public_error_id", None)
    if ref is None:
        ref = secrets.token_hex(4)
        try:
            exc._public_error_id = ref  # a remembered load failure keeps one id however often it is reported
        except AttributeError:
            pass
        log.error("error %s%s: %s: %s", ref, f" ({context})" if context else "", exc.__class__.__name__, exc,
                  exc_info=exc)
    reason = "model unavailable: the model failed to load" if isinstance(exc, ModelLoadError) else "internal error"
    return f"{reason} (error id {ref}; details are in the server log)"
