"""S3 delivery against moto over HTTP, and the inline-size policy of the job runner."""

from __future__ import annotations

import base64
import re

import httpx
import pytest

from conftest import S3_ENV
from higgs_worker.core.errors import RequestError
from higgs_worker.jobs.runner import JobRunner
from higgs_worker.jobs.storage import Storage, check_target, default_key, validate_key
from higgs_worker.core.errors import StorageError

SMALL = {"max_new_tokens": 30, "seed": 2}


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs/key.wav", "a//b.wav", "a/./b.wav", "sp ace.wav", "x" * 1100])
def test_bad_keys_refused(key):
    with pytest.raises(RequestError) as err:
        validate_key(key)
    assert err.value.field == "s3_key"


def test_default_key_scheme():
    key = default_key("mp3", "job/../1")
    assert re.fullmatch(r"higgs-audio/\d{4}/\d{2}/\d{2}/job-\.\.-1\.mp3", key)
    validate_key(key)
    assert default_key("wav", "j", "tenant-a/").startswith("tenant-a/higgs-audio/")


@pytest.mark.parametrize(("bucket", "key", "field"), [("audio-out\n", None, "s3_bucket"), (None, "a.wav\n", "s3_key"),
                                                      ("Audio-Out", None, "s3_bucket")])
def test_names_are_matched_whole(env, bucket, key, field):
    from higgs_worker.core.settings import get_settings

    with pytest.raises(RequestError) as err:
        check_target(get_settings(), bucket, key)
    assert err.value.field == field


@pytest.mark.parametrize(("allowed", "default", "bucket", "ok"), [
    (None, None, "victim-bucket", False),        # nothing configured: no bucket a request names
    ("*", None, "anything", True),               # any bucket only when a setting opens it
    (None, "audio-out", "audio-out", True),      # S3_BUCKET alone by default when it is set
    (None, "audio-out", "elsewhere", False),
    ("a-one, b-two", "audio-out", "b-two", True),
    ("a-one,b-two", None, "audio-out", False),
    ("*", "audio-out", "elsewhere", True),
])
def test_allowed_buckets(env, allowed, default, bucket, ok):
    from higgs_worker.core.settings import get_settings

    values = {"S3_BUCKET": default} if default else {}
    if allowed is not None:
        values["S3_ALLOWED_BUCKETS"] = allowed
    env(**values)
    if ok:
        check_target(get_settings(), bucket, None)
    else:
        with pytest.raises(RequestError) as err:
            check_target(get_settings(), bucket, None)
        assert err.value.field == "s3_bucket" and "S3_ALLOWED_BUCKETS" in err.value.message


@pytest.fixture()
def s3_runner(service, s3, monkeypatch):
    for k, v in s3.env().items():
        monkeypatch.setenv(k, v)
    # no bucket is allowed unless configured
    return s3.job_runner(service, s3_allowed_buckets="audio-out,no-such-bucket")


def test_upload_and_presigned_url(s3_runner, s3):
    inline = s3_runner.run_job({"transcript": "Stored.", **SMALL})
    out = s3_runner.run_job({"transcript": "Stored.", "s3_bucket": "audio-out", **SMALL}, job_id="job-7")
    assert out["s3"]["key"].endswith("/job-7.wav") and "audio_base64" not in out
    body = s3.client().get_object(Bucket="audio-out", Key=out["s3"]["key"])
    assert body["ContentType"] == "audio/wav"
    data = body["Body"].read()
    assert data == base64.b64decode(inline["audio_base64"])
    assert httpx.get(out["s3"]["presigned_url"]).content == data


