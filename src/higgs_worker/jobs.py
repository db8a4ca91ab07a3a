"""The local job store behind ``/run``, ``/runsync``, ``/status``, ``/stream``, ``/cancel`` and ``/purge-queue``.

In memory, like a RunPod worker's own view: every accepted job reaches a final state (COMPLETED, FAILED,
CANCELLED or TIMED_OUT) and is kept for ``JOB_RETENTION_S`` after it ends, then forgotten. Jobs run on a
thread pool; the work function gets the job (input, cancel event, id) and a callback for stream pieces.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

IN_QUEUE = "IN_QUEUE"
IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
CANCELLED = "CANCELLED"
TIMED_OUT = "TIMED_OUT"
FINAL = frozenset({COMPLETED, FAILED, CANCELLED, TIMED_OUT})

Work = Callable[["Job", Callable[[Any], None]], dict[str, Any]]


class QueueFull(RuntimeError):
    """No room for another job."""


@dataclass
class Job:
    id: str
    input: dict[str, Any]
    status: str = IN_QUEUE
    output: Any = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    ended: float | None = None
    stream: list[Any] = field(default_factory=list)
    stream_sent: int = 0
    cancel: threading.Event = field(default_factory=threading.Event)
    timed_out: bool = False
    done: threading.Event = field(default_factory=threading.Event)

    def view(self) -> dict[str, Any]:
        """The job as RunPod's ``/status`` shows it."""
        out: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.started is not None:
            out["delayTime"] = int((self.started - self.created) * 1000)
        if self.ended is not None and self.started is not None:
            out["executionTime"] = int((self.ended - self.started) * 1000)
        if self.status == COMPLETED:
            out["output"] = self.output
        if self.error is not None:
            out["error"] = self.error
        return out


class JobStore:
    """Accepts jobs, runs them on ``workers`` threads, keeps them ``retention_s`` after they end."""

    def __init__(self, work: Work, workers: int, retention_s: float, timeout_s: float,
                 on_change: Callable[[], None] | None = None, max_open: int = 1_000_000) -> None:
        self.max_open = max_open
        self._work = work
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job")
        self.workers = workers
        self.retention_s = retention_s
        self.timeout_s = timeout_s
        self.completed = 0
        self.failed = 0
        self._running = 0
        self._accepting = True
        self._on_change = on_change or (lambda: None)

    # -- intake ---------------------------------------------------------------------------------------------

    def submit(self, job_input: dict[str, Any]) -> Job:
        if not self._accepting:
            raise RuntimeError("the worker is shutting down and takes no new jobs")
        job = Job(id=f"local-{uuid.uuid4()}", input=job_input)
        with self._lock:
            self._prune()
            open_jobs = sum(1 for j in self._jobs.values() if j.status not in FINAL)
            if open_jobs >= self.max_open:
                raise QueueFull(f"{open_jobs} jobs are queued or running; the limit is {self.max_open} "
                                "(MAX_CONCURRENT_JOBS)")
            self._jobs[job.id] = job
        self._pool.submit(self._run, job)
        self._on_change()
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            self._prune()
            return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        job = self.get(job_id)
        if job is None:
            return None
        job.cancel.set()
        with self._lock:
            if job.status == IN_QUEUE:
                self._finish(job, CANCELLED)
        return job

    def purge_queue(self) -> int:
        """Cancel every job not yet started; returns how many."""
        with self._lock:
            queued = [j for j in self._jobs.values() if j.status == IN_QUEUE]
            for job in queued:
                job.cancel.set()
                self._finish(job, CANCELLED)
        return len(queued)

    def take_stream(self, job: Job) -> list[Any]:
        """Stream pieces not yet handed out (RunPod's ``/stream`` gives each piece once)."""
        with self._lock:
            pieces = job.stream[job.stream_sent:]
            job.stream_sent = len(job.stream)
        return pieces

    # -- counts ---------------------------------------------------------------------------------------------

    def counts(self) -> dict[str, dict[str, int]]:
        with self._lock:
            self._prune()
            queued = sum(1 for j in self._jobs.values() if j.status == IN_QUEUE)
            running = sum(1 for j in self._jobs.values() if j.status == IN_PROGRESS)
            return {
                "jobs": {"completed": self.completed, "failed": self.failed, "inProgress": running,
                         "inQueue": queued, "retried": 0},
                "workers": {"idle": max(0, self.workers - running), "running": running},
            }

    def queue_depth(self) -> int:
        return self.counts()["jobs"]["inQueue"]

    # -- lifecycle ------------------------------------------------------------------------------------------

    def shutdown(self, wait: bool = True) -> None:
        """Stop taking jobs; cancel queued ones; let running ones end (they reach a final state)."""
        self._accepting = False
        self.purge_queue()
        self._pool.shutdown(wait=wait, cancel_futures=False)

    def _run(self, job: Job) -> None:
        with self._lock:
            if job.status != IN_QUEUE:
                return
            job.status = IN_PROGRESS
            job.started = time.time()
        self._on_change()
        timer = threading.Timer(self.timeout_s, self._time_out, args=(job,))
        timer.daemon = True
        timer.start()
        try:
            output = self._work(job, lambda piece: self._append(job, piece))
        except BaseException as exc:  # noqa: BLE001 - every job must end in a final state
            with self._lock:
                if job.timed_out:
                    self._finish(job, TIMED_OUT, error=f"job ran past its {self.timeout_s:g} s limit (JOB_TIMEOUT_S)")
                elif job.cancel.is_set():
                    self._finish(job, CANCELLED)
                else:
                    self._finish(job, FAILED, error=str(exc) or exc.__class__.__name__)
        else:
            with self._lock:
                if isinstance(output, dict) and "error" in output:
                    self._finish(job, FAILED, error=str(output["error"]))
                else:
                    self._finish(job, COMPLETED, output=output)
        finally:
            timer.cancel()
            self._on_change()

    def _time_out(self, job: Job) -> None:
        job.timed_out = True
        job.cancel.set()

    def _append(self, job: Job, piece: Any) -> None:
        with self._lock:
            job.stream.append(piece)

    def _finish(self, job: Job, status: str, output: Any = None, error: str | None = None) -> None:
        if job.status in FINAL:
            return
        job.status = status
        job.output = output
        job.error = error
        job.ended = time.time()
        if status == COMPLETED:
            self.completed += 1
        elif status in (FAILED, TIMED_OUT):
            self.failed += 1
        job.done.set()

    def _prune(self) -> None:
        cutoff = time.time() - self.retention_s
        for job_id in [j.id for j in self._jobs.values() if j.ended is not None and j.ended < cutoff]:
            del self._jobs[job_id]
