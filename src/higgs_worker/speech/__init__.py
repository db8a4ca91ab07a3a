"""The one path from a :class:`~higgs_worker.core.schema.SpeechRequest` to audio.

* :mod:`.service`: :class:`~.service.SpeechService` (``plan``, ``check``, ``synthesize``, ``synthesize_stream``):
  chunks, voices, generation, the speech check, word times, saving a voice.
* :mod:`.stream`: :class:`~.stream.SpeechStream`, the same speech as waveform pieces while it is generated.
* :mod:`.progress`: how far a running request has come (chunks done of the plan, audio made).
* :mod:`.record`: what one request cost and made, behind every result's metadata.
* :mod:`.budget`: one request's share: prompt positions per chunk, frames per chunk.
* :mod:`.session`: realtime sessions: text arriving in pieces spoken as it comes, one voice across a turn.
* :mod:`.lexicon`: pronunciation lexicons (request and server-wide), whole words respelled.
* :mod:`.timing`: word times and captions of the final audio, in the words the user wrote.
* :mod:`.saving`: keeping generated speech as a library voice (``save_voice``).
* :mod:`.voice_check`: whether each chunk is in its speaker's voice (part of ``verify``).
* :mod:`.quality`: the speech check (``verify``): hearing each chunk and keeping the best attempt.
* :mod:`.recognition`: the speech recognizer as the settings describe it.
* :mod:`.prompt_view`: the prompt inspector (``higgs-worker prompt``).

May import: ``engine``, ``asr``, ``audio``, ``voices``, ``weights`` and ``core``; never ``jobs`` or an entry point.
"""

from __future__ import annotations

from .service import SpeechService
from .stream import SpeechStream

__all__ = ["SpeechService", "SpeechStream"]
