"""``storage.py`` without a server: names and scope, the upload paths against a stand-in S3 client that records its
calls, error reduction, and how the boto3 client is built.

``test_storage.py`` drives the same code against moto over HTTP; these are the fast checks that pin the exact
calls, so a mutation run can afford them.
"""

from __future__ import annotations

import datetime as dt
import logging
from types import SimpleNamespace

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from pydantic import SecretStr

from higgs_worker.jobs import storage
from higgs_worker.core.errors import RequestError
from higgs_worker.core.settings import Settings
from higgs_worker.jobs.storage import (MAX_KEY_LENGTH, Storage, Uploaded, allowed_buckets, check_target, default_key,
                                       validate_bucket, validate_key)
from higgs_worker.core.errors import StorageError

MIB = 1024 * 1024


def settings(**values) -> Settings:
    """Settings with S3 values given here and defaults for the rest (the environment is not read)."""
    return Settings.model_construct(**values)


def refused(field: str, call, *args) -> str:
    with pytest.raises(RequestError) as err:
        call(*args)
    assert err.value.field == field
    return err.value.message


# -- names ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bucket", ["abc", "a" * 63, "audio-out", "audio.out", "a1-b2.c3", "0bucket9"])
def test_valid_bucket_names(bucket):
    assert validate_bucket(bucket) == bucket


@pytest.mark.parametrize("bucket", ["ab", "a" * 64, "Audio", "-abc", "abc-", ".abc", "abc.", "a..b", "a_b", "a b",
                                    "", "abc\n"])
def test_invalid_bucket_names(bucket):
    assert refused("s3_bucket", validate_bucket, bucket) == "must be 3-63 lowercase letters, digits, dots or hyphens"


@pytest.mark.parametrize("key", ["a", "a.wav", "dir/sub/file.wav", "x" * MAX_KEY_LENGTH, "a!_.*'()=+-b", "..a/b..",
                                 "a/.b"])
def test_valid_keys(key):
    assert validate_key(key) == key


