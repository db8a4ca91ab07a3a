"""The RunPod Serverless queue worker: ``runpod.serverless.start`` around :meth:`SpeechService.run_job`.

The handler is async and runs inference on a worker thread, so the SDK's event loop keeps polling, sending
heartbeats and receiving cancellations while audio is generated. ``concurrency_modifier`` lets the worker take
up to ``MAX_BATCH_SIZE`` jobs at once.

With ``RUNPOD_STREAM_HANDLER=true`` the handler is an async generator: jobs with ``"stream": true`` yield their
audio in pieces (each under 1 MB) to ``/stream``, then their metadata; other jobs yield their one output. RunPod
then reports ``/run`` outputs as the list of yields (``return_aggregate_stream``), so this mode is opt-in.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .engine import Cancelled
from .service import SpeechService, public_error
from .settings import Settings

log = logging.getLogger(__name__)


def make_handler(service: SpeechService, executor: ThreadPoolExecutor | None = None):
    """The plain async handler: one job in, one output dict (or ``{"error": "..."}``) out."""

    async def handler(job: dict[str, Any]) -> dict[str, Any]:
        cancel = threading.Event()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(executor, service.run_job, job.get("input"), cancel, None,
                                              job.get("id"))
        except asyncio.CancelledError:
            cancel.set()  # the SDK cancelled the job (cancel request or timeout): stop at the next step
            raise
        except Cancelled:
            return {"error": "cancelled"}
        except Exception as exc:  # noqa: BLE001 - report (detail to the log, an id to the caller), keep serving
            return {"error": public_error(exc, f"job {job.get('id')}")}

    return handler


def make_stream_handler(service: SpeechService, executor: ThreadPoolExecutor | None = None):
    """The async-generator handler: stream pieces for ``stream: true`` jobs, one output otherwise."""

    async def handler(job: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()
        end = object()

        def emit(piece: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, piece)

        def run() -> None:
            try:
                result = service.run_job(job.get("input"), cancel, emit, job.get("id"))
            except Cancelled:
                result = {"error": "cancelled"}
            except Exception as exc:  # noqa: BLE001
                result = {"error": public_error(exc, f"job {job.get('id')}")}
            loop.call_soon_threadsafe(queue.put_nowait, result)
            loop.call_soon_threadsafe(queue.put_nowait, end)

        worker = loop.run_in_executor(executor, run)
        try:
            while (item := await queue.get()) is not end:
                yield item
        finally:
            cancel.set()
            await asyncio.shield(worker)

    return handler


def start(settings: Settings) -> None:
    """Load (or schedule loading of) the model, then hand control to the RunPod SDK's worker loop."""
    import runpod

    service = SpeechService(settings)
    if settings.preload_models:
        try:
            service.holder.get()
        except Exception as exc:  # noqa: BLE001 - every job will report it; no crash loop
            log.error("model load failed; jobs will fail with the reason until it is fixed: %s", exc)
    # one thread per job the worker may hold, so every job taken can join the scheduler's batch
    executor = ThreadPoolExecutor(max_workers=settings.max_batch_size + 2, thread_name_prefix="job")
    config: dict[str, Any] = {"concurrency_modifier": lambda current: settings.max_batch_size}
    if settings.runpod_stream_handler:
        config.update(handler=make_stream_handler(service, executor), return_aggregate_stream=True)
    else:
        config["handler"] = make_handler(service, executor)
    runpod.serverless.start(config)
