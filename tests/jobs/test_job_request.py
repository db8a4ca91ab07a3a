"""A job's delivery options: an `s3_key` is never silently dropped (refused with no bucket to put it in, uploaded
to `S3_BUCKET` when the job names no bucket), whatever the size of the audio."""

from __future__ import annotations

import pytest

from higgs_worker.core.errors import RequestError
from higgs_worker.jobs.request import JobRequest
from higgs_worker.jobs.runner import JobRunner

SMALL = {"max_new_tokens": 30, "seed": 2}


def test_a_key_without_any_bucket_is_refused_before_any_work_even_when_the_audio_fits_inline(service, monkeypatch):
    assert service.settings.s3_bucket is None and service.settings.max_inline_bytes > 10_000  # 30 frames fit inline
    with pytest.raises(RequestError) as err:
        JobRequest.parse({"transcript": "Kept where?", "s3_key": "mine/x.wav"})
    assert err.value.field == "s3_key" and "s3_bucket" in err.value.message
    generated = []
    monkeypatch.setattr(service, "synthesize", lambda *a, **k: generated.append(1))
    out = JobRunner(service).run_job({"transcript": "Kept where?", "s3_key": "mine/x.wav", **SMALL})
    assert out["error"] == "s3_key: needs `s3_bucket` (or S3_BUCKET configured)" and generated == []


def test_a_key_without_a_bucket_goes_to_the_configured_bucket_even_when_the_audio_fits_inline(service, s3, monkeypatch):
    for k, v in s3.env().items():
        monkeypatch.setenv(k, v)
    runner = s3.job_runner(service, s3_bucket="audio-out")
    assert JobRequest.parse({"transcript": "x", "s3_key": "named/x.wav"}).s3_bucket == "audio-out"
    out = runner.run_job({"transcript": "Kept where I said.", "s3_key": "named/kept.wav", **SMALL})
    assert "error" not in out and "audio_base64" not in out
    assert out["s3"]["bucket"] == "audio-out" and out["s3"]["key"] == "named/kept.wav"
    assert s3.client().head_object(Bucket="audio-out", Key="named/kept.wav")["ContentLength"] > 44
    # without a key, audio that fits inline stays inline
    assert "audio_base64" in runner.run_job({"transcript": "Inline.", **SMALL})