def test_each_key_rule_says_what_is_wrong():
    assert refused("s3_key", validate_key, "") == "must not be empty"
    assert refused("s3_key", validate_key, "x" * (MAX_KEY_LENGTH + 1)) == f"is longer than {MAX_KEY_LENGTH} bytes"
    assert "longer" in refused("s3_key", validate_key, "é" * (MAX_KEY_LENGTH // 2 + 1))  # bytes, not characters
    assert refused("s3_key", validate_key, "/a") == "must not start with '/'"
    for key in ("..", "a/../b", "a/./b", "./a", "a/.", "a//b"):
        assert refused("s3_key", validate_key, key) == "must not contain '..', '.' or empty path segments", key
    for key in ("a b", "a\nb", "a?b", "a#b", "a%b", "é", "a\\b"):
        assert refused("s3_key", validate_key, key) == "may only contain letters, digits and !_.*'()/=+-", key


def test_default_key(monkeypatch):
    today = dt.datetime.now(dt.UTC).strftime("%Y/%m/%d")
    assert default_key("wav", "job-1") == f"higgs-audio/{today}/job-1.wav"
    assert default_key("mp3", "a b/c?d", "team/") == f"team/higgs-audio/{today}/a-b-c-d.mp3"
    assert default_key("flac", "x_y.z-9") == f"higgs-audio/{today}/x_y.z-9.flac"
    assert default_key("wav", "Job-ABC") == f"higgs-audio/{today}/Job-ABC.wav"
    monkeypatch.setattr(storage.uuid, "uuid4", lambda: SimpleNamespace(hex="f" * 32))
    assert default_key("opus") == f"higgs-audio/{today}/{'f' * 32}.opus"
    assert default_key("opus", "") == f"higgs-audio/{today}/{'f' * 32}.opus"
    assert Storage(settings(s3_key_prefix="p/")).default_key("aac", "j") == f"p/higgs-audio/{today}/j.aac"


def test_the_date_in_a_default_key_is_utc(monkeypatch):
    class Clock(dt.datetime):
        @classmethod
        def now(cls, tz=None):  # 23:30 UTC on 31 December is already 1 January east of it
            utc = dt.datetime(2025, 12, 31, 23, 30, tzinfo=dt.UTC)
            return utc if tz is dt.UTC else utc.astimezone(dt.timezone(dt.timedelta(hours=10)))

    monkeypatch.setattr(storage.dt, "datetime", Clock)
    assert default_key("wav", "j") == "higgs-audio/2025/12/31/j.wav"


# -- scope ------------------------------------------------------------------------------------------------------

def test_allowed_buckets():
    assert allowed_buckets(settings()) == frozenset()  # nothing configured: no bucket a job may name
    assert allowed_buckets(settings(s3_allowed_buckets="*")) is None  # any bucket only when opened explicitly
    assert allowed_buckets(settings(s3_bucket="audio-out")) == {"audio-out"}
    assert allowed_buckets(settings(s3_bucket="audio-out", s3_allowed_buckets=" a-one , b-two,, ")) == {"a-one", "b-two"}
    assert allowed_buckets(settings(s3_allowed_buckets="a-one,*")) is None
    assert allowed_buckets(settings(s3_bucket="audio-out", s3_allowed_buckets="")) == frozenset()


def test_check_target():
    scoped = settings(s3_bucket="audio-out", s3_key_prefix="tenant/")
    check_target(scoped, "audio-out", "tenant/a.wav")
    check_target(scoped, None, None)
    message = refused("s3_bucket", check_target, scoped, "elsewhere", None)
    assert message == "'elsewhere' is not a bucket this worker may write to (S3_ALLOWED_BUCKETS)"
    assert refused("s3_key", check_target, scoped, None, "other/a.wav") == "must start with 'tenant/' (S3_KEY_PREFIX)"
    assert "3-63" in refused("s3_bucket", check_target, scoped, "Bad", "tenant/a.wav")  # validated before scope
    assert "'..'" in refused("s3_key", check_target, scoped, None, "tenant/../a.wav")
    check_target(settings(s3_allowed_buckets="*"), "any-bucket", "any/key.wav")  # opened explicitly
    check_target(settings(), None, "any/key.wav")  # a key alone is no bucket
    unset = refused("s3_bucket", check_target, settings(), "victim-bucket", "planted/evil.wav")
    assert unset == ("'victim-bucket' is not a bucket this worker may write to: it allows no bucket (set S3_BUCKET, "
                     "or list buckets in S3_ALLOWED_BUCKETS)")


# -- uploads ----------------------------------------------------------------------------------------------------

class StandInS3:
    """Records every call; ``fail`` maps a method name to the exception it raises."""

    def __init__(self, endpoint: str = "http://s3.test:9000/", fail: dict | None = None) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.fail = fail or {}
        self.meta = SimpleNamespace(endpoint_url=endpoint)

    def _call(self, name: str, **kwargs):
        if len(self.calls) > 50:  # a runaway loop fails at once instead of filling memory with part copies
            raise AssertionError(f"more than 50 calls to the store, the last {name}")
        self.calls.append((name, kwargs))
        if name in self.fail:
            raise self.fail[name]

    def put_object(self, **kw):
        self._call("put_object", **kw)

    def create_multipart_upload(self, **kw):
        self._call("create_multipart_upload", **kw)
        return {"UploadId": "up-1"}

    def upload_part(self, **kw):
        self._call("upload_part", **kw)
        return {"ETag": f"etag-{kw['PartNumber']}"}

    def complete_multipart_upload(self, **kw):
        self._call("complete_multipart_upload", **kw)

    def abort_multipart_upload(self, **kw):
        self._call("abort_multipart_upload", **kw)

    def generate_presigned_url(self, operation, Params, ExpiresIn):  # noqa: N803 - boto3's names
        self._call("generate_presigned_url", operation=operation, Params=Params, ExpiresIn=ExpiresIn)
        return f"signed:{Params['Bucket']}/{Params['Key']}?{ExpiresIn}"

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]


def storage_with(client: StandInS3, **values) -> Storage:
    # Any bucket, unless a test scopes it: with nothing configured no bucket is allowed at all.
    store = Storage(settings(**{"s3_multipart_threshold": 8 * MIB, "s3_overwrite": False, "s3_allowed_buckets": "*",
                                **values}))
    store._client = client
    return store


def client_error(code: str | None, operation: str = "PutObject") -> ClientError:
    error = {"Code": code, "Message": "details with X-Amz-Signature=abc"} if code else {}
    return ClientError({"Error": error}, operation)


def test_a_small_upload_is_one_conditional_put_then_a_presigned_url():
    client = StandInS3()
    got = storage_with(client).upload(b"abc", "audio-out", "a/b.wav", "audio/wav", 900)
    assert client.calls[0] == ("put_object", {"Bucket": "audio-out", "Key": "a/b.wav", "Body": b"abc",
                                              "ContentType": "audio/wav", "IfNoneMatch": "*"})
    assert client.calls[1] == ("generate_presigned_url", {"operation": "get_object", "ExpiresIn": 900,
                                                          "Params": {"Bucket": "audio-out", "Key": "a/b.wav"}})
    assert len(client.calls) == 2
    assert got == Uploaded("audio-out", "a/b.wav", "http://s3.test:9000/audio-out/a/b.wav",
                           "signed:audio-out/a/b.wav?900")
    assert got.as_dict() == {"bucket": "audio-out", "key": "a/b.wav", "url": "http://s3.test:9000/audio-out/a/b.wav",
                             "presigned_url": "signed:audio-out/a/b.wav?900"}


def test_the_object_url_is_the_endpoint_without_its_trailing_slash():
    for endpoint in ("https://acct.r2.test", "https://acct.r2.test/", "https://minio.test/tenantX/"):
        got = storage_with(StandInS3(endpoint=endpoint)).upload(b"a", "audio-out", "k.wav", "audio/wav", 60)
        assert got.url == endpoint.rstrip("/") + "/audio-out/k.wav"


def test_overwrite_drops_the_condition():
    client = StandInS3()
    storage_with(client, s3_overwrite=True).upload(b"abc", "audio-out", "k.wav", "audio/wav", 60)
    assert "IfNoneMatch" not in client.calls[0][1]


def test_up_to_the_threshold_is_one_put_and_above_it_multipart():
    client = StandInS3()
    store = storage_with(client, s3_multipart_threshold=5 * MIB)
    store.upload(b"x" * (5 * MIB), "audio-out", "k.wav", "audio/wav", 60)
    assert client.names() == ["put_object", "generate_presigned_url"]
    client.calls.clear()
    data = bytes(range(256)) * (40 * 1024 + 1)  # 10 MiB and 256 bytes: two full parts and a short one
    store.upload(data, "audio-out", "k.wav", "audio/wav", 60)
    assert client.names() == ["create_multipart_upload", "upload_part", "upload_part", "upload_part",
                              "complete_multipart_upload", "generate_presigned_url"]
    assert client.calls[0][1] == {"Bucket": "audio-out", "Key": "k.wav", "ContentType": "audio/wav"}
    parts = [kw for name, kw in client.calls if name == "upload_part"]
    assert [p["PartNumber"] for p in parts] == [1, 2, 3]
    assert [len(p["Body"]) for p in parts] == [5 * MIB, 5 * MIB, 256]
    assert b"".join(p["Body"] for p in parts) == data
    assert all(p["UploadId"] == "up-1" and p["Bucket"] == "audio-out" and p["Key"] == "k.wav" for p in parts)
    assert client.calls[4][1] == {"Bucket": "audio-out", "Key": "k.wav", "UploadId": "up-1", "IfNoneMatch": "*",
                                  "MultipartUpload": {"Parts": [{"PartNumber": n, "ETag": f"etag-{n}"}
                                                                for n in (1, 2, 3)]}}


def test_parts_are_at_least_five_mebibytes_and_follow_a_larger_threshold():
    client = StandInS3()
    storage_with(client, s3_multipart_threshold=1000).upload(b"y" * (6 * MIB), "b-1", "k", "audio/wav", 60)
    assert [len(kw["Body"]) for name, kw in client.calls if name == "upload_part"] == [5 * MIB, MIB]
    client = StandInS3()
    storage_with(client, s3_multipart_threshold=6 * MIB, s3_overwrite=True).upload(b"y" * (13 * MIB), "b-1", "k",
                                                                                   "audio/wav", 60)
    assert [len(kw["Body"]) for name, kw in client.calls if name == "upload_part"] == [6 * MIB, 6 * MIB, MIB]
    assert "IfNoneMatch" not in client.calls[-2][1]


@pytest.mark.parametrize("code", ["PreconditionFailed", "ConditionalRequestConflict"])
def test_a_taken_key_is_a_request_error(code, caplog):
    client = StandInS3(fail={"put_object": client_error(code)})
    with caplog.at_level(logging.INFO, logger="higgs_worker.jobs.storage"):
        message = refused("s3_key", storage_with(client).upload, b"a", "audio-out", "k.wav", "audio/wav", 60)
    assert message == "an object already exists at s3://audio-out/k.wav; name another key (S3_OVERWRITE is off)"
    assert client.names() == ["put_object"]
    assert [r.getMessage() for r in caplog.records] == ["upload to s3://audio-out/k.wav refused: the key is taken"]


def test_a_failed_multipart_upload_is_aborted_and_reported():
    client = StandInS3(fail={"upload_part": client_error("SlowDown", "UploadPart")})
    with pytest.raises(StorageError) as err:
        storage_with(client).upload(b"z" * (9 * MIB), "audio-out", "k.wav", "audio/wav", 60)
    assert str(err.value) == "upload to s3://audio-out/k.wav failed: S3 error SlowDown"
    assert client.names() == ["create_multipart_upload", "upload_part", "abort_multipart_upload"]
    assert client.calls[-1][1] == {"Bucket": "audio-out", "Key": "k.wav", "UploadId": "up-1"}


def test_a_failed_abort_does_not_hide_the_first_error(caplog):
    client = StandInS3(fail={"complete_multipart_upload": client_error("PreconditionFailed", "Complete"),
                             "abort_multipart_upload": client_error("NoSuchUpload", "Abort")})
    with caplog.at_level(logging.WARNING, logger="higgs_worker.jobs.storage"):
        refused("s3_key", storage_with(client).upload, b"z" * (9 * MIB), "audio-out", "k.wav", "audio/wav", 60)
    assert [r.getMessage() for r in caplog.records] == ["aborting the multipart upload of s3://audio-out/k.wav failed"]
    interrupted = StandInS3(fail={"upload_part": KeyboardInterrupt()})
    with pytest.raises(KeyboardInterrupt):  # even an interrupt leaves no parts behind
        storage_with(interrupted).upload(b"z" * (9 * MIB), "audio-out", "k.wav", "audio/wav", 60)
    assert interrupted.names()[-1] == "abort_multipart_upload"


def test_errors_name_only_the_code_or_the_kind(caplog):
    cases = [(client_error("AccessDenied"), "S3 error AccessDenied"),
             (client_error(None), "S3 unreachable (ClientError)"),
             (ClientError({}, "PutObject"), "S3 unreachable (ClientError)"),  # no Error part at all
             (EndpointConnectionError(endpoint_url="http://s3.test"), "S3 unreachable (EndpointConnectionError)")]
    for exc, reason in cases:
        client = StandInS3(fail={"put_object": exc})
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="higgs_worker.jobs.storage"), pytest.raises(StorageError) as err:
            storage_with(client).upload(b"a", "audio-out", "k.wav", "audio/wav", 60)
        assert str(err.value) == f"upload to s3://audio-out/k.wav failed: {reason}"
        assert [r.getMessage() for r in caplog.records] == [f"upload to s3://audio-out/k.wav failed: {reason}"]
        assert "Signature" not in str(err.value) and "Signature" not in caplog.text
    assert storage._safe(ValueError("x")) == "S3 unreachable (ValueError)"


