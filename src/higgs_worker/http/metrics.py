"""Prometheus metrics of one server (its own registry, so several apps in one process stay apart)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("higgs_http_requests", "HTTP requests by route and status code",
                                ["route", "method", "status"], registry=r)
        self.queue_depth = Gauge("higgs_queue_depth", "Jobs waiting to start", registry=r)
        self.jobs_running = Gauge("higgs_jobs_running", "Jobs in progress", registry=r)
        self.batch_size = Histogram("higgs_batch_size", "Requests decoded together per generation step",
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.time_to_first_audio = Histogram("higgs_time_to_first_audio_seconds", "Request start to first audio",
                                             buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30), registry=r)
        self.real_time_factor = Histogram("higgs_real_time_factor", "Generation time over audio duration",
                                          buckets=(0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10), registry=r)
        self.audio_seconds = Counter("higgs_generated_audio_seconds", "Seconds of audio generated", registry=r)
        self.model_load_seconds = Gauge("higgs_model_load_seconds", "Time the model took to load", registry=r)
        self.model_ready = Gauge("higgs_model_ready", "1 when the model is loaded", registry=r)
        self.bodies_receiving = Gauge("higgs_http_bodies_receiving", "Request bodies being received now "
                                      "(MAX_CONCURRENT_BODIES)", registry=r)
        self.body_bytes_held = Gauge("higgs_http_body_bytes_held", "Bytes reserved for request bodies now "
                                     "(MAX_BODY_BYTES_IN_FLIGHT)", registry=r)

    def observe_result(self, duration_s: float, generation_s: float, first_audio_s: float | None) -> None:
        self.audio_seconds.inc(duration_s)
        if duration_s > 0:
            self.real_time_factor.observe(generation_s / duration_s)
        if first_audio_s is not None:
            self.time_to_first_audio.observe(first_audio_s)
