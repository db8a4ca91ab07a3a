"""S3 delivery: upload (multipart when large), presigned GET URLs, key validation and the inline-size policy.

boto3 with the standard credential chain; ``AWS_ENDPOINT_URL`` for S3-compatible stores (R2, MinIO).
Credentials never appear in errors or logs: boto3's messages are reduced to their error code.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
from dataclasses import dataclass

from .schema import RequestError
from .settings import Settings

log = logging.getLogger(__name__)

_KEY_CHARS = re.compile(r"^[A-Za-z0-9!_.*'()/=+-]+$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
MAX_KEY_LENGTH = 1024


class StorageError(RuntimeError):
    """The object store refused or could not be reached; the message is safe to show."""


@dataclass(frozen=True)
class Uploaded:
    bucket: str
    key: str
    url: str
    presigned_url: str

    def as_dict(self) -> dict[str, str]:
        return {"bucket": self.bucket, "key": self.key, "url": self.url, "presigned_url": self.presigned_url}


def validate_bucket(bucket: str) -> str:
    if not _BUCKET.match(bucket) or ".." in bucket:
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
    if not _KEY_CHARS.match(key):
        raise RequestError("s3_key", "may only contain letters, digits and !_.*'()/=+-")
    return key


def default_key(fmt: str, job_id: str | None = None, prefix: str = "higgs-audio") -> str:
    """``higgs-audio/YYYY/MM/DD/<job id or uuid>.<fmt>``."""
    today = dt.datetime.now(dt.UTC).strftime("%Y/%m/%d")
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", job_id) if job_id else uuid.uuid4().hex
    return f"{prefix}/{today}/{name}.{fmt}"


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

    def upload(self, data: bytes, bucket: str, key: str, content_type: str, expires_s: int) -> Uploaded:
        import io

        from boto3.s3.transfer import TransferConfig
        from botocore.exceptions import BotoCoreError, ClientError

        bucket, key = validate_bucket(bucket), validate_key(key)
        client = self.client()
        threshold = self.settings.s3_multipart_threshold
        config = TransferConfig(multipart_threshold=threshold, multipart_chunksize=max(threshold, 5 * 1024 * 1024))
        try:
            client.upload_fileobj(io.BytesIO(data), bucket, key, ExtraArgs={"ContentType": content_type},
                                  Config=config)
            presigned = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                                      ExpiresIn=expires_s)
        except (ClientError, BotoCoreError) as exc:
            log.warning("upload to s3://%s/%s failed: %s", bucket, key, _safe(exc))
            raise StorageError(f"upload to s3://{bucket}/{key} failed: {_safe(exc)}") from None
        endpoint = client.meta.endpoint_url.rstrip("/")
        return Uploaded(bucket, key, f"{endpoint}/{bucket}/{key}", presigned)
