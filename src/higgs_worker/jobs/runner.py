"""Running one job and delivering its result: the RunPod handler and the HTTP job routes share this.

A job is a :class:`~.request.JobRequest` (a speech request plus delivery options). Its speech comes from the speech
service; its audio goes back inline (base64) when it fits, to S3 with caption and word-time sidecars when asked or
when too large, or as stream pieces while it is generated.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..audio import MEDIA_TYPES
from ..core.errors import Cancelled, RequestError, StorageError, public_error
from ..core.results import SpeechResult
from ..speech import SpeechService
from ..speech.progress import Progress, ProgressSink, Throttled, guarded
from .request import JobRequest
from .storage import Storage

log = logging.getLogger(__name__)


class JobRunner:
    """Jobs in, output dicts out, with one speech service and one (lazily made) S3 client."""

    def __init__(self, service: SpeechService) -> None:
        self.service = service
        self.settings = service.settings
        self._storage: Storage | None = None

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            self._storage = Storage(self.settings)
        return self._storage

    def parse_job(self, job_input: Any) -> JobRequest:
        """Validate a job input before it is queued, so a bad one is refused without being kept."""
        return JobRequest.parse(job_input)

    def run_job(self, job_input: Any, cancel: threading.Event | None = None,
                emit: Callable[[dict[str, Any]], None] | None = None, job_id: str | None = None,
                queued_s: float | None = None,
                progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """A RunPod-style job: input dict (or a parsed :class:`JobRequest`) in, output dict out;
        ``{"error": "..."}`` for anything refused or failed, in words a caller may see (:func:`public_error`).
        ``progress`` hears how far the job has come (:meth:`~higgs_worker.speech.progress.Progress.as_dict`) at
        most every ``PROGRESS_INTERVAL_S`` while it runs (its output says the end).

        :class:`Cancelled`, and any error once ``cancel`` is set, propagate so the caller can record why it stopped.
        """
        try:
            request = job_input if isinstance(job_input, JobRequest) else JobRequest.parse(job_input)
            told = self._progress_sink(progress)
            if request.stream and emit is not None:
                output = self._run_streamed(request, cancel, emit, told)
            else:
                output = self.deliver(self.service.synthesize(request, cancel, told), request, job_id)
        except Cancelled:
            raise
        except Exception as exc:  # noqa: BLE001 - a job answers with an error, never a crash
            if cancel is not None and cancel.is_set():
                raise
            return {"error": public_error(exc, f"job {job_id}" if job_id else "")}
        if queued_s is not None:
            output.setdefault("timings", {})["queue"] = round(queued_s, 4)
        return output

    def _progress_sink(self, progress: Callable[[dict[str, Any]], None] | None) -> ProgressSink | None:
        """``progress`` told at most every ``PROGRESS_INTERVAL_S``, never of the end (the result says it), and
        harmless: a store that fails to take a report never fails the job."""
        if progress is None:
            return None

        def tell(report: Progress) -> None:
            if report.chunks_total is None or report.chunks_done < report.chunks_total:  # the end says itself
                progress(report.as_dict())

        return guarded(Throttled(tell, self.settings.progress_interval_s), log)

    def deliver(self, result: SpeechResult, request: JobRequest, job_id: str | None) -> dict[str, Any]:
        """Inline base64 when it fits, S3 when asked or when too large for inline and a bucket is configured."""
        output = result.metadata()
        bucket = request.s3_bucket or (self.settings.s3_bucket if len(result.audio) > self.settings.max_inline_bytes
                                       else None)
        if bucket:
            key = request.s3_key or self.storage.default_key(result.format, job_id)
            t = time.perf_counter()
            try:
                uploaded = self.storage.upload(result.audio, bucket, key, MEDIA_TYPES[result.format],
                                               self.settings.s3_presign_expiry_s)
            except StorageError as exc:
                if len(result.audio) > self.settings.max_inline_bytes:
                    raise
                output["s3_error"] = str(exc)  # the audio still reaches the caller inline
            else:
                output["s3"] = uploaded.as_dict()
                self._upload_sidecars(result, bucket, key, output)
                output["timings"]["upload"] = round(time.perf_counter() - t, 4)
                return output
        if len(result.audio) > self.settings.max_inline_bytes:
            raise RequestError("s3_bucket", f"the audio is {len(result.audio)} bytes, over the inline limit of "
                                            f"{self.settings.max_inline_bytes} (MAX_INLINE_BYTES); give `s3_bucket` "
                                            "or configure S3_BUCKET")
        output["audio_base64"] = base64.b64encode(result.audio).decode("ascii")
        return output

    def _upload_sidecars(self, result: SpeechResult, bucket: str, key: str, output: dict[str, Any]) -> None:
        """Captions (``KEY.srt`` / ``KEY.vtt``) and word times (``KEY.words.json``) beside the audio object, each
        with a presigned URL; they stay inline in the output too. A failure is reported, the audio stays."""
        base = key.rsplit(".", 1)[0] if "." in key.rsplit("/", 1)[-1] else key
        files: list[tuple[str, str, bytes, str]] = []
        captions = result.extras.get("captions")
        if captions:
            media = "application/x-subrip" if captions["format"] == "srt" else "text/vtt"
            files.append(("captions", f"{base}.{captions['format']}", captions["text"].encode("utf-8"), media))
        if result.extras.get("words") is not None:
            files.append(("words", f"{base}.words.json", json.dumps(result.extras["words"]).encode("utf-8"),
                          "application/json"))
        for name, sidecar_key, data, media in files:
            try:
                uploaded = self.storage.upload(data, bucket, sidecar_key, media, self.settings.s3_presign_expiry_s)
            except (StorageError, RequestError) as exc:
                output.setdefault("s3_sidecar_errors", []).append(f"{name}: {exc}")
            else:
                output["s3"][name] = {"key": uploaded.key, "url": uploaded.url, "presigned_url": uploaded.presigned_url}

    def _run_streamed(self, request: JobRequest, cancel: threading.Event | None,
                      emit: Callable[[dict[str, Any]], None], progress: ProgressSink | None) -> dict[str, Any]:
        """Emit the encoded audio in pieces of at most ``STREAM_CHUNK_BYTES``; return the metadata."""
        stream = self.service.synthesize_stream(request, cancel)
        limit = self.settings.stream_chunk_bytes
        index = 0
        for data in stream.encoded():
            for start in range(0, len(data), limit):
                emit({"chunk_index": index, "format": request.format,
                      "audio_base64": base64.b64encode(data[start:start + limit]).decode("ascii")})
                index += 1
            if progress is not None:
                progress(stream.progress())
        output = stream.metadata()
        output["stream_chunks"] = index
        return output
