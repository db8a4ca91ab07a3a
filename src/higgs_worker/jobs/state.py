"""A job's states and record, the errors stores raise, and what every job store offers (:class:`JobStoreAPI`)."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)

IN_QUEUE = "IN_QUEUE"
IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
CANCELLED = "CANCELLED"
TIMED_OUT = "TIMED_OUT"
FINAL = frozenset({COMPLETED, FAILED, CANCELLED, TIMED_OUT})
#: Final states ``/retry`` may run again; these jobs keep their input until they are forgotten.
RETRYABLE = frozenset({FAILED, TIMED_OUT})

#: Longest error text a finished job keeps (an error may quote a caller's field name).
MAX_ERROR_CHARS = 1000

Work = Callable[["Job", Callable[[Any], None]], dict[str, Any]]


class StoreUnavailable(RuntimeError):
    """The shared job store cannot be reached; job routes answer 503 with this message (speech routes go on)."""


class QueueFull(RuntimeError):
    """No room for another job."""


class StreamStalled(RuntimeError):
    """Nobody read a job's stream while its buffer was full for the stall timeout: the job is stopped."""


class NotRetryable(RuntimeError):
    """``/retry`` on a job that is not FAILED or TIMED_OUT, or whose input was never kept; the message says which."""


@dataclass(eq=False)
class Job:
    id: str
    input: Any  # dropped (None) once the job ends, unless it ends FAILED or TIMED_OUT (kept for /retry)
    status: str = IN_QUEUE
    output: Any = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    stream: list[Any] = field(default_factory=list)  # pieces not yet handed out by /stream
    stream_sent: int = 0
    stream_bytes: int = 0
    last_read: float = field(default_factory=time.monotonic)
    cancel: threading.Event = field(default_factory=threading.Event)
    timed_out: bool = False
    stalled: bool = False
    size: int = 0  # bytes counted against JOB_RETAIN_BYTES once finished
    done: threading.Event = field(default_factory=threading.Event)
    input_size: int = 0  # bytes of the input, counted while a FAILED or TIMED_OUT job keeps it
    timeout_s: float | None = None  # policy.executionTimeout; None: the store's JOB_TIMEOUT_S
    expires: float | None = None  # policy.ttl: forgotten at this time (epoch seconds), whatever its state
    expired: bool = False  # its ttl passed: forgotten, and not kept once it ends
    on_end: Callable[[Job], None] | None = None  # told once each time the job reaches a final state
    retries: int = 0
    worker: str | None = None  # shared stores: the replica that ran it last (RunPod's ``workerId``)
    tenant: str | None = None  # who may see it (a digest of the API key that made it); None: anyone
    progress: dict[str, Any] | None = None  # how far a running job has come (speech.progress.Progress.as_dict)

    def view(self, output: bool = True) -> dict[str, Any]:
        """The job as RunPod's ``/status`` shows it; without ``output``, what is left once the output is set aside
        (a waiting webhook holds that, and reads the output from the store when it is sent)."""
        out: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.started is not None:
            out["delayTime"] = int((self.started - self.created) * 1000)
        if self.ended is not None and self.started is not None:
            out["executionTime"] = int((self.ended - self.started) * 1000)
        if self.status == COMPLETED and output:
            out["output"] = self.output
        elif self.status == IN_PROGRESS and self.progress:
            out["output"] = self.progress  # as RunPod shows a running job's progress updates
        if self.error is not None:
            out["error"] = self.error
        if self.worker is not None:
            out["workerId"] = self.worker
        return out


def visible(job: Job | None, tenant: str | None) -> Job | None:
    """``job`` when ``tenant`` may see it (None sees every job), else None: another tenant's job is unknown."""
    if job is None or tenant is None or job.tenant == tenant:
        return job
    return None


def approx_size(value: Any) -> int:
    """Rough bytes held by a JSON-like value: string and bytes lengths plus a little per container item."""
    if isinstance(value, str | bytes | bytearray):
        return len(value)
    if isinstance(value, dict):
        return 16 + sum(approx_size(k) + approx_size(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return 16 + sum(approx_size(v) for v in value)
    return 8


class JobStoreAPI(Protocol):
    """What the job routes need from a store: :class:`JobStore` (this process) or
    :class:`~.redis_store.RedisJobStore` (shared by replicas).

    ``shared`` stores do network I/O in every call (routes call them off the event loop) and hand out snapshots:
    a snapshot's ``done`` is set only if it was final when read, so waiting means reading again.

    ``tenant`` (a digest of the caller's API key, or None when keys are one tenant) owns the jobs it submits:
    lookups, cancels, retries and purges with another tenant act as if the job did not exist.

    ``report`` is the running job's side: how far it has come, shown as its ``output`` while it is IN_PROGRESS.
    """

    shared: bool
    workers: int

    def submit(self, job_input: Any, *, input_size: int | None = None, timeout_s: float | None = None,
               ttl_s: float | None = None, on_end: Callable[[Job], None] | None = None,
               webhook: str | None = None, tenant: str | None = None) -> Job: ...
    def reject(self, error: str, *, ttl_s: float | None = None, on_end: Callable[[Job], None] | None = None,
               webhook: str | None = None, tenant: str | None = None) -> Job: ...
    def retry(self, job_id: str, tenant: str | None = None) -> Job | None: ...
    def get(self, job_id: str, tenant: str | None = None) -> Job | None: ...
    def cancel(self, job_id: str, tenant: str | None = None) -> Job | None: ...
    def purge_queue(self, tenant: str | None = None) -> int: ...
    def take_stream(self, job: Job) -> list[Any]: ...
    def report(self, job: Job, progress: dict[str, Any]) -> None: ...
    def counts(self) -> dict[str, dict[str, int]]: ...
    def queue_depth(self) -> int: ...
    def retained(self) -> tuple[int, int]: ...
    def shutdown(self, wait: bool = True) -> None: ...


def internal_error(exc: BaseException) -> str:
    ref = uuid.uuid4().hex[:8]
    log.error("job failed (error id %s)", ref, exc_info=exc)
    return f"internal error (error id {ref}; details are in the server log)"


