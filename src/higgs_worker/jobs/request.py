"""A job's input: a speech request plus how its result is delivered (S3 target, streamed pieces)."""

from __future__ import annotations

from pydantic import Field, model_validator

from ..core.errors import RequestError
from ..core.schema import SpeechRequest
from ..core.settings import get_settings
from .storage import check_target


class JobRequest(SpeechRequest):
    """A RunPod-style job input: a speech request plus delivery options."""

    s3_bucket: str | None = Field(None, description="Upload the audio to this bucket and return its URLs.")
    s3_key: str | None = Field(None, description="Object key (default `higgs-audio/YYYY/MM/DD/<job id>.<format>`).")
    stream: bool = Field(False, description="Send the audio as stream pieces while it is generated.")

    @model_validator(mode="after")
    def _key_needs_bucket(self) -> JobRequest:
        settings = get_settings()
        if self.s3_key and not self.s3_bucket and not settings.s3_bucket:
            raise RequestError("s3_key", "needs `s3_bucket` (or S3_BUCKET configured)")
        check_target(settings, self.s3_bucket, self.s3_key)  # refused before any work, naming the field
        if self.s3_key and not self.s3_bucket:
            self.s3_bucket = settings.s3_bucket  # a key asks for an upload, even of audio that would fit inline
        return self
