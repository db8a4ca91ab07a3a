"""RunPod-compatible job routes with the hosted API's shapes, plus ``/health`` and ``/ping``.

The envelope takes RunPod's ``webhook`` (the final status POSTed there, see :mod:`higgs_worker.jobs.webhooks`) and
``policy`` (``executionTimeout``, ``ttl``), with RunPod's bounds. After an unrecoverable GPU error the routes refuse
new work with 503 and the reason, and ``/ping`` answers 503, so a load balancer replaces the worker.

With a shared store (``JOB_STORE=redis://…``) every store call is network I/O, so it runs off the event loop, and
any replica answers for any job; an unreachable store is answered 503 (see the app's handler).

With ``API_KEYS`` set, a job belongs to the key that submitted it: another key gets 404 on its ``/status``,
``/stream``, ``/cancel`` and ``/retry``, and ``/purge-queue`` cancels only the caller's own queued jobs, unless
``API_KEYS_SHARE_JOBS`` makes all keys one tenant. The store keeps a digest of the key, never the key.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..core.errors import RequestError, public_error
from ..core.settings import get_settings
from ..jobs.request import JobRequest
from ..jobs.state import FINAL, Job, JobStoreAPI, NotRetryable, QueueFull, approx_size
from ..jobs.webhooks import MAX_URL_CHARS, WebhookBusy, WebhookRefused, WebhookSender
from ..weights.demo import is_tiny_model
from ..weights.progress import current as current_download

router = APIRouter(tags=["RunPod-compatible jobs"])

#: RunPod's bounds: executionTimeout above 5 s; ttl from 10 s to a week.
MIN_EXECUTION_TIMEOUT_MS = 5000
MIN_TTL_MS = 10_000
MAX_TTL_MS = 7 * 24 * 3600 * 1000


class JobPolicy(BaseModel):
    """RunPod's per-job ``policy``."""

    model_config = ConfigDict(extra="forbid")
    executionTimeout: int | None = Field(  # noqa: N815 - RunPod's name
        None, ge=MIN_EXECUTION_TIMEOUT_MS,
        description="Most milliseconds the job may run before it ends TIMED_OUT; at most `JOB_TIMEOUT_S` (the "
                    "default).")
    ttl: int | None = Field(
        None, ge=MIN_TTL_MS, le=MAX_TTL_MS,
        description="Milliseconds from submission after which the job is forgotten whatever its state (a queued job "
                    "never runs, a running one is stopped); a finished job is kept no longer than `JOB_RETENTION_S`.")

    @field_validator("executionTimeout")
    @classmethod
    def _within_job_timeout(cls, value: int | None) -> int | None:
        limit = int(get_settings().job_timeout_s * 1000)
        if value is not None and value > limit:
            raise ValueError(f"is {value} ms; the most is {limit} ms (JOB_TIMEOUT_S)")
        return value


class RunBody(BaseModel):
    """RunPod's request envelope: the job input under ``input``, and optionally ``webhook`` and ``policy``."""

    model_config = ConfigDict(extra="forbid")
    input: dict[str, Any] = Field(..., description="The job input: `transcript`, `ref_audio`, `scene_prompt`, ...")
    webhook: str | None = Field(None, max_length=MAX_URL_CHARS,
                                description="URL that gets the job's final status JSON (as `/status` shows it) by POST "
                                            "when it ends; a non-200 answer is retried `WEBHOOK_RETRIES` times, "
                                            "`WEBHOOK_RETRY_DELAY_S` apart. https only, public addresses only.")
    policy: JobPolicy | None = Field(None, description="`executionTimeout` and `ttl`, in milliseconds.")


