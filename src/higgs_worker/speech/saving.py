"""Keeping a request's generated speech as a library voice (``save_voice``)."""

from __future__ import annotations

import io
import logging

import numpy as np
import soundfile as sf

from ..core.errors import RequestError
from ..voices import VoiceLibrary
from .record import Record

log = logging.getLogger(__name__)


def save_voice(voices: VoiceLibrary, name: str, transcript: str, wave: np.ndarray, sample_rate: int,
               record: Record) -> None:
    """Keep the generated speech (at its natural pace) as a library voice with its text as the transcript.

    A failure here does not cost the caller the audio: it is reported beside it (``save_voice_error``).
    """
    try:
        buf = io.BytesIO()
        sf.write(buf, wave, sample_rate, format="WAV", subtype="PCM_16")
        voices.add_upload(name, buf.getvalue(), transcript)
        record.saved_voice = name
        log.info("saved the generated speech as voice %r (%.2f s)", name, len(wave) / sample_rate)
    except RequestError as exc:
        record.save_voice_error = f"save_voice: {exc.message}"
