"""The job store shared by replicas through Redis (``JOB_STORE=redis://…``; Redis 7 or Valkey).

Job records, the queue, stream pieces and cancel requests live in Redis, so any replica answers any job's routes.
Replicas pull: each takes a queued job only while it has a free slot (``MAX_BATCH_SIZE``), so load follows capacity.
A taken job is leased: its replica renews the lease a few times a second (the same call brings cancel requests
back); when a replica dies the lease lapses and any replica puts the job back at the front of the queue, or ends it
FAILED once it has been started ``JOB_MAX_ATTEMPTS`` times, or at once when ``/stream`` has already handed out some
of its pieces (a new run would start the stream over, spliced after what the reader has). Each change of state is
one Lua script, so it is atomic, and a final state is written once: the replica whose script wrote it (and only
that one) sends the job's webhook. An attempt number guards every write by the running replica, so a replica that
lost its lease cannot overwrite the job's new run, nor announce it.

Limits match the memory store: a finished job's keys expire after ``JOB_RETENTION_S`` (or at its ``ttl``, when
sooner, as its record does from submission; its retention slot is freed then too); at most ``JOB_RETAIN_MAX`` finished
jobs and ``JOB_RETAIN_BYTES`` of their outputs, errors and kept inputs stay, the oldest forgotten first, and jobs
refused for their input are kept apart (at most ``JOB_RETAIN_MAX`` of them) so they never take those slots; jobs
belong to their tenant, as in memory; stream pieces wait at most
``STREAM_BUFFER_PIECES`` deep, and a job nobody reads for ``STREAM_STALL_TIMEOUT_S`` is stopped. Times come from
the Redis server's clock, so replicas' clocks need not agree. When Redis cannot be reached the store raises
:class:`~higgs_worker.jobs.state.StoreUnavailable` (503 on job routes) and the replicas' loops keep trying until it is back.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import redis

from .redis_scripts import SCRIPTS
from .state import (CANCELLED, COMPLETED, FAILED, FINAL, IN_PROGRESS, IN_QUEUE, MAX_ERROR_CHARS, RETRYABLE, TIMED_OUT,
                    Job, NotRetryable, QueueFull, StoreUnavailable, StreamStalled, Work, approx_size, internal_error,
                    visible)

log = logging.getLogger(__name__)

_FIELDS = ("status", "created", "started", "ended", "output", "error", "retries", "input_size", "timeout_s",
           "expires", "stream_sent", "size", "worker", "tenant", "progress")


def _num(value: bytes | None) -> float | None:
    return None if value is None else float(value)


def _public_url(url: str) -> str:
    """The store's address for messages: scheme, host and port, never credentials."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or 'localhost'}:{parts.port or 6379}"


