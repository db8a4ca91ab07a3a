"""The job stores behind ``/run``, ``/runsync``, ``/status``, ``/stream``, ``/cancel`` and ``/purge-queue``.

:class:`JobStore` keeps jobs in this process (``JOB_STORE=memory``); :mod:`.redis_store` shares them
between replicas through Redis; both follow :class:`JobStoreAPI`. In memory, like a RunPod worker's own view: every accepted job reaches a final state (COMPLETED, FAILED,
CANCELLED or TIMED_OUT). Jobs run on a thread pool; the work function gets the job (input, cancel event, id) and a
callback for stream pieces. A job may carry RunPod's policy (its own execution timeout, and a ``ttl`` counted from
submission after which it is forgotten whatever its state) and a callback told once it ends (webhooks).

Memory stays bounded whatever callers send: a job's input is dropped the moment it ends, except for FAILED and
TIMED_OUT jobs, which keep it (counted in the byte total) so ``/retry`` can run them again; finished jobs are kept
for ``JOB_RETENTION_S`` (or less, when their ``ttl`` ends first) but at most ``JOB_RETAIN_MAX`` of them and
``JOB_RETAIN_BYTES`` of their outputs, errors and kept inputs, the oldest forgotten first. Jobs refused before
queueing (bad input) keep only their error, apart from those slots (at most ``JOB_RETAIN_MAX`` of them, the oldest
forgotten first), so a flood of bad jobs never pushes out another caller's result. Stream pieces are dropped
once ``/stream`` has handed them out, and at most ``STREAM_BUFFER_PIECES`` wait unread (the job pauses, and is
stopped when nobody reads for ``STREAM_STALL_TIMEOUT_S``). Finished jobs are tracked in finish order with a running
byte total, and jobs with a ``ttl`` in a heap by expiry, so pruning touches only the jobs it forgets.

A job belongs to the tenant that submitted it (see :class:`~.state.JobStoreAPI`).
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .state import (CANCELLED, COMPLETED, FAILED, FINAL, IN_PROGRESS, IN_QUEUE, MAX_ERROR_CHARS, RETRYABLE, TIMED_OUT,
                    Job, NotRetryable, QueueFull, StreamStalled, Work, approx_size, internal_error, visible)

log = logging.getLogger(__name__)


class JobStore:
    """Accepts jobs, runs them on ``workers`` threads, keeps finished ones within time, count and byte limits."""

    shared = False  # one process's memory: lookups are local and jobs are the live objects

    def __init__(self, work: Work, workers: int, retention_s: float, timeout_s: float,
                 on_change: Callable[[], None] | None = None, max_open: int = 1_000_000,
                 retain_max: int = 1000, retain_bytes: int = 256 * 1024 * 1024, stream_buffer: int = 16,
                 stall_s: float = 30.0, describe_error: Callable[[BaseException], str] = internal_error) -> None:
        self.max_open = max_open
        self._work = work
        self._jobs: dict[str, Job] = {}
        self._open: dict[str, Job] = {}  # queued or running
        self._finished: OrderedDict[str, Job] = OrderedDict()  # in finish order, oldest first
        self._finished_bytes = 0
        self._refused: OrderedDict[str, Job] = OrderedDict()  # refused before queueing, oldest first
        self._cond = threading.Condition()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job")
        self.workers = workers
        self.retention_s = retention_s
        self.timeout_s = timeout_s
        self.retain_max = retain_max
        self.retain_bytes = retain_bytes
        self.stream_buffer = stream_buffer
        self.stall_s = stall_s
        self._describe_error = describe_error
        self._expiries: list[tuple[float, str]] = []  # (expiry, job id) of jobs with a ttl, soonest first
        self.completed = 0
        self.failed = 0
        self.retried = 0
        self._running = 0
        self._accepting = True
        self._on_change = on_change or (lambda: None)

    # -- intake ---------------------------------------------------------------------------------------------

    def submit(self, job_input: Any, *, input_size: int | None = None, timeout_s: float | None = None,
               ttl_s: float | None = None, on_end: Callable[[Job], None] | None = None,
               webhook: str | None = None, tenant: str | None = None) -> Job:
        """Queue a job whose input has already been validated.

        ``timeout_s`` replaces the store's timeout for this job; ``ttl_s`` forgets it that long after now, whatever
        its state (a queued job never runs, a running one is stopped); ``on_end`` is told each time it ends.
        """
        if not self._accepting:
            raise RuntimeError("the worker is shutting down and takes no new jobs")
        job = self._new(job_input, ttl_s, on_end, tenant)
        job.input_size = approx_size(job_input) if input_size is None else input_size
        job.timeout_s = timeout_s
        with self._cond:
            self._prune()
            if len(self._open) >= self.max_open:
                raise QueueFull(f"{len(self._open)} jobs are queued or running; the limit is {self.max_open} "
                                "(MAX_CONCURRENT_JOBS)")
            self._add(job)
            self._open[job.id] = job
        self._pool.submit(self._run, job)
        self._on_change()
        return job

    def reject(self, error: str, *, ttl_s: float | None = None, on_end: Callable[[Job], None] | None = None,
               webhook: str | None = None, tenant: str | None = None) -> Job:
        """Record a job refused before queueing (bad input): FAILED at once with ``error``, no input kept, and
        kept apart from the finished jobs' retention slots."""
        job = self._new(None, ttl_s, on_end, tenant)
        with self._cond:
            self._prune()
            self._add(job)
            self._finish(job, FAILED, error=error, refused=True)
        self._on_change()
        return job

    def retry(self, job_id: str, tenant: str | None = None) -> Job | None:
        """Queue a FAILED or TIMED_OUT job again, same id, with the input it kept (RunPod's ``/retry``).

        None for an unknown (or forgotten) job; :class:`NotRetryable` when it is in another state or kept no input;
        :class:`QueueFull` when the queue is full. Its policy and ``on_end`` stay; its ``ttl`` still counts from
        the first submission.
        """
        if not self._accepting:
            raise RuntimeError("the worker is shutting down and takes no new jobs")
        with self._cond:
            self._prune()
            job = visible(self._jobs.get(job_id), tenant)
            if job is None:
                return None
            if job.status not in RETRYABLE:
                raise NotRetryable(f"job {job_id!r} is {job.status}; only FAILED or TIMED_OUT jobs can be retried")
            if job.input is None:
                raise NotRetryable(f"job {job_id!r} was refused before it was queued (its input was not valid) and "
                                   "kept no input; correct the input and submit a new job")
            if len(self._open) >= self.max_open:
                raise QueueFull(f"{len(self._open)} jobs are queued or running; the limit is {self.max_open} "
                                "(MAX_CONCURRENT_JOBS)")
            self._finished.pop(job.id, None)
            self._finished_bytes -= job.size
            job.size = 0
            job.status, job.output, job.error = IN_QUEUE, None, None
            job.started = job.ended = None
            job.stream, job.stream_bytes, job.stream_sent = [], 0, 0
            job.cancel, job.done = threading.Event(), threading.Event()
            job.timed_out = job.stalled = False
            job.last_read = time.monotonic()
            job.retries += 1
            self.retried += 1
            self._open[job.id] = job
        self._pool.submit(self._run, job)
        self._on_change()
        return job

    def _new(self, job_input: Any, ttl_s: float | None, on_end: Callable[[Job], None] | None,
             tenant: str | None) -> Job:
        job = Job(id=f"local-{uuid.uuid4()}", input=job_input, on_end=on_end, tenant=tenant)
        if ttl_s is not None:
            job.expires = job.created + ttl_s
        return job

    def _add(self, job: Job) -> None:
        """Make ``job`` known (caller holds the lock); a job with a ttl joins the expiry heap."""
        self._jobs[job.id] = job
        if job.expires is not None:
            heapq.heappush(self._expiries, (job.expires, job.id))

    def get(self, job_id: str, tenant: str | None = None) -> Job | None:
        with self._cond:
            self._prune()
            return visible(self._jobs.get(job_id), tenant)

    def cancel(self, job_id: str, tenant: str | None = None) -> Job | None:
        job = self.get(job_id, tenant)
        if job is None:
            return None
        job.cancel.set()
        with self._cond:
            if job.status == IN_QUEUE:
                self._finish(job, CANCELLED)
            self._cond.notify_all()  # a job paused on a full stream buffer sees the cancel at once
        return job

    def purge_queue(self, tenant: str | None = None) -> int:
        """Cancel every job of ``tenant`` (None: of anyone) not yet started; returns how many."""
        with self._cond:
            queued = [j for j in self._open.values() if j.status == IN_QUEUE and visible(j, tenant)]
            for job in queued:
                job.cancel.set()
                self._finish(job, CANCELLED)
        if queued:
            self._on_change()
        return len(queued)

    def take_stream(self, job: Job) -> list[Any]:
        """Stream pieces not yet handed out; each piece is given once and then forgotten."""
        with self._cond:
            pieces, job.stream = job.stream, []
            freed, job.stream_bytes = job.stream_bytes, 0
            job.stream_sent += len(pieces)
            job.last_read = time.monotonic()
            if job.id in self._finished:
                job.size -= freed
                self._finished_bytes -= freed
            self._cond.notify_all()
        return pieces

    # -- counts ---------------------------------------------------------------------------------------------

    def counts(self) -> dict[str, dict[str, int]]:
        with self._cond:
            self._prune()
            running = self._running
            queued = len(self._open) - running
            return {
                "jobs": {"completed": self.completed, "failed": self.failed, "inProgress": running,
                         "inQueue": queued, "retried": self.retried},
                "workers": {"idle": max(0, self.workers - running), "running": running},
            }

    def queue_depth(self) -> int:
        return self.counts()["jobs"]["inQueue"]

    def retained(self) -> tuple[int, int]:
        """Finished jobs kept, and the bytes counted for them."""
        with self._cond:
            self._prune()
            return len(self._finished), self._finished_bytes

    # -- lifecycle ------------------------------------------------------------------------------------------

    def shutdown(self, wait: bool = True) -> None:
        """Stop taking jobs; cancel queued ones; let running ones end (they reach a final state)."""
        self._accepting = False
        self.purge_queue()
        self._pool.shutdown(wait=wait, cancel_futures=False)

    def _run(self, job: Job) -> None:
        with self._cond:
            if job.status != IN_QUEUE:
                return
            job.status = IN_PROGRESS
            job.started = time.time()
            job.progress = None  # a retried job starts again from nothing
            job.last_read = time.monotonic()
            self._running += 1
        self._on_change()
        timeout_s = job.timeout_s if job.timeout_s is not None else self.timeout_s
        timer = threading.Timer(timeout_s, self._time_out, args=(job,))
        timer.daemon = True
        timer.start()
        try:
            output = self._work(job, lambda piece: self._append(job, piece))
        except BaseException as exc:  # noqa: BLE001 - every job must end in a final state
            error = None if job.cancel.is_set() else self._describe_error(exc)
            with self._cond:
                if job.timed_out:
                    source = "JOB_TIMEOUT_S" if job.timeout_s is None else "policy.executionTimeout"
                    self._finish(job, TIMED_OUT, error=f"job ran past its {timeout_s:g} s limit ({source})")
                elif job.stalled:
                    self._finish(job, FAILED, error=f"stream: no /stream call took the waiting audio for "
                                                    f"{self.stall_s:g} s (STREAM_STALL_TIMEOUT_S); the job was stopped")
                elif job.cancel.is_set():
                    self._finish(job, CANCELLED)
                else:
                    self._finish(job, FAILED, error=error)
        else:
            with self._cond:
                if isinstance(output, dict) and "error" in output:
                    self._finish(job, FAILED, error=str(output["error"]))
                else:
                    self._finish(job, COMPLETED, output=output)
        finally:
            timer.cancel()
            self._on_change()

    def report(self, job: Job, progress: dict[str, Any]) -> None:
        """How far a running job has come; ignored once it has ended."""
        with self._cond:
            if job.status == IN_PROGRESS:
                job.progress = progress

    def _time_out(self, job: Job) -> None:
        job.timed_out = True
        job.cancel.set()
        with self._cond:
            self._cond.notify_all()

    def _append(self, job: Job, piece: Any) -> None:
        """Add a stream piece; while ``stream_buffer`` pieces wait unread, pause the job until ``/stream`` takes
        them, and stop it (:class:`StreamStalled`) when nobody has for ``stall_s``."""
        size = approx_size(piece)
        with self._cond:
            full_since: float | None = None
            while len(job.stream) >= self.stream_buffer:
                if job.cancel.is_set():
                    raise StreamStalled("the job was stopped while its stream waited")
                now = time.monotonic()
                full_since = full_since if full_since is not None else now
                left = max(job.last_read, full_since) + self.stall_s - now
                if left <= 0:
                    job.stalled = True
                    job.cancel.set()
                    log.warning("job %s: %d stream pieces unread for %g s; stopping it (STREAM_STALL_TIMEOUT_S)",
                                job.id, len(job.stream), self.stall_s)
                    raise StreamStalled("nobody read the stream")
                self._cond.wait(min(left, 0.5))
            job.stream.append(piece)
            job.stream_bytes += size

    def _finish(self, job: Job, status: str, output: Any = None, error: str | None = None,
                refused: bool = False) -> None:
        """Move ``job`` to a final state (caller holds the lock); drop its input unless it may be retried; count
        it for retention (a ``refused`` one among the refused, never in a retention slot); tell its ``on_end``."""
        if job.status in FINAL:
            return
        if job.status == IN_PROGRESS:
            self._running -= 1
        if error is not None and len(error) > MAX_ERROR_CHARS:
            error = error[:MAX_ERROR_CHARS] + "…"
        job.status = status
        job.output = output
        job.error = error
        kept = status in RETRYABLE and job.input is not None and not job.expired
        if not kept:
            job.input = None
        job.ended = time.time()
        self._open.pop(job.id, None)
        if status == COMPLETED:
            self.completed += 1
        elif status in (FAILED, TIMED_OUT):
            self.failed += 1
        if refused and not job.expired:  # only its error is kept, apart from the finished jobs
            job.size = len(error or "")
            self._refused[job.id] = job
            while len(self._refused) > self.retain_max:
                self._jobs.pop(self._refused.popitem(last=False)[0], None)
        elif not job.expired:  # an expired job is already forgotten: nothing is kept for it
            job.size = approx_size(output) + len(error or "") + job.stream_bytes + (job.input_size if kept else 0)
            self._finished[job.id] = job
            self._finished_bytes += job.size
            self._evict()
        job.done.set()
        self._cond.notify_all()
        if job.on_end is not None:
            try:
                job.on_end(job)
            except Exception:  # noqa: BLE001 - a listener must never keep a job from ending
                log.exception("job %s: end listener failed", job.id)

    def _forget_oldest(self) -> None:
        job_id, job = self._finished.popitem(last=False)
        self._finished_bytes -= job.size
        self._jobs.pop(job_id, None)

    def _expire(self, job: Job) -> None:
        """``job``'s ttl passed (caller holds the lock): forget it now; stop it when queued or running."""
        self._jobs.pop(job.id, None)
        job.expired = True
        if self._refused.pop(job.id, None) is not None:
            return
        if job.id in self._finished:
            del self._finished[job.id]
            self._finished_bytes -= job.size
            job.input = None
            return
        job.cancel.set()
        if job.status == IN_QUEUE:
            self._finish(job, CANCELLED, error="its policy.ttl passed before it started")
        self._cond.notify_all()

    def _evict(self) -> None:
        """Forget the oldest finished jobs while over the count or byte limit; the newest always stays."""
        while len(self._finished) > 1 and (len(self._finished) > self.retain_max
                                           or self._finished_bytes > self.retain_bytes):
            self._forget_oldest()

    def _prune(self) -> None:
        """Forget jobs past their ttl (soonest first in the heap) and finished jobs past their retention time (the
        oldest are first in finish order)."""
        now = time.time()
        while self._expiries and self._expiries[0][0] <= now:
            expires, job_id = heapq.heappop(self._expiries)
            job = self._jobs.get(job_id)
            if job is not None and job.expires == expires:
                self._expire(job)
        cutoff = now - self.retention_s
        while self._refused:
            oldest = next(iter(self._refused.values()))
            if oldest.ended is not None and oldest.ended >= cutoff:
                break
            self._jobs.pop(self._refused.popitem(last=False)[0], None)
        while self._finished:
            oldest = next(iter(self._finished.values()))
            if oldest.ended is not None and oldest.ended >= cutoff:
                break
            self._forget_oldest()
