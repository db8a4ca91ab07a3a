"""RunPod-compatible job routes with the hosted API's shapes, plus ``/health`` and ``/ping``."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ..jobs import FINAL, Job, JobStore, QueueFull
from ..schema import RequestError
from ..service import public_error

router = APIRouter(tags=["RunPod-compatible jobs"])


class RunBody(BaseModel):
    """RunPod's request envelope: the job input under ``input``."""

    model_config = ConfigDict(extra="forbid")
    input: dict[str, Any] = Field(..., description="The job input: `transcript`, `ref_audio`, `scene_prompt`, ...")


async def wait_for_event(event, timeout: float) -> bool:
    """Wait for a thread's event without holding a worker thread (many clients may wait at once)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not event.is_set():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def _jobs(request: Request) -> JobStore:
    return request.app.state.jobs


def _job_or_404(request: Request, job_id: str):
    job = _jobs(request).get(job_id)
    if job is None:
        raise HTTPException(status_code=404, detail=f"no job {job_id!r} (unknown, or past its retention)")
    return job


def _submit(request: Request, body: RunBody) -> Job:
    """Validate the input, then queue it. A bad input is answered FAILED at once and never queued: only its error
    message is kept (for ``/status``), not the input."""
    store = _jobs(request)
    try:
        parsed = request.app.state.service.parse_job(body.input)
    except RequestError as exc:
        return store.reject(str(exc))
    try:
        return store.submit(parsed)
    except QueueFull as exc:
        raise HTTPException(status_code=429, detail=str(exc), headers={"Retry-After": "2"}) from None
    except RuntimeError as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from None


@router.post("/run", summary="Queue a job; returns its id (FAILED at once, with the reason, for a bad input)")
async def run(body: RunBody, request: Request) -> dict[str, Any]:
    job = _submit(request, body)
    out: dict[str, Any] = {"id": job.id, "status": job.status}
    if job.error is not None:
        out["error"] = job.error
    return out


@router.post("/runsync", summary="Run a job and wait for its result")
async def runsync(body: RunBody, request: Request,
                  wait: int | None = Query(None, ge=1000, le=300000, description="Most milliseconds to wait")) -> dict:
    job = _submit(request, body)
    timeout = (wait / 1000) if wait else request.app.state.settings.runsync_wait_s
    await wait_for_event(job.done, timeout)
    return job.view()


@router.get("/status/{job_id}", summary="A job's state and, when completed, its output")
async def status(job_id: str, request: Request) -> dict[str, Any]:
    return _job_or_404(request, job_id).view()


@router.get("/stream/{job_id}", summary="Stream pieces produced since the last call")
async def stream(job_id: str, request: Request) -> dict[str, Any]:
    job = _job_or_404(request, job_id)
    pieces = _jobs(request).take_stream(job)
    out: dict[str, Any] = {"id": job.id, "status": job.status, "stream": [{"output": p} for p in pieces]}
    if job.error is not None:
        out["error"] = job.error
    return out


@router.post("/cancel/{job_id}", summary="Cancel a queued or running job")
async def cancel(job_id: str, request: Request) -> dict[str, Any]:
    job = _jobs(request).cancel(job_id)
    if job is None:
        raise HTTPException(status_code=404, detail=f"no job {job_id!r}")
    if job.status not in FINAL:
        await wait_for_event(job.done, 30)
    return {"id": job.id, "status": job.status}


@router.post("/purge-queue", summary="Cancel every job that has not started")
async def purge_queue(request: Request) -> dict[str, Any]:
    return {"removed": _jobs(request).purge_queue(), "status": "completed"}


def model_state(request: Request) -> dict[str, Any]:
    holder = request.app.state.service.holder
    if holder.ready:
        engine = holder.get()
        scheduler = engine.scheduler
        return {"state": "ready", "decoding": scheduler.active, "waiting": scheduler.pending.qsize(),
                "source": engine.loaded.source or None}
    if holder.error is not None:  # a generic reason and an error id: the detail (paths, ...) is in the log
        return {"state": "failed", "error": public_error(holder.error)}
    return {"state": "loading" if holder.loading else "not_loaded"}


@router.get("/health", summary="Job and worker counts, model state")
async def health(request: Request) -> dict[str, Any]:
    return {**_jobs(request).counts(), "model": model_state(request)}


@router.get("/ping", summary="200 when ready, 204 while the model loads, 503 when it failed",
            responses={200: {"description": "ready"}, 204: {"description": "initialising"},
                       503: {"description": "model failed to load"}})
async def ping(request: Request) -> Response:
    state = model_state(request)
    if state["state"] == "ready":
        return JSONResponse({"status": "healthy"})
    if state["state"] == "failed":
        return JSONResponse({"status": "unhealthy", "error": state["error"]}, status_code=503)
    if not request.app.state.settings.preload_models and state["state"] == "not_loaded":
        return JSONResponse({"status": "healthy", "model": "loads on the first request"})
    return Response(status_code=204)