def test_presigning_failure_is_reported_too():
    client = StandInS3(fail={"generate_presigned_url": client_error("InvalidAccessKeyId")})
    with pytest.raises(StorageError, match="S3 error InvalidAccessKeyId"):
        storage_with(client).upload(b"a", "audio-out", "k.wav", "audio/wav", 60)


def test_scope_is_checked_before_the_store_is_touched():
    client = StandInS3()
    store = storage_with(client, s3_bucket="audio-out", s3_allowed_buckets=None, s3_key_prefix="tenant/")
    refused("s3_bucket", store.upload, b"a", "elsewhere", "tenant/k.wav", "audio/wav", 60)
    refused("s3_key", store.upload, b"a", "audio-out", "k.wav", "audio/wav", 60)
    assert client.calls == []


# -- the client -------------------------------------------------------------------------------------------------

def test_the_boto3_client_is_built_once_from_settings(monkeypatch):
    import boto3

    made = []
    monkeypatch.setattr(boto3, "client", lambda *args, **kwargs: made.append((args, kwargs)) or object())
    full = Storage(settings(aws_endpoint_url="http://minio.test:9000", aws_default_region="eu-west-1",
                            aws_access_key_id=SecretStr("AKIA-TEST"), aws_secret_access_key=SecretStr("s3cr3t")))
    first = full.client()
    assert full.client() is first and len(made) == 1
    (args, kwargs), = made
    assert args == ("s3",)
    assert kwargs["endpoint_url"] == "http://minio.test:9000" and kwargs["region_name"] == "eu-west-1"
    assert kwargs["aws_access_key_id"] == "AKIA-TEST" and kwargs["aws_secret_access_key"] == "s3cr3t"
    config = kwargs["config"]
    assert config.retries == {"max_attempts": 3, "mode": "standard"}
    assert (config.connect_timeout, config.read_timeout, config.signature_version) == (5, 30, "s3v4")

    made.clear()
    Storage(settings(aws_endpoint_url="", aws_access_key_id=SecretStr("only-the-id"))).client()
    (_, kwargs), = made
    assert kwargs["endpoint_url"] is None and kwargs["region_name"] == "us-east-1"  # AWS, default region
    assert "aws_access_key_id" not in kwargs and "aws_secret_access_key" not in kwargs  # the standard chain


def test_configured_means_a_default_bucket():
    assert Storage(settings(s3_bucket="audio-out")).configured is True
    assert Storage(settings()).configured is False
    assert Storage(settings(s3_bucket="")).configured is False

