"""The RunPod Serverless queue worker: ``runpod.serverless.start`` around :meth:`~higgs_worker.jobs.runner.JobRunner.run_job`.

The handler is async and runs inference on a worker thread, so the SDK's event loop keeps polling, sending
heartbeats and receiving cancellations while audio is generated. ``concurrency_modifier`` lets the worker take
up to ``MAX_BATCH_SIZE`` jobs at once.

With ``RUNPOD_STREAM_HANDLER=true`` the handler is an async generator: jobs with ``"stream": true`` yield their
audio in pieces (each under 1 MB) to ``/stream``, then their metadata; other jobs yield their one output. RunPod
then reports ``/run`` outputs as the list of yields (``return_aggregate_stream``, so ``/status`` holds the whole
result too), so this mode is opt-in.

Before the first job the SDK runs the fitness checks (:mod:`higgs_worker.fitness`) registered here: a worker whose
GPU, model folders or first generation fail exits non-zero with the reason in ``server.log``.

While a job runs, RunPod's progress updates say how far it has come (chunks done of the plan, audio seconds made;
``PROGRESS_INTERVAL_S``): ``/status`` shows them as the running job's ``output``. They are sent from the SDK's own
loop, one at a time (each within 10 s, only the newest kept while one is in flight); the one in flight lands before
the job's result and none is sent after it or after a cancel.

After an unrecoverable GPU error (:class:`~higgs_worker.engine.scheduler.DeviceFault`) this process can never
generate again: the job answers its error with ``refresh_worker`` (RunPod then replaces the worker), the SDK takes
no further job, and the process exits non-zero.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .core.errors import Cancelled, DeviceFault, public_error
from .core.settings import Settings
from .jobs.runner import JobRunner
from .speech import SpeechService

log = logging.getLogger(__name__)

#: Sends one progress update for a job: ``(job, progress)``.
ProgressPoster = Callable[[dict[str, Any], dict[str, Any]], Awaitable[None]]


async def post_progress(job: dict[str, Any], progress: dict[str, Any]) -> None:
    """What ``runpod.serverless.progress_update`` sends (the job's IN_PROGRESS output), as a coroutine the handler
    can await: the SDK's own helper fires a thread, which could land after the job's result."""
    from runpod.http_client import AsyncClientSession
    from runpod.serverless.modules.rp_http import send_result

    async with AsyncClientSession() as session:
        await send_result(session, {"status": "IN_PROGRESS", "output": progress}, job)


class _Updates:
    """A job's progress updates, told from the job's thread and posted from the handler's loop: one post at a time,
    each within ``POST_TIMEOUT_S``; while one is in flight only the newest waiting update is kept (a slow control
    plane never builds a backlog). ``drain`` before the result and ``close`` on a cancel end them for good, so no
    update follows the job's end."""

    POST_TIMEOUT_S = 10.0

    def __init__(self, job: dict[str, Any], post: ProgressPoster | None, loop: asyncio.AbstractEventLoop) -> None:
        self.job, self.post, self.loop = job, post, loop
        self.waiting: dict[str, Any] | None = None
        self.sender: asyncio.Task | None = None
        self.closed = False

    @property
    def sink(self) -> Callable[[dict[str, Any]], None] | None:
        return self.tell if self.post is not None else None

    def tell(self, progress: dict[str, Any]) -> None:
        """From the job's thread: hand the update to the loop (dropped once the loop is gone)."""
        try:
            self.loop.call_soon_threadsafe(self._offer, progress)
        except RuntimeError:  # the loop has closed: the job's end is being handled, nothing more to say
            pass

    def _offer(self, progress: dict[str, Any]) -> None:
        if self.closed:
            return
        self.waiting = progress
        if self.sender is None or self.sender.done():
            self.sender = self.loop.create_task(self._send())

    async def _send(self) -> None:
        assert self.post is not None
        while self.waiting is not None and not self.closed:
            progress, self.waiting = self.waiting, None
            try:
                await asyncio.wait_for(self.post(self.job, progress), self.POST_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - progress is a courtesy; the job goes on
                log.warning("job %s: a progress update failed: %s", self.job.get("id"), exc)

    async def drain(self) -> None:
        """On the loop, before the result is sent: no update after this, and the one in flight lands (or is given
        up after ``POST_TIMEOUT_S``)."""
        await asyncio.sleep(0)  # updates the job's thread handed over before it ended come first
        self.closed = True
        if self.sender is not None and not self.sender.done():
            try:
                await asyncio.wait_for(asyncio.shield(self.sender), self.POST_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - a stuck update never holds the result back
                self.sender.cancel()

    def close(self) -> None:
        """On the loop, when the job is cancelled: nothing more is sent."""
        self.closed = True
        self.waiting = None
        if self.sender is not None:
            self.sender.cancel()


@dataclass(frozen=True)
class _Final:
    """The stream handler's last item: the job's output (metadata or error), sent once the updates have landed."""

    output: dict[str, Any]


def device_fault(service: SpeechService) -> DeviceFault | None:
    """The unrecoverable GPU error this process hit, if any (nothing can run on it again)."""
    holder = service.holder
    return holder.get().fault if holder.ready else None


def _refresh(service: SpeechService, output: dict[str, Any], on_fault) -> dict[str, Any]:
    """After a device fault, a job's error says so and carries ``refresh_worker``, so RunPod replaces the worker."""
    fault = device_fault(service)
    if fault is None:
        return output
    if on_fault is not None:
        on_fault()
    return {"error": str(fault), "refresh_worker": True}


def make_handler(service: SpeechService, executor: ThreadPoolExecutor | None = None, on_fault=None,
                 progress: ProgressPoster | None = None):
    """The plain async handler: one job in, one output dict (or ``{"error": "..."}``) out. ``on_fault`` is called
    when a job finds the GPU failed; ``progress`` (:func:`post_progress` under RunPod) sends progress updates."""

    runner = JobRunner(service)

    async def handler(job: dict[str, Any]) -> dict[str, Any]:
        if device_fault(service) is not None:  # refuse at once: the model cannot run in this process again
            return _refresh(service, {}, on_fault)
        cancel = threading.Event()
        loop = asyncio.get_running_loop()
        updates = _Updates(job, progress, loop)
        try:
            output = await loop.run_in_executor(executor, lambda: runner.run_job(
                job.get("input"), cancel, None, job.get("id"), progress=updates.sink))
            await updates.drain()
        except asyncio.CancelledError:
            cancel.set()  # the SDK cancelled the job (cancel request or timeout): stop at the next step
            updates.close()
            raise
        except Cancelled:
            output = {"error": "cancelled"}
        except Exception as exc:  # noqa: BLE001 - report (detail to the log, an id to the caller), keep serving
            output = {"error": public_error(exc, f"job {job.get('id')}")}
        return _refresh(service, output, on_fault) if "error" in output else output

    return handler


def make_stream_handler(service: SpeechService, executor: ThreadPoolExecutor | None = None, on_fault=None,
                        progress: ProgressPoster | None = None):
    """The async-generator handler: stream pieces for ``stream: true`` jobs, one output otherwise. The SDK keeps
    only a generator's error text, so ``on_fault`` (which sets the SDK's ``refresh_worker``) carries a device
    fault; ``progress`` as for :func:`make_handler`."""

    runner = JobRunner(service)

    async def handler(job: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        if device_fault(service) is not None:
            yield _refresh(service, {}, on_fault)
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()
        updates = _Updates(job, progress, loop)

        def emit(piece: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, piece)

        def run() -> None:
            try:
                result = runner.run_job(job.get("input"), cancel, emit, job.get("id"), progress=updates.sink)
            except Cancelled:
                result = {"error": "cancelled"}
            except Exception as exc:  # noqa: BLE001
                result = {"error": public_error(exc, f"job {job.get('id')}")}
            if "error" in result:
                result = _refresh(service, result, on_fault)
            loop.call_soon_threadsafe(queue.put_nowait, _Final(result))

        worker = loop.run_in_executor(executor, run)
        try:
            while not isinstance(item := await queue.get(), _Final):
                yield item
            await updates.drain()  # every progress update lands before the result
            yield item.output
        finally:
            cancel.set()
            updates.close()
            await asyncio.shield(worker)

    return handler


def start(settings: Settings) -> int:
    """Load (or schedule loading of) the model, register the fitness checks, then hand control to the RunPod SDK's
    worker loop. Returns the exit status: non-zero when the loop ended because the GPU failed."""
    import runpod

    from .fitness import register

    service = SpeechService(settings)
    if settings.preload_models:
        try:
            service.holder.get()
        except Exception as exc:  # noqa: BLE001 - every job will report it; no crash loop
            log.error("model load failed; jobs will fail with the reason until it is fixed: %s", exc)
    register(runpod.serverless.register_fitness_check, settings, service)
    # one thread per job the worker may hold, so every job taken can join the scheduler's batch
    executor = ThreadPoolExecutor(max_workers=settings.max_batch_size + 2, thread_name_prefix="job")
    config: dict[str, Any] = {"concurrency_modifier": lambda current: settings.max_batch_size}

    def on_fault() -> None:
        if not config.get("refresh_worker"):
            log.critical("the GPU failed unrecoverably: answering jobs with refresh_worker and taking no more")
        config["refresh_worker"] = True  # read by the SDK after each job: it stops the worker loop

    # progress updates need the platform's result URL; the SDK's local test API (--rp_serve_api) has none
    poster = post_progress if os.environ.get("RUNPOD_WEBHOOK_POST_OUTPUT") else None
    if settings.runpod_stream_handler:
        config.update(handler=make_stream_handler(service, executor, on_fault, poster), return_aggregate_stream=True)
    else:
        config["handler"] = make_handler(service, executor, on_fault, poster)
    runpod.serverless.start(config)
    if device_fault(service) is not None:
        log.critical("worker stopped after an unrecoverable GPU error: %s", device_fault(service))
        return 70
    return 0
