"""The one path from a :class:`~higgs_worker.core.schema.SpeechRequest` to audio.

* :mod:`.service`: :class:`~.service.SpeechService` (``plan``, ``check``, ``synthesize``, ``synthesize_stream``)
  and :class:`~.service.SpeechStream` (the same speech as waveform pieces while it is generated):
  chunks, voices, generation, the speech check, word times, saving a voice.
* :mod:`.record`: what one request cost and made, behind every result's metadata.
* :mod:`.quality`: the speech check (``verify``): hearing each chunk and keeping the best attempt.
* :mod:`.recognition`: the speech recognizer as the settings describe it.
* :mod:`.prompt_view`: the prompt inspector (``higgs-worker prompt``).

May import: ``engine``, ``asr``, ``audio``, ``voices``, ``weights`` and ``core``; never ``jobs`` or an entry point.
"""

from __future__ import annotations

from .service import SpeechService, SpeechStream

__all__ = ["SpeechService", "SpeechStream"]