async def wait_for_event(event, timeout: float) -> bool:
    """Wait for a thread's event without holding a worker thread (many clients may wait at once)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not event.is_set():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def _jobs(request: Request) -> JobStoreAPI:
    return request.app.state.jobs


def tenant(request: Request) -> str | None:
    """Who owns the jobs this request makes and may see: a digest of its API key (the auth layer has already
    checked it is a configured one), or None when no keys are set or ``API_KEYS_SHARE_JOBS`` is on."""
    settings = request.app.state.settings
    if not settings.api_key_list or settings.api_keys_share_jobs:
        return None
    _, _, token = request.headers.get("authorization", "").strip().partition(" ")
    return hashlib.sha256(b"higgs-worker job tenant\0" + token.strip().encode("latin-1")).hexdigest()[:32]


async def _call(store: JobStoreAPI, fn, *args):
    """A store call: in place for the memory store, on a thread for a shared one (it waits on the network)."""
    return await asyncio.to_thread(fn, *args) if store.shared else fn(*args)


async def _wait_done(store: JobStoreAPI, job: Job, timeout: float) -> Job:
    """The job once final, or as it is when ``timeout`` runs out. A shared store's job is a snapshot, so it is
    read again until final (any replica may be running it)."""
    if not store.shared:
        await wait_for_event(job.done, timeout)
        return job
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while job.status not in FINAL and loop.time() < deadline:
        await asyncio.sleep(0.1)
        job = await _call(store, store.get, job.id) or job
    return job


async def _job_or_404(request: Request, job_id: str):
    store = _jobs(request)
    job = await _call(store, store.get, job_id, tenant(request))
    if job is None:
        raise HTTPException(status_code=404, detail=f"no job {job_id!r} (unknown, or past its retention)")
    return job


def device_fault(request: Request):
    """The unrecoverable GPU error this process hit, if any: nothing can be generated here again."""
    holder = request.app.state.service.holder
    return holder.get().fault if holder.ready else None


def _refuse_when_faulted(request: Request) -> None:
    fault = device_fault(request)
    if fault is not None:
        raise HTTPException(status_code=503, detail=str(fault))


def _webhooks(request: Request) -> WebhookSender:
    """The app's webhook sender, made on first use (its threads start only when a job names a webhook)."""
    state = request.app.state
    sender = getattr(state, "webhooks", None)
    if sender is None:
        sender = state.webhooks = WebhookSender.from_settings(state.settings)
    return sender


async def _check_webhook(sender: WebhookSender, url: str) -> None:
    """Check a webhook URL on the sender's own threads (resolving its host may be slow: never on the pool that
    serves requests), waiting at most ``WEBHOOK_TIMEOUT_S``."""
    try:
        await asyncio.wait_for(asyncio.wrap_future(sender.check_soon(url)), sender.timeout_s)
    except WebhookRefused as exc:
        raise RequestError("webhook", str(exc)) from None
    except WebhookBusy as exc:
        raise HTTPException(status_code=503, detail=f"webhook: {exc}", headers={"Retry-After": "2"}) from None
    except TimeoutError:
        raise RequestError("webhook", f"its host did not resolve within {sender.timeout_s:g} s "
                                      "(WEBHOOK_TIMEOUT_S)") from None


async def _submit(request: Request, body: RunBody) -> Job:
    """Check the webhook and policy (400 when refused), then validate the input and queue it. A bad input is
    answered FAILED at once and never queued: only its error message is kept (for ``/status``), not the input.
    The job keeps its input as sent, so ``/retry`` can run it again when it fails."""
    _refuse_when_faulted(request)
    store = _jobs(request)
    owner = tenant(request)
    on_end = None
    webhook = None  # a shared store keeps the URL with the job: whichever replica ends it sends the webhook
    if body.webhook is not None:
        sender = _webhooks(request)
        await _check_webhook(sender, body.webhook)
        if store.shared:
            webhook = body.webhook
        else:  # the delivery reads the output from the store when it is sent: it never holds a copy
            on_end = sender.end_listener(body.webhook, store.get)

    policy = body.policy or JobPolicy()
    timeout_s = None if policy.executionTimeout is None else policy.executionTimeout / 1000
    ttl_s = None if policy.ttl is None else policy.ttl / 1000
    try:
        JobRequest.parse(body.input)
    except RequestError as exc:
        error = str(exc)
        if store.shared:
            return await asyncio.to_thread(lambda: store.reject(error, ttl_s=ttl_s, webhook=webhook, tenant=owner))
        return store.reject(error, ttl_s=ttl_s, on_end=on_end, tenant=owner)
    try:
        if store.shared:
            return await asyncio.to_thread(lambda: store.submit(
                body.input, input_size=approx_size(body.input), timeout_s=timeout_s, ttl_s=ttl_s, webhook=webhook,
                tenant=owner))
        return store.submit(body.input, input_size=approx_size(body.input), timeout_s=timeout_s, ttl_s=ttl_s,
                            on_end=on_end, tenant=owner)
    except QueueFull as exc:
        raise HTTPException(status_code=429, detail=str(exc), headers={"Retry-After": "2"}) from None
    except RuntimeError as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from None


@router.post("/run", summary="Queue a job; returns its id (FAILED at once, with the reason, for a bad input)")
async def run(body: RunBody, request: Request) -> dict[str, Any]:
    job = await _submit(request, body)
    out: dict[str, Any] = {"id": job.id, "status": job.status}
    if job.error is not None:
        out["error"] = job.error
    return out


@router.post("/runsync", summary="Run a job and wait for its result")
async def runsync(body: RunBody, request: Request,
                  wait: int | None = Query(None, ge=1000, le=300000, description="Most milliseconds to wait")) -> dict:
    job = await _submit(request, body)
    timeout = (wait / 1000) if wait else request.app.state.settings.runsync_wait_s
    job = await _wait_done(_jobs(request), job, timeout)
    return job.view()


