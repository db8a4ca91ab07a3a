"""S3 delivery: upload (multipart when large), presigned GET URLs, and the scope a job may write to.

boto3 with the standard credential chain; ``AWS_ENDPOINT_URL`` for S3-compatible stores (R2, MinIO).
Credentials never appear in errors or logs: boto3's messages are reduced to their error code.

Scope: a job may only name the buckets in ``S3_ALLOWED_BUCKETS`` (default: ``S3_BUCKET`` alone when it is set, and
no bucket at all when neither is: any bucket only with ``S3_ALLOWED_BUCKETS=*``), keys under ``S3_KEY_PREFIX`` when that is set, and never replaces an existing object unless ``S3_OVERWRITE``:
uploads are conditional puts (``If-None-Match: *``), so two jobs racing for one key cannot both win.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
from dataclasses import dataclass

from ..core.errors import RequestError, StorageError
from ..core.settings import Settings

log = logging.getLogger(__name__)

_KEY_CHARS = re.compile(r"[A-Za-z0-9!_.*'()/=+-]+")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
MAX_KEY_LENGTH = 1024


@dataclass(frozen=True)
class Uploaded:
    bucket: str
    key: str
    url: str
    presigned_url: str

    def as_dict(self) -> dict[str, str]:
        return {"bucket": self.bucket, "key": self.key, "url": self.url, "presigned_url": self.presigned_url}


def validate_bucket(bucket: str) -> str:
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise RequestError("s3_bucket", "must be 3-63 lowercase letters, digits, dots or hyphens")
    return bucket


def validate_key(key: str) -> str:
    """Refuse keys that could escape a prefix or confuse tools: no ``..``, no leading ``/``, safe characters."""
    if not key:
        raise RequestError("s3_key", "must not be empty")
    if len(key.encode()) > MAX_KEY_LENGTH:
        raise RequestError("s3_key", f"is longer than {MAX_KEY_LENGTH} bytes")
    if key.startswith("/"):
        raise RequestError("s3_key", "must not start with '/'")
    if any(part in ("..", ".") for part in key.split("/")) or "//" in key:
        raise RequestError("s3_key", "must not contain '..', '.' or empty path segments")
    if not _KEY_CHARS.fullmatch(key):
        raise RequestError("s3_key", "may only contain letters, digits and !_.*'()/=+-")
    return key


def default_key(fmt: str, job_id: str | None = None, prefix: str = "") -> str:
    """``<prefix>higgs-audio/YYYY/MM/DD/<job id or uuid>.<fmt>``."""
    today = dt.datetime.now(dt.UTC).strftime("%Y/%m/%d")
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", job_id) if job_id else uuid.uuid4().hex
    return f"{prefix}higgs-audio/{today}/{name}.{fmt}"


def allowed_buckets(settings: Settings) -> frozenset[str] | None:
    """The buckets jobs may write to; None means any (only ever by ``S3_ALLOWED_BUCKETS=*``)."""
    raw = settings.s3_allowed_buckets
    if raw is None:
        raw = settings.s3_bucket or ""
    names = frozenset(b.strip() for b in raw.split(",") if b.strip())
    return None if "*" in names else names


def check_target(settings: Settings, bucket: str | None, key: str | None) -> None:
    """Refuse, before any work, a bucket or key outside the configured scope (errors name the field)."""
    if bucket is not None:
        validate_bucket(bucket)
        allowed = allowed_buckets(settings)
        if allowed is not None and bucket not in allowed:
            if not allowed:
                raise RequestError("s3_bucket", f"{bucket!r} is not a bucket this worker may write to: it allows no "
                                                "bucket (set S3_BUCKET, or list buckets in S3_ALLOWED_BUCKETS)")
            raise RequestError("s3_bucket", f"{bucket!r} is not a bucket this worker may write to "
                                            "(S3_ALLOWED_BUCKETS)")
    if key is not None:
        validate_key(key)
        prefix = settings.s3_key_prefix
        if prefix and not key.startswith(prefix):
            raise RequestError("s3_key", f"must start with {prefix!r} (S3_KEY_PREFIX)")


def _safe(exc: Exception) -> str:
    """An error message without request details (which may carry signed headers)."""
    code = getattr(exc, "response", {}).get("Error", {}).get("Code") if hasattr(exc, "response") else None
    if code:
        return f"S3 error {code}"
    return f"S3 unreachable ({exc.__class__.__name__})"


class Storage:
    """One S3 client configured from settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client = None

    @property
    def configured(self) -> bool:
        """True when a default bucket is set, so oversized results can be uploaded without asking."""
        return bool(self.settings.s3_bucket)

    def client(self):
        if self._client is None:
            import boto3
            from botocore.config import Config

            s = self.settings
            kwargs = {}
            if s.aws_access_key_id and s.aws_secret_access_key:
                kwargs["aws_access_key_id"] = s.aws_access_key_id.get_secret_value()
                kwargs["aws_secret_access_key"] = s.aws_secret_access_key.get_secret_value()
            self._client = boto3.client(
                "s3", endpoint_url=s.aws_endpoint_url or None, region_name=s.aws_default_region or "us-east-1",
                config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30,
                              signature_version="s3v4"),
                **kwargs,
            )
        return self._client

    def default_key(self, fmt: str, job_id: str | None = None) -> str:
        return default_key(fmt, job_id, self.settings.s3_key_prefix)

    def upload(self, data: bytes, bucket: str, key: str, content_type: str, expires_s: int) -> Uploaded:
        """Store ``data`` (in parts when large) and presign it; a taken key is refused unless ``S3_OVERWRITE``."""
        from botocore.exceptions import BotoCoreError, ClientError

        check_target(self.settings, bucket, key)
        client = self.client()
        condition = {} if self.settings.s3_overwrite else {"IfNoneMatch": "*"}
        try:
            if len(data) <= self.settings.s3_multipart_threshold:
                client.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type, **condition)
            else:
                self._multipart(client, data, bucket, key, content_type, condition)
            presigned = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                                      ExpiresIn=expires_s)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "ConditionalRequestConflict"):
                log.info("upload to s3://%s/%s refused: the key is taken", bucket, key)
                raise RequestError("s3_key", f"an object already exists at s3://{bucket}/{key}; name another key "
                                             "(S3_OVERWRITE is off)") from None
            log.warning("upload to s3://%s/%s failed: %s", bucket, key, _safe(exc))
            raise StorageError(f"upload to s3://{bucket}/{key} failed: {_safe(exc)}") from None
        except BotoCoreError as exc:
            log.warning("upload to s3://%s/%s failed: %s", bucket, key, _safe(exc))
            raise StorageError(f"upload to s3://{bucket}/{key} failed: {_safe(exc)}") from None
        endpoint = client.meta.endpoint_url.rstrip("/")
        return Uploaded(bucket, key, f"{endpoint}/{bucket}/{key}", presigned)

    def _multipart(self, client, data: bytes, bucket: str, key: str, content_type: str,
                   condition: dict[str, str]) -> None:
        """Parts of at least 5 MB (S3's minimum); the condition is checked when the upload completes, and a
        failed upload is aborted so no orphaned parts are billed."""
        size = max(self.settings.s3_multipart_threshold, 5 * 1024 * 1024)
        upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, ContentType=content_type)["UploadId"]
        try:
            parts = []
            for number, start in enumerate(range(0, len(data), size), start=1):
                etag = client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                          Body=data[start:start + size])["ETag"]
                parts.append({"PartNumber": number, "ETag": etag})
            client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                             MultipartUpload={"Parts": parts}, **condition)
        except BaseException:
            try:
                client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            except Exception:  # noqa: BLE001 - the original error is the one to report
                log.warning("aborting the multipart upload of s3://%s/%s failed", bucket, key)
            raise
