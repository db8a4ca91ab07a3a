"""The voice check: is each chunk spoken in its speaker's voice, and not in another speaker's?

Part of ``verify``. On by default when the server has a speaker-verification model (``VOICE_CHECK``, loaded from
``VOICE_CHECK_PATH``); ``verify: {"voice_check": false}`` turns it off for a request and ``{"voice_check": true}``
demands it (refused where there is no speaker model). Each attempt at a chunk is embedded (x-vectors,
:mod:`higgs_worker.asr.speaker`) and compared by cosine similarity with its speaker's reference: the voice a
request names for that speaker (``SPEAKERn`` is the n-th reference), or, without one, the kept attempt at that
speaker's first chunk. Its problems count like the speech check's, so a failing chunk is generated again with the
next seed and the best attempt is kept (:func:`~.quality.check_chunk`):

* under the floor: similarity to its own reference below ``min_similarity`` (``VOICE_CHECK_MIN_SIMILARITY``);
* in a dialogue, closer to another speaker: similarity to another speaker's reference at least its own minus
  ``VOICE_CHECK_MARGIN``;
* in a dialogue, the first chunk of a speaker without a reference: as similar to another speaker's reference as
  ``VOICE_CHECK_SAME_SPEAKER`` (it would become a copy of that voice).

A chunk holding several speakers' turns is not judged (one embedding cannot tell whose voice is whose); its
``similarity`` is null. Results carry ``similarity`` per chunk and attempt, and in dialogues ``speaker``,
``nearest_speaker`` and ``nearest_similarity``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..asr.metrics import ASRMetrics
from ..asr.speaker import SpeakerLoadError, SpeakerVerifier, cosine, load_speaker
from ..audio import SAMPLE_RATE
from ..core.errors import ModelLoadError, RequestError
from ..core.schema import SpeechRequest, VerifySpec
from ..core.settings import Settings
from ..engine import Engine
from ..weights.fetch import fetch_repo, is_complete, voice_check_spec
from ..weights.policy import voice_check_folder_ready, voice_check_load_wanted

_TAG = re.compile(r"\[(SPEAKER\d+)\]")
Judgement = tuple[dict[str, Any], list[str]]


def build_verifier(settings: Settings) -> SpeakerVerifier:
    """Fetch ``VOICE_CHECK_REPO`` first when its folder is empty and fetching is allowed, then load it."""
    spec = voice_check_spec(settings)
    if (not settings.higgs_demo and settings.auto_fetch_models and not voice_check_folder_ready(settings)
            and not is_complete(spec)):
        try:
            fetch_repo(spec)
        except Exception as exc:  # reported as a load failure, with the reason
            raise SpeakerLoadError(f"VOICE_CHECK_PATH folder {spec.local_dir} is empty and fetching "
                                   f"{spec.repo_id}@{spec.revision} failed: {exc.__class__.__name__}: {exc}") from exc
    return SpeakerVerifier(load_speaker(settings.voice_check_path, settings.device))


class VoiceChecks:
    """A service's speaker model, loaded on first use (a failed load is remembered), and each request's check."""

    def __init__(self, settings: Settings, verifier: SpeakerVerifier | None = None) -> None:
        self.settings = settings
        self._verifier = verifier
        self._error: Exception | None = None
        self._lock = threading.Lock()

    @property
    def verifier(self) -> SpeakerVerifier:
        if self._verifier is None:
            with self._lock:
                if self._verifier is None:
                    if self._error is not None:
                        raise self._error
                    try:
                        self._verifier = build_verifier(self.settings)
                    except ModelLoadError as exc:
                        self._error = exc
                        raise
        return self._verifier

    def available(self) -> bool:
        return self._verifier is not None or voice_check_load_wanted(self.settings)

    def require(self, request: SpeechRequest) -> None:
        """Refuse ``verify: {"voice_check": true}`` where there is no speaker model."""
        if isinstance(request.verify, dict) and request.verify.get("voice_check") and not self.available():
            raise RequestError("verify", "voice_check needs a speaker-verification model, which is off on this "
                                         "server (VOICE_CHECK=off, or no model in VOICE_CHECK_PATH)")

    def start(self, spec: VerifySpec | None, references: list, speakers: list[str], engine: Engine,
              timings: dict[str, float], metrics: ASRMetrics | None) -> VoiceCheck | None:
        """The check of one request (``None`` when it asks for none): its references embedded in one batch."""
        wanted = spec.voice_check if spec is not None and spec.voice_check is not None else self.available()
        if spec is None or not wanted:
            return None
        t = time.perf_counter()
        verifier = self.verifier
        waves = [r.wave for r in references]
        vectors = verifier.embed(waves, SAMPLE_RATE) if waves else []
        s = self.settings
        floor = spec.min_similarity if spec.min_similarity is not None else s.voice_check_min_similarity
        check = VoiceCheck(verifier, {f"SPEAKER{i}": v for i, v in enumerate(vectors)}, floor,
                           s.voice_check_margin, s.voice_check_same_speaker, engine.decode, engine.sample_rate,
                           timings, metrics,
                           dialogue=len(speakers) > 1 or len(vectors) > 1)
        timings["voice_check"] = timings.get("voice_check", 0.0) + time.perf_counter() - t
        return check


class VoiceCheck:
    """One request's voice check: the speakers' reference embeddings, grown as speakers without one first speak."""

    def __init__(self, verifier: SpeakerVerifier, references: dict[str, np.ndarray], min_similarity: float,
                 margin: float, same_speaker: float, decode: Callable[[Any], np.ndarray], sample_rate: int,
                 timings: dict[str, float] | None = None, metrics: ASRMetrics | None = None,
                 dialogue: bool = False) -> None:
        self.verifier = verifier
        self.references = dict(references)
        self.min_similarity, self.margin, self.same_speaker = min_similarity, margin, same_speaker
        self.decode, self.sample_rate = decode, sample_rate
        self.timings = timings if timings is not None else {}
        self.metrics = metrics
        self.dialogue = dialogue or len(self.references) > 1
        self._speaker = "SPEAKER0"  # whose turn a chunk without a tag continues
        self._chunk_speaker: str | None = None
        self._embeddings: list[np.ndarray | None] = []  # of the current chunk's attempts, in order

    def for_chunk(self, chunk: str) -> Callable[[Any], Judgement]:
        """The judge of ``chunk``'s attempts (pass it to :func:`~.quality.check_chunk` as ``voice``)."""
        tags = _TAG.findall(chunk)
        speaker = self._speaker if not tags else tags[0] if len(set(tags)) == 1 else None
        self._speaker = tags[-1] if tags else self._speaker
        self._chunk_speaker = speaker
        self._embeddings = []
        return self._attempt

    def _attempt(self, generation: Any) -> Judgement:
        t = time.perf_counter()
        try:
            if self._chunk_speaker is None or generation.codes.shape[0] == 0:
                self._embeddings.append(None)
                return {"similarity": None}, []
            vector = self.verifier.embed([self.decode(generation.codes)], self.sample_rate)[0]
            self._embeddings.append(vector)
            figures, problems = self.judge(self._chunk_speaker, vector)
            if self.metrics is not None and figures["similarity"] is not None:
                self.metrics.observe_similarity(figures["similarity"])
            return figures, problems
        finally:
            self.timings["voice_check"] = self.timings.get("voice_check", 0.0) + time.perf_counter() - t

    def judge(self, speaker: str, vector: np.ndarray) -> Judgement:
        """Figures and problems of one embedding said to be ``speaker``'s voice."""
        own = self.references.get(speaker)
        similarity = cosine(vector, own) if own is not None else None
        others = {tag: cosine(vector, ref) for tag, ref in self.references.items() if tag != speaker}
        figures: dict[str, Any] = {"similarity": None if similarity is None else round(similarity, 4)}
        problems = []
        nearest = max(others, key=lambda tag: others[tag]) if others else None
        if self.dialogue:
            figures["speaker"] = speaker
            figures["nearest_speaker"] = nearest
            figures["nearest_similarity"] = None if nearest is None else round(others[nearest], 4)
        if similarity is not None and similarity < self.min_similarity:
            problems.append(f"voice similarity {similarity:.2f} to {speaker}'s reference is under "
                            f"{self.min_similarity:.2f}")
        if nearest is not None and similarity is not None and others[nearest] >= similarity - self.margin:
            problems.append(f"voice is closer to {nearest} ({others[nearest]:.2f}) than to its own speaker "
                            f"{speaker} ({similarity:.2f})")
        if nearest is not None and similarity is None and others[nearest] >= self.same_speaker:
            problems.append(f"voice of {speaker}'s first chunk sounds like {nearest} ({others[nearest]:.2f}, "
                            f"at least {self.same_speaker:.2f})")
        return figures, problems

    def settle(self, kept: int) -> None:
        """The chunk kept attempt ``kept``: a speaker without a reference takes its voice as the reference."""
        speaker = self._chunk_speaker
        if speaker is not None and speaker not in self.references and kept < len(self._embeddings):
            vector = self._embeddings[kept]
            if vector is not None:
                self.references[speaker] = vector