class RedisJobStore:
    """A :class:`~higgs_worker.jobs.state.JobStoreAPI` whose jobs are shared with every replica using the same Redis."""

    shared = True

    def __init__(self, url: str, work: Work, workers: int, retention_s: float, timeout_s: float,
                 on_change: Callable[[], None] | None = None, max_open: int = 1_000_000,
                 retain_max: int = 1000, retain_bytes: int = 256 * 1024 * 1024, stream_buffer: int = 16,
                 stall_s: float = 30.0, describe_error: Callable[[BaseException], str] = internal_error,
                 lease_s: float = 30.0, max_attempts: int = 3,
                 notify: Callable[[str, dict[str, Any], Callable[[], dict[str, Any] | None]], None] | None = None,
                 prefix: str = "higgs:",
                 poll_s: float = 0.1) -> None:
        if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            raise ValueError("JOB_STORE must be `memory` or a redis://, rediss:// or unix:// URL")
        self.where = _public_url(url)
        self._r = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=3, health_check_interval=15)
        self._scripts = {name: self._r.register_script(body) for name, body in SCRIPTS.items()}
        self.prefix = prefix
        self._work = work
        self.workers = workers
        self.max_open = max_open
        self.retention_s = retention_s
        self.timeout_s = timeout_s
        self.retain_max = retain_max
        self.retain_bytes = retain_bytes
        self.stream_buffer = stream_buffer
        self.stall_s = stall_s
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self._describe_error = describe_error
        self._notify = notify
        self._on_change = on_change or (lambda: None)
        self._poll_s = poll_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._slots = threading.Semaphore(workers)
        self._local: dict[str, tuple[Job, int]] = {}  # jobs running here, with the attempt this replica holds
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stop_watch = threading.Event()
        self._accepting = True
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job")
        self._down_since: float | None = None
        self._taker = threading.Thread(target=self._take_loop, name="job-taker", daemon=True)
        self._watcher = threading.Thread(target=self._watch_loop, name="job-lease", daemon=True)
        self._taker.start()
        self._watcher.start()

    # -- plumbing -------------------------------------------------------------------------------------------

    def _limits(self) -> list[Any]:
        return [int(self.retention_s * 1000), self.retain_max, self.retain_bytes]

    def _run_script(self, name: str, *args: Any) -> Any:
        """One atomic script; an unreachable Redis becomes :class:`StoreUnavailable` with a message callers see."""
        try:
            return self._scripts[name](args=[self.prefix, *args])
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(f"the job store (Redis at {self.where}, JOB_STORE) cannot be reached: "
                                   f"{type(exc).__name__}; job routes answer again once it is back") from None

    def _read(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(f"the job store (Redis at {self.where}, JOB_STORE) cannot be reached: "
                                   f"{type(exc).__name__}; job routes answer again once it is back") from None

    def _key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def _tell(self, job_id: str) -> None:
        """Send a job's webhook; called only by the replica whose script wrote its final state. The delivery holds
        the job's state without its output, and reads the output from Redis when it is sent."""
        if self._notify is None:
            return
        try:
            url = self._r.hget(self._key(job_id), "webhook")
            job = self.get(job_id) if url else None
        except (redis.RedisError, StoreUnavailable):
            log.exception("job %s: its webhook could not be read", job_id)
            return
        if url and job is not None:
            try:
                self._notify(url.decode(), job.view(output=False), lambda: self._stored_view(job_id))
            except Exception:  # noqa: BLE001 - a listener must never keep a job from ending
                log.exception("job %s: webhook listener failed", job_id)

    def _stored_view(self, job_id: str) -> dict[str, Any] | None:
        job = self.get(job_id)
        return None if job is None else job.view()

    # -- intake ---------------------------------------------------------------------------------------------

    def submit(self, job_input: Any, *, input_size: int | None = None, timeout_s: float | None = None,
               ttl_s: float | None = None, on_end: Callable[[Job], None] | None = None,
               webhook: str | None = None, tenant: str | None = None) -> Job:
        if not self._accepting:
            raise RuntimeError("the worker is shutting down and takes no new jobs")
        job_id = f"local-{uuid.uuid4()}"
        size = approx_size(job_input) if input_size is None else input_size
        code, open_jobs = self._run_script(
            "submit", job_id, self.max_open, json.dumps(job_input), size,
            "" if timeout_s is None else repr(timeout_s), "" if ttl_s is None else int(ttl_s * 1000),
            webhook or "", "", *self._limits(), tenant or "")
        if code == -1:
            raise QueueFull(f"{open_jobs} jobs are queued or running; the limit is {self.max_open} "
                            "(MAX_CONCURRENT_JOBS)")
        self._on_change()
        return self.get(job_id) or Job(id=job_id, input=None)

    def reject(self, error: str, *, ttl_s: float | None = None, on_end: Callable[[Job], None] | None = None,
               webhook: str | None = None, tenant: str | None = None) -> Job:
        job_id = f"local-{uuid.uuid4()}"
        if len(error) > MAX_ERROR_CHARS:
            error = error[:MAX_ERROR_CHARS] + "…"
        told, _ = self._run_script("submit", job_id, self.max_open, "", 0, "",
                                   "" if ttl_s is None else int(ttl_s * 1000), webhook or "", error, *self._limits(),
                                   tenant or "")
        if told == 1:
            self._tell(job_id)
        return self.get(job_id) or Job(id=job_id, input=None, status=FAILED, error=error)

    def retry(self, job_id: str, tenant: str | None = None) -> Job | None:
        if not self._accepting:
            raise RuntimeError("the worker is shutting down and takes no new jobs")
        code, detail = self._run_script("retry", job_id, self.max_open, tenant or "")
        detail = detail.decode() if isinstance(detail, bytes) else str(detail)
        if code == 0:
            return None
        if code == -1:
            raise NotRetryable(f"job {job_id!r} is {detail}; only FAILED or TIMED_OUT jobs can be retried")
        if code == -2:
            raise NotRetryable(f"job {job_id!r} was refused before it was queued (its input was not valid) and "
                               "kept no input; correct the input and submit a new job")
        if code == -3:
            raise QueueFull(f"{detail} jobs are queued or running; the limit is {self.max_open} (MAX_CONCURRENT_JOBS)")
        self._on_change()
        return self.get(job_id)

    # -- lookups --------------------------------------------------------------------------------------------

    def get(self, job_id: str, tenant: str | None = None) -> Job | None:
        """A snapshot of the job as Redis holds it now (its ``done`` is set when it was final); None when unknown
        or another tenant's."""
        values = self._read(lambda: self._r.hmget(self._key(job_id), _FIELDS))
        rec = dict(zip(_FIELDS, values, strict=True))
        if rec["status"] is None:
            return None
        status = rec["status"].decode()
        created = _num(rec["created"]) or 0.0
        job = Job(id=job_id, input=None, status=status, created=created / 1000)
        job.started = None if rec["started"] is None else float(rec["started"]) / 1000
        job.ended = None if rec["ended"] is None else float(rec["ended"]) / 1000
        job.output = None if rec["output"] is None else json.loads(rec["output"])
        job.error = None if rec["error"] is None else rec["error"].decode()
        job.retries = int(rec["retries"] or 0)
        job.input_size = int(rec["input_size"] or 0)
        job.timeout_s = _num(rec["timeout_s"])
        job.expires = None if rec["expires"] is None else float(rec["expires"]) / 1000
        job.stream_sent = int(rec["stream_sent"] or 0)
        job.size = int(rec["size"] or 0)
        job.worker = None if rec["worker"] is None else rec["worker"].decode()
        job.tenant = None if rec["tenant"] is None else rec["tenant"].decode()
        job.progress = None if rec["progress"] is None else json.loads(rec["progress"])
        if status in FINAL:
            job.done.set()
        return visible(job, tenant)

    def cancel(self, job_id: str, tenant: str | None = None) -> Job | None:
        code = self._run_script("cancel", job_id, tenant or "", *self._limits())
        if code == 0:
            return None
        if code == 2:
            self._on_change()
            self._tell(job_id)
        with self._lock:
            held = self._local.get(job_id)
        if held is not None:  # running here: stop it now rather than at the next lease renewal
            held[0].cancel.set()
        return self.get(job_id, tenant)

    def purge_queue(self, tenant: str | None = None) -> int:
        cancelled = self._run_script("purge", tenant or "", *self._limits())
        for job_id in cancelled:
            self._tell(job_id.decode())
        if cancelled:
            self._on_change()
        return len(cancelled)

    def take_stream(self, job: Job) -> list[Any]:
        pieces = self._run_script("take_stream", job.id)
        job.stream_sent += len(pieces)
        return [json.loads(p) for p in pieces]

    def counts(self) -> dict[str, dict[str, int]]:
        def read():
            with self._r.pipeline(transaction=False) as pipe:
                pipe.hmget(f"{self.prefix}stats", ("completed", "failed", "retried"))
                pipe.llen(f"{self.prefix}queue")
                pipe.zcard(f"{self.prefix}running")
                return pipe.execute()
        (completed, failed, retried), queued, running = self._read(read)
        with self._lock:
            here = len(self._local)
        return {
            "jobs": {"completed": int(completed or 0), "failed": int(failed or 0), "inProgress": running,
                     "inQueue": queued, "retried": int(retried or 0)},
            "workers": {"idle": max(0, self.workers - here), "running": here},
        }

    def queue_depth(self) -> int:
        return self._read(lambda: self._r.llen(f"{self.prefix}queue"))

    def retained(self) -> tuple[int, int]:
        """Finished jobs kept (not those refused for their input), and the bytes counted for them."""
        count, size = self._read(lambda: (self._r.zcard(f"{self.prefix}finished"),
                                          self._r.hget(f"{self.prefix}stats", "bytes")))
        return count, int(size or 0)

    def ping(self) -> bool:
        try:
            return bool(self._r.ping())
        except redis.RedisError:
            return False

    # -- this replica's share of the work -------------------------------------------------------------------

    def shutdown(self, wait: bool = True) -> None:
        """Stop taking jobs; let the ones running here end (queued ones stay for the other replicas)."""
        self._accepting = False
        self._stop.set()
        self._taker.join(timeout=5)
        self._pool.shutdown(wait=wait, cancel_futures=False)
        self._stop_watch.set()
        self._watcher.join(timeout=5)
        self._r.close()

    def _unreachable(self, what: str, exc: Exception) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("job store (Redis at %s) unreachable while %s: %s; retrying", self.where, what, exc)

    def _reachable(self) -> None:
        if self._down_since is not None:
            log.warning("job store (Redis at %s) reachable again after %.1f s", self.where,
                        time.monotonic() - self._down_since)
            self._down_since = None

    def _take_loop(self) -> None:
        """Take queued jobs while this replica has a free slot; every second, hand back lapsed leases."""
        next_reap = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_reap:
                    next_reap = time.monotonic() + 1.0
                    self._reap()
                if not self._slots.acquire(timeout=0.2):
                    continue
                try:
                    taken = self._scripts["take"](args=[self.prefix, self.owner, int(self.lease_s * 1000)])
                except BaseException:
                    self._slots.release()
                    raise
                self._reachable()
                if not taken:
                    self._slots.release()
                    self._stop.wait(self._poll_s)
                    continue
                job_id, attempt, raw = taken[0].decode(), int(taken[1]), taken[2]
                job = self.get(job_id) or Job(id=job_id, input=None, status=IN_PROGRESS)
                job.input = json.loads(raw)
                with self._lock:
                    self._local[job_id] = (job, attempt)
                self._pool.submit(self._run, job, attempt)
            except (redis.RedisError, StoreUnavailable) as exc:
                self._unreachable("taking jobs", exc)
                self._stop.wait(1.0)
            except Exception:  # noqa: BLE001 - the loop must outlive any one bad record
                log.exception("job taker")
                self._stop.wait(1.0)

    def _reap(self) -> None:
        out = self._scripts["reap"](args=[self.prefix, self.max_attempts, *self._limits()])
        split = out.index(b"")
        failed, requeued = out[:split], out[split + 1:]
        if requeued:
            log.warning("jobs %s: their worker's lease lapsed; queued again", [i.decode() for i in requeued])
        for job_id in failed:
            log.warning("job %s: its worker's lease lapsed; FAILED (JOB_MAX_ATTEMPTS reached, or its stream had "
                        "already been read)", job_id.decode())
            self._tell(job_id.decode())

    def _watch_loop(self) -> None:
        """Renew the leases of jobs running here a few times per lease, and bring back cancel requests."""
        interval = min(0.25, self.lease_s / 4)
        while not self._stop_watch.wait(interval):
            with self._lock:
                held = list(self._local.items())
            if not held:
                continue
            args: list[Any] = [self.prefix, self.owner, int(self.lease_s * 1000)]
            for job_id, (_, attempt) in held:
                args += [job_id, attempt]
            try:
                states = self._scripts["watch"](args=args)
            except redis.RedisError as exc:
                self._unreachable("renewing leases", exc)
                continue
            self._reachable()
            for (job_id, (job, _)), state in zip(held, states, strict=True):
                if state == 2:
                    job.cancel.set()
                elif state == 0 and not job.cancel.is_set():
                    log.warning("job %s: no longer held here (forgotten, or taken back after a lapsed lease); "
                                "stopping it", job_id)
                    job.expired = True
                    job.cancel.set()
            now = time.time()
            for _, (job, _) in held:
                if job.expires is not None and now >= job.expires:
                    job.expired = True
                    job.cancel.set()

    def _run(self, job: Job, attempt: int) -> None:
        self._on_change()
        timeout_s = job.timeout_s if job.timeout_s is not None else self.timeout_s
        timer = threading.Timer(timeout_s, self._time_out, args=(job,))
        timer.daemon = True
        timer.start()
        status, output, error = FAILED, None, None
        try:
            output = self._work(job, lambda piece: self._append(job, attempt, piece))
        except BaseException as exc:  # noqa: BLE001 - every job must end in a final state
            error = None if job.cancel.is_set() else self._describe_error(exc)
            if job.timed_out:
                source = "JOB_TIMEOUT_S" if job.timeout_s is None else "policy.executionTimeout"
                status, error = TIMED_OUT, f"job ran past its {timeout_s:g} s limit ({source})"
            elif job.stalled:
                error = (f"stream: no /stream call took the waiting audio for {self.stall_s:g} s "
                         "(STREAM_STALL_TIMEOUT_S); the job was stopped")
            elif job.cancel.is_set():
                status = CANCELLED
            output = None
        else:
            if isinstance(output, dict) and "error" in output:
                status, error, output = FAILED, str(output["error"]), None
            else:
                status = COMPLETED
        finally:
            timer.cancel()
        if error is not None and len(error) > MAX_ERROR_CHARS:
            error = error[:MAX_ERROR_CHARS] + "…"
        body = "" if output is None else json.dumps(output)
        try:
            told = self._finish(job, attempt, status, body, error or "")
        finally:
            with self._lock:
                self._local.pop(job.id, None)
            self._slots.release()
            self._on_change()
        if told:
            self._tell(job.id)

    def _finish(self, job: Job, attempt: int, status: str, body: str, error: str) -> bool:
        """Write the job's end, trying again while Redis is unreachable (up to one lease: after that another
        replica may hold the job, and the attempt check would refuse this write anyway)."""
        deadline = time.monotonic() + max(self.lease_s, 10.0)
        while True:
            try:
                told = self._scripts["finish"](args=[self.prefix, job.id, self.owner, attempt, status, body, error,
                                                     *self._limits()])
                self._reachable()
                return told == 1
            except redis.RedisError as exc:
                self._unreachable(f"ending job {job.id}", exc)
                if time.monotonic() >= deadline:
                    log.error("job %s: its end (%s) could not be written: the job store stayed unreachable",
                              job.id, status)
                    return False
                time.sleep(0.5)

    def report(self, job: Job, progress: dict[str, Any]) -> None:
        """How far a running job has come, written while this replica holds it; a report Redis misses is
        dropped (the next one carries the same and more)."""
        with self._lock:
            held = self._local.get(job.id)
        if held is None or held[0] is not job or self._down_since is not None:  # another run of it, or Redis down:
            return  # the job never waits on a report
        try:
            self._scripts["progress"](args=[self.prefix, job.id, self.owner, held[1], json.dumps(progress)])
        except redis.RedisError as exc:
            self._unreachable(f"reporting progress of job {job.id}", exc)

    def _time_out(self, job: Job) -> None:
        job.timed_out = True
        job.cancel.set()

    def _append(self, job: Job, attempt: int, piece: Any) -> None:
        """Add a stream piece; while ``stream_buffer`` wait unread, pause; stop the job when nobody reads for
        ``stall_s`` (times from the Redis clock, shared with the replica that serves ``/stream``)."""
        raw = json.dumps(piece)
        full_since: int | None = None
        while True:
            if job.cancel.is_set():
                raise StreamStalled("the job was stopped while its stream waited")
            try:
                out = self._scripts["append"](args=[self.prefix, job.id, self.owner, attempt, raw, self.stream_buffer])
            except redis.RedisError as exc:
                self._unreachable(f"streaming job {job.id}", exc)
                time.sleep(0.5)
                continue
            if out[0] == 1:
                return
            if out[0] == -1:
                job.cancel.set()
                raise StreamStalled("the job is no longer held by this worker")
            now, read_at = int(out[1]), int(out[2])
            full_since = now if full_since is None else full_since
            if max(read_at, full_since) + self.stall_s * 1000 <= now:
                job.stalled = True
                job.cancel.set()
                log.warning("job %s: %d stream pieces unread for %g s; stopping it (STREAM_STALL_TIMEOUT_S)",
                            job.id, self.stream_buffer, self.stall_s)
                raise StreamStalled("nobody read the stream")
            time.sleep(0.05)


__all__ = ["RedisJobStore", "IN_QUEUE", "RETRYABLE"]