@router.get("/status/{job_id}", summary="A job's state and, when completed, its output")
async def status(job_id: str, request: Request) -> dict[str, Any]:
    return (await _job_or_404(request, job_id)).view()


@router.get("/stream/{job_id}", summary="Stream pieces produced since the last call")
async def stream(job_id: str, request: Request) -> dict[str, Any]:
    job = await _job_or_404(request, job_id)
    store = _jobs(request)
    pieces = await _call(store, store.take_stream, job)
    out: dict[str, Any] = {"id": job.id, "status": job.status, "stream": [{"output": p} for p in pieces]}
    if job.error is not None:
        out["error"] = job.error
    return out


@router.post("/cancel/{job_id}", summary="Cancel a queued or running job")
async def cancel(job_id: str, request: Request) -> dict[str, Any]:
    store = _jobs(request)
    job = await _call(store, store.cancel, job_id, tenant(request))
    if job is None:
        raise HTTPException(status_code=404, detail=f"no job {job_id!r}")
    if job.status not in FINAL:
        job = await _wait_done(store, job, 30)
    return {"id": job.id, "status": job.status}


@router.post("/retry/{job_id}", summary="Queue a FAILED or TIMED_OUT job again, same id and input",
             responses={404: {"description": "unknown, or past its retention"},
                        409: {"description": "not FAILED or TIMED_OUT, or its input was refused at submission"}})
async def retry(job_id: str, request: Request) -> dict[str, Any]:
    _refuse_when_faulted(request)
    store = _jobs(request)
    try:
        job = await _call(store, store.retry, job_id, tenant(request))
    except NotRetryable as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    except QueueFull as exc:
        raise HTTPException(status_code=429, detail=str(exc), headers={"Retry-After": "2"}) from None
    except RuntimeError as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from None
    if job is None:
        raise HTTPException(status_code=404, detail=f"no job {job_id!r} (unknown, or past its retention)")
    return {"id": job.id, "status": job.status}


@router.post("/purge-queue", summary="Cancel every job of the caller's that has not started")
async def purge_queue(request: Request) -> dict[str, Any]:
    store = _jobs(request)
    return {"removed": await _call(store, store.purge_queue, tenant(request)), "status": "completed"}


def model_state(request: Request) -> dict[str, Any]:
    """The model's state, with ``demo`` (a tiny random model, whose audio is noise by design) and, while a fetch
    runs before the first load, ``download``: its progress (files, bytes, rate, time left)."""
    state = _engine_state(request)
    settings = request.app.state.settings
    state["demo"] = bool(settings.higgs_demo or is_tiny_model(settings.model_path))
    if state["state"] != "ready" and (download := current_download()) is not None:
        state["download"] = download
    return state


def _engine_state(request: Request) -> dict[str, Any]:
    holder = request.app.state.service.holder
    if holder.ready and holder.get().fault is not None:  # the GPU failed: this process cannot generate again
        return {"state": "failed", "error": str(holder.get().fault)}
    if holder.ready:
        engine = holder.get()
        scheduler = engine.scheduler
        return {"state": "ready", "decoding": scheduler.active, "waiting": scheduler.pending.qsize(),
                "source": engine.loaded.source or None,
                # the decode path in use, why, the self-check's figures; the spoken canary where fitness checks ran
                "decode": engine.decode_report(), "canary": engine.canary}
    if holder.error is not None:  # a generic reason and an error id: the detail (paths, ...) is in the log
        return {"state": "failed", "error": public_error(holder.error)}
    return {"state": "loading" if holder.loading else "not_loaded"}


@router.get("/health", summary="Job and worker counts, model state")
async def health(request: Request) -> dict[str, Any]:
    store = _jobs(request)
    return {**await _call(store, store.counts), "model": model_state(request),
            "limits": {"max_text_chars": request.app.state.settings.max_text_chars}}


@router.get("/ping", summary="200 when ready, 204 while the model loads, 503 when it failed to load or the GPU "
                             "failed",
            responses={200: {"description": "ready"}, 204: {"description": "initialising"},
                       503: {"description": "model failed to load, or an unrecoverable GPU error"}})
async def ping(request: Request) -> Response:
    state = model_state(request)
    if state["state"] == "ready":
        return JSONResponse({"status": "healthy"})
    if state["state"] == "failed":
        return JSONResponse({"status": "unhealthy", "error": state["error"]}, status_code=503)
    if not request.app.state.settings.preload_models and state["state"] == "not_loaded":
        return JSONResponse({"status": "healthy", "model": "loads on the first request"})
    return Response(status_code=204)