def test_multipart_upload_of_a_large_object(s3_runner, s3):
    storage = s3_runner.storage
    storage.settings.s3_multipart_threshold = 5 * 1024 * 1024
    data = bytes(range(256)) * (6 * 1024 * 1024 // 256)
    up = storage.upload(data, "audio-out", "big/object.bin", "application/octet-stream", 600)
    head = s3.client().head_object(Bucket="audio-out", Key="big/object.bin")
    assert head["ContentLength"] == len(data) and "-" in head["ETag"]  # a multipart ETag ends in -<parts>
    assert up.key == "big/object.bin"


def test_oversized_result_without_a_bucket_is_a_clear_error(service):
    service.settings.max_inline_bytes = 1024
    out = JobRunner(service).run_job({"transcript": "Too big to return inline.", **SMALL})
    assert "MAX_INLINE_BYTES" in out["error"] and "s3_bucket" in out["error"]


def test_s3_down_keeps_the_audio_inline_and_hides_secrets(s3_runner, s3):
    s3_runner.settings.aws_endpoint_url = "http://127.0.0.1:9"  # nothing listens here
    s3_runner._storage = Storage(s3_runner.settings)
    out = s3_runner.run_job({"transcript": "Still delivered.", "s3_bucket": "audio-out", **SMALL})
    assert out["audio_base64"] and "S3 unreachable" in out["s3_error"]
    assert S3_ENV["AWS_SECRET_ACCESS_KEY"] not in str(out) and S3_ENV["AWS_ACCESS_KEY_ID"] not in str(out)


def test_missing_bucket_is_reported(s3_runner):
    s3_runner.settings.max_inline_bytes = 1024
    out = s3_runner.run_job({"transcript": "Nowhere.", "s3_bucket": "no-such-bucket", **SMALL})
    assert "NoSuchBucket" in out["error"]
    with pytest.raises(StorageError):
        s3_runner.storage.upload(b"x", "no-such-bucket", "k", "audio/wav", 60)


def test_s3_stopped_mid_service(service, monkeypatch):
    """moto itself goes away: the job still delivers its audio inline, with the storage error beside it."""
    from conftest import S3Server

    server = S3Server()
    server.start()
    server.client().create_bucket(Bucket="audio-out")
    runner = server.job_runner(service, s3_allowed_buckets="audio-out")
    first = runner.run_job({"transcript": "Before.", "s3_bucket": "audio-out", **SMALL})
    assert "s3" in first
    server.stop()
    after = runner.run_job({"transcript": "After.", "s3_bucket": "audio-out", **SMALL})
    assert after["audio_base64"] and "S3 unreachable" in after["s3_error"]


def test_refused_bucket_and_prefix_fail_before_generation(s3_runner, s3, monkeypatch):
    settings = s3_runner.settings
    settings.s3_bucket, settings.s3_key_prefix = "audio-out", "tenant-a/"
    generated = []
    monkeypatch.setattr(s3_runner.service, "synthesize", lambda *a, **k: generated.append(1))
    out = s3_runner.run_job({"transcript": "x", "s3_bucket": "other-bucket", **SMALL})
    assert "s3_bucket" in out["error"] and "S3_ALLOWED_BUCKETS" in out["error"]
    out = s3_runner.run_job({"transcript": "x", "s3_bucket": "audio-out", "s3_key": "tenant-b/x.wav", **SMALL})
    assert "s3_key" in out["error"] and "tenant-a/" in out["error"]
    assert generated == []


def test_a_bucket_named_by_a_job_is_refused_when_no_bucket_is_configured(s3_runner, s3):
    """The probe: with neither S3_BUCKET nor S3_ALLOWED_BUCKETS set, a job wrote s3://victim-bucket/planted/evil.wav.
    Now it is refused before any work, and only an explicit `S3_ALLOWED_BUCKETS=*` opens every bucket."""
    s3.client().create_bucket(Bucket="victim-bucket")
    settings = s3_runner.settings
    settings.s3_bucket = settings.s3_allowed_buckets = None
    job = {"transcript": "Planted.", "s3_bucket": "victim-bucket", "s3_key": "planted/evil.wav", **SMALL}
    out = s3_runner.run_job(job)
    assert out["error"].startswith("s3_bucket: 'victim-bucket' is not a bucket this worker may write to: it allows "
                                   "no bucket (set S3_BUCKET, or list buckets in S3_ALLOWED_BUCKETS)")
    assert s3.client().list_objects_v2(Bucket="victim-bucket")["KeyCount"] == 0
    settings.s3_allowed_buckets = "*"
    assert s3_runner.run_job(job)["s3"]["key"] == "planted/evil.wav"


def test_default_key_goes_under_the_prefix(s3_runner, s3):
    s3_runner.settings.s3_key_prefix = "tenant-a/"
    out = s3_runner.run_job({"transcript": "Prefixed.", "s3_bucket": "audio-out", **SMALL}, job_id="job-p")
    assert out["s3"]["key"].startswith("tenant-a/higgs-audio/") and out["s3"]["key"].endswith("/job-p.wav")


@pytest.mark.parametrize("size", [1000, 6 * 1024 * 1024])  # a single put, and a multipart upload
def test_an_existing_object_is_never_replaced_unless_allowed(s3_runner, s3, size):
    storage = s3_runner.storage
    storage.settings.s3_multipart_threshold = 5 * 1024 * 1024
    key = f"keep/{size}.bin"
    storage.upload(b"a" * size, "audio-out", key, "application/octet-stream", 60)
    with pytest.raises(RequestError) as err:
        storage.upload(b"b" * size, "audio-out", key, "application/octet-stream", 60)
    assert err.value.field == "s3_key" and "S3_OVERWRITE" in err.value.message
    assert s3.client().get_object(Bucket="audio-out", Key=key)["Body"].read(1) == b"a"
    assert s3.client().list_multipart_uploads(Bucket="audio-out").get("Uploads", []) == []  # none left behind
    storage.settings.s3_overwrite = True
    storage.upload(b"c" * size, "audio-out", key, "application/octet-stream", 60)
    assert s3.client().get_object(Bucket="audio-out", Key=key)["Body"].read(1) == b"c"


def test_s3_scope_on_the_real_server(tiny_model_dir, s3, tmp_path):
    """Through /runsync of the server in a subprocess, with moto over HTTP: scope refusals are job errors."""
    from servers import Server

    srv = Server({"MODEL_PATH": str(tiny_model_dir / "model"), "TOKENIZER_PATH": str(tiny_model_dir / "tokenizer"),
                  "VOLUME_ROOT": str(tmp_path / "vol"), "LOG_DIR": str(tmp_path / "logs"), **s3.env(),
                  "S3_BUCKET": "audio-out", "S3_KEY_PREFIX": "scoped/"}, tmp_path)
    try:
        srv.wait_ready()

        def runsync(**job):
            return httpx.post(f"{srv.url}/runsync", json={"input": {"transcript": "Scoped.", **SMALL, **job}},
                              timeout=120).json()

        refused = runsync(s3_bucket="someone-elses")
        assert refused["status"] == "FAILED" and "s3_bucket" in refused["error"]
        assert runsync(s3_bucket="audio-out", s3_key="outside/x.wav")["status"] == "FAILED"
        first = runsync(s3_bucket="audio-out", s3_key="scoped/x.wav")
        assert first["status"] == "COMPLETED" and first["output"]["s3"]["key"] == "scoped/x.wav"
        again = runsync(s3_bucket="audio-out", s3_key="scoped/x.wav")
        assert again["status"] == "FAILED" and "s3_key" in again["error"] and "already exists" in again["error"]
    finally:
        srv.stop()
    assert S3_ENV["AWS_SECRET_ACCESS_KEY"] not in srv.output()
