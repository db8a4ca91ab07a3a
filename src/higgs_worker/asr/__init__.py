"""Speech recognition beside the TTS engine: checking chunks, word timings, captions.

Like ``engine/``, this package knows nothing of HTTP, RunPod, jobs or the speech service, which calls it.
May import: ``core`` and ``weights`` (device and folder helpers). The modules:

* :mod:`.loader`: Whisper from a local folder (``ASR_PATH``), offline; GPU in half precision when present. Also the
  checks of a model folder (:class:`~.loader.ModelFolder`) and the record of a load (:class:`~.loader.LoadedModel`)
  that :mod:`.speaker` shares.
* :mod:`.recognizer`: :class:`~.recognizer.Recognizer`, thread-safe transcription with word times that batches
  concurrent callers on one model thread.
* :mod:`.scoring`: normalisation and word error rate (characters for Chinese and Japanese).
* :mod:`.captions`: SRT and WebVTT from timed words; :func:`~.captions.offset_words`.
* :mod:`.speaker`: speaker verification (x-vector embeddings, cosine similarity) for the voice check.
* :mod:`.types`: a transcript and its timed words.
* :mod:`.metrics`: the Prometheus metrics of speech and voice checks.

Whether ``ASR`` (auto/on/off) fetches and loads the model is :mod:`higgs_worker.weights.policy`; building the
recognizer is :mod:`higgs_worker.speech.recognition`.

Only the light, torch-free pieces are imported here; the loader and recognizer are imported from their modules.
"""

from __future__ import annotations

from .captions import Cue, build_cues, captions, offset_words, to_srt, to_vtt
from .scoring import ErrorCounts, error_counts, normalise_for_scoring, word_error_rate
from .types import Transcript, Word

__all__ = ["Cue", "ErrorCounts", "Transcript", "Word", "build_cues", "captions", "error_counts",
           "normalise_for_scoring", "offset_words", "to_srt", "to_vtt", "word_error_rate"]
