"""Prometheus metrics of speech checking, registered into the server's own registry.

The HTTP app keeps one ``CollectorRegistry`` per server (``http/metrics.py``); the service creates
``ASRMetrics(that_registry)`` next to it, so ``/metrics`` shows these beside the synthesis metrics.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class ASRMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.attempts = Histogram("higgs_asr_attempts_per_chunk",
                                  "Generations of a chunk until its transcript passed the check (or attempts ran out)",
                                  buckets=(1, 2, 3, 4, 5, 8), registry=r)
        self.score = Histogram("higgs_asr_word_error_rate",
                               "Word error rate of each checked generation against its text",
                               buckets=(0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0), registry=r)
        self.seconds = Histogram("higgs_asr_seconds", "Time of one recognition batch (encoder, decoding, alignment)",
                                 buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10), registry=r)
        self.batch_size = Histogram("higgs_asr_batch_size", "Audio windows transcribed together in one batch",
                                    buckets=(1, 2, 4, 8, 16, 32), registry=r)
        self.audio_seconds = Counter("higgs_asr_audio_seconds", "Seconds of audio transcribed", registry=r)
        self.failed_checks = Counter("higgs_asr_failed_checks",
                                     "Chunks whose transcript stayed above MAX_WER after the last attempt",
                                     registry=r)
        self.similarity = Histogram("higgs_voice_similarity",
                                    "Voice check: cosine similarity of each checked generation to its speaker's "
                                    "reference voice",
                                    buckets=(0.0, 0.3, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0), registry=r)

    def observe_batch(self, windows: int, seconds: float, audio_seconds: float) -> None:
        """Called by the recognizer's model thread after each batch."""
        self.seconds.observe(seconds)
        self.batch_size.observe(windows)
        self.audio_seconds.inc(audio_seconds)

    def observe_check(self, score: float) -> None:
        """One generation of a chunk scored against its text."""
        self.score.observe(score)

    def observe_chunk(self, attempts: int, passed: bool) -> None:
        """A chunk is final: how many generations it took, and whether the last one passed."""
        self.attempts.observe(attempts)
        if not passed:
            self.failed_checks.inc()

    def observe_similarity(self, similarity: float) -> None:
        """One generation of a chunk compared with its speaker's reference voice (the voice check)."""
        self.similarity.observe(similarity)
