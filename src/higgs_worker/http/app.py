"""The FastAPI application: wiring, lifespan (model preload, job store), error shapes, middleware.

The middleware are plain ASGI (no ``BaseHTTPMiddleware``, which would put streamed bodies behind an extra task and
buffer). From the outside in: CORS (when configured; it answers preflights, which carry no key), the security
headers (:mod:`.security`), request counting, the API key check (headers only), the body gate (:mod:`.limits`:
which routes take a body, its size, how many at once, its deadline; it reads the body), then the routes.

Every error answers in OpenAI's shape (:func:`error_body`): ``type`` is ``server_error`` for a 5xx (the model not
ready, the job store down, a GPU fault), ``authentication_error`` for a 401, else ``invalid_request_error``. A JSON
route sent a body without ``Content-Type: application/json`` answers 415 saying so: the body is not read as JSON
on a guess, since a browser page may send ``text/plain`` (or no type) cross-origin without asking first.
"""

from __future__ import annotations

import asyncio
import email.message
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ..asr.metrics import ASRMetrics
from ..core.errors import OPENAI_FIELD_HINTS, DeviceFault, RequestError, public_error, unknown_field
from ..core.settings import Settings, get_settings
from ..jobs.memory import JobStore
from ..jobs.runner import JobRunner
from ..jobs.state import Job, StoreUnavailable
from ..speech import SpeechService
from .auth import RequireKey
from .docs import render_docs
from .limits import BodyBudget, BodyGate
from .metrics import Metrics
from .security import SecurityHeaders

log = logging.getLogger(__name__)


def error_body(message: str, param: str | None = None, kind: str = "invalid_request_error") -> dict:
    """OpenAI's error shape, which the official clients parse; RunPod-style routes add ``error`` strings."""
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def _is_json(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` is JSON, as FastAPI decides whether to read a body as JSON."""
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


def _not_json_message(exc: RequestValidationError, content_type: str | None) -> str | None:
    """The refusal of a body sent as another type to a route that reads JSON, or None when that is not the case.

    FastAPI reads a body as JSON only under a JSON ``Content-Type``; any other leaves it bytes, which fail
    validation as a whole (``loc`` is just ``body``) however good the JSON in them. Form routes fail on their fields.
    """
    if _is_json(content_type) or not any(tuple(e.get("loc", ())) == ("body",) for e in exc.errors()):
        return None
    sent = f"is {content_type.split(';')[0].strip()!r}" if content_type else "is missing"
    return (f"must be JSON sent with the header `Content-Type: application/json`, and this request's Content-Type "
            f"{sent} (with curl: --json, or -H 'Content-Type: application/json')")


def _validation_message(exc: RequestValidationError, path: str = "") -> tuple[str, str]:
    errors = exc.errors()
    speech = path.startswith("/v1/audio/speech")
    # a recognised mix-up (`text` for `input`) says more than the `input` it leaves missing: report it first
    mixed = [e for e in errors if speech and e.get("type") == "extra_forbidden"
             and ".".join(str(p) for p in e.get("loc", ()) if p != "body") in OPENAI_FIELD_HINTS]
    first = (mixed or errors)[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    field = ".".join(loc) or "body"
    msg = first.get("msg", "invalid value").removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        msg = unknown_field(field, OPENAI_FIELD_HINTS) if speech else "unknown field"
    elif first.get("type") == "json_invalid":
        field, msg = "body", "is not valid JSON"
    return field, msg


class CountRequests:
    """Counts every answered request by route, method and status (refusals by the outer layers too)."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500
        counted = False

        def count() -> None:
            nonlocal counted
            if not counted:
                counted = True
                path = getattr(scope.get("route"), "path", "unmatched")
                self.metrics.requests.labels(path, scope["method"], str(status)).inc()

        async def counting_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                count()  # before the last byte leaves, so a client's next request sees it counted
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            count()


def _preload(app: FastAPI) -> None:
    try:
        app.state.service.holder.get()
    except Exception as exc:  # noqa: BLE001 - reported on /health and /ping, not a crash loop
        public_error(exc, "model load at start")  # the detail goes to the log once, under the id callers see


def create_app(settings: Settings | None = None, service: SpeechService | None = None) -> FastAPI:
    settings = settings or get_settings()
    service = service or SpeechService(settings)
    metrics = Metrics()
    service.asr_metrics = ASRMetrics(metrics.registry)  # speech checks show on /metrics beside synthesis

    def engine_loaded(engine) -> None:
        engine.scheduler.on_step = metrics.batch_size.observe
        metrics.model_load_seconds.set(service.holder.load_s or 0.0)
        metrics.model_ready.set(1)

    service.holder.on_load.append(engine_loaded)
    runner = JobRunner(service)

    def work(job: Job, emit) -> dict:
        queued = (job.started or time.time()) - job.created
        output = runner.run_job(job.input, job.cancel, emit, job_id=job.id, queued_s=queued,
                                progress=lambda done: app.state.jobs.report(job, done))
        if "error" not in output:
            metrics.observe_result(output.get("duration_s", 0.0), output.get("generation_s", 0.0),
                                   output.get("timings", {}).get("first_audio"))
        return output

    def jobs_changed() -> None:
        try:
            counts = app.state.jobs.counts()["jobs"]
        except StoreUnavailable:
            return  # the shared store is down: the gauges keep their last values
        metrics.queue_depth.set(counts["inQueue"])
        metrics.jobs_running.set(counts["inProgress"])

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Requests wait on the scheduler from worker threads; the default pool (cores + 4) would cap how many
        # requests can share a batch, so size it for the configured concurrency.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=settings.max_concurrent_jobs + 8, thread_name_prefix="request"))
        limits = dict(workers=settings.max_batch_size, retention_s=settings.job_retention_s,
                      timeout_s=settings.job_timeout_s, on_change=jobs_changed, max_open=settings.max_concurrent_jobs,
                      retain_max=settings.job_retain_max, retain_bytes=settings.job_retain_bytes,
                      stream_buffer=settings.stream_buffer_pieces, stall_s=settings.stream_stall_timeout_s,
                      describe_error=public_error)
        if settings.job_store.strip().lower() == "memory":
            app.state.jobs = JobStore(work, **limits)
        else:  # jobs shared by every replica on the same Redis
            from ..jobs.redis_store import RedisJobStore  # redis is imported only when it is used
            from ..jobs.webhooks import WebhookSender

            def notify(url: str, view: dict, read=None) -> None:  # read: the output from Redis when sent
                sender = getattr(app.state, "webhooks", None)
                if sender is None:
                    sender = app.state.webhooks = WebhookSender.from_settings(settings)
                sender.send(url, view, read)

            app.state.jobs = RedisJobStore(settings.job_store.strip(), work, lease_s=settings.job_lease_s,
                                           max_attempts=settings.job_max_attempts, notify=notify, **limits)
            if not await asyncio.to_thread(app.state.jobs.ping):
                log.warning("job store (Redis at %s) unreachable at start; job routes answer 503 until it is "
                            "back", app.state.jobs.where)
        if settings.preload_models:
            threading.Thread(target=_preload, args=(app,), name="model-load", daemon=True).start()
        yield
        app.state.jobs.shutdown(wait=True)

    # /docs and /redoc are this server's own page (.docs): FastAPI's load their script from a CDN
    app = FastAPI(title="higgs-audio-worker", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Higgs Audio V2 text-to-speech: RunPod-compatible jobs, OpenAI-compatible speech.")
    app.state.settings = settings
    app.state.service = service
    app.state.metrics = metrics
    app.state.speech_inflight = 0

    body_routes: list[APIRoute] = []  # the routes that read a body, filled in once they are all added (below)

    def takes_body(scope) -> bool:
        return any(route.matches(scope)[0] is Match.FULL for route in body_routes)

    # Each add_middleware wraps the ones added before it: the last added is the outermost.
    app.state.body_budget = BodyBudget(settings.max_concurrent_bodies, settings.max_body_bytes_in_flight)
    app.add_middleware(BodyGate, limit=settings.max_body_bytes, timeout_s=settings.body_timeout_s,
                       budget=app.state.body_budget, takes_body=takes_body)
    app.add_middleware(RequireKey, keys=settings.api_key_list, public_docs=settings.public_docs)
    app.add_middleware(CountRequests, metrics=metrics)
    app.add_middleware(SecurityHeaders)
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["*"], allow_headers=["*"])

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError):
        return JSONResponse(error_body(str(exc), exc.field),
                            status_code=409 if exc.__class__.__name__ == "VoiceExists" else 400)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        not_json = _not_json_message(exc, request.headers.get("content-type"))
        if not_json is not None:
            return JSONResponse(error_body(f"body: {not_json}", "body"), status_code=415)
        field, msg = _validation_message(exc, request.url.path)
        return JSONResponse(error_body(f"{field}: {msg}", field), status_code=400)

    @app.exception_handler(StoreUnavailable)
    async def store_unavailable(request: Request, exc: StoreUnavailable):
        # the shared job store (JOB_STORE) is down: job routes say so; speech routes never touch it
        return JSONResponse(error_body(str(exc), kind="server_error"), status_code=503,
                            headers={"Retry-After": "5"})

    @app.exception_handler(DeviceFault)
    async def device_fault(request: Request, exc: DeviceFault):
        # the GPU failed unrecoverably: this worker refuses work (and /ping says 503) until it is replaced
        return JSONResponse(error_body(str(exc), kind="server_error"), status_code=503)

    @app.exception_handler(Exception)
    async def unexpected_error(request: Request, exc: Exception):
        # The caller gets a generic reason and an id; the detail is logged under that id.
        return JSONResponse(error_body(public_error(exc, f"{request.method} {request.url.path}"), kind="server_error"),
                            status_code=500)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        kind = ("server_error" if exc.status_code >= 500 else "authentication_error" if exc.status_code == 401
                else "invalid_request_error")
        return JSONResponse(error_body(str(exc.detail), kind=kind), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from . import routes_jobs, routes_openai, routes_realtime, routes_voices

    static = Path(__file__).parent / "static"
    page = (static / "index.html").read_text(encoding="utf-8")

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    # The studio's modules and styles, public like the page (they hold no data; the page asks for the key).
    app.mount("/static", StaticFiles(directory=static), name="static")

    docs_page: list[str] = []

    @app.get("/docs", include_in_schema=False)
    @app.get("/redoc", include_in_schema=False)
    async def docs() -> HTMLResponse:
        if not docs_page:
            docs_page.append(render_docs(app.openapi()))
        return HTMLResponse(docs_page[0])

    @app.get("/metrics", tags=["Operations"], summary="Prometheus metrics")
    async def metrics_route() -> Response:
        metrics.bodies_receiving.set(app.state.body_budget.receiving)
        metrics.body_bytes_held.set(app.state.body_budget.reserved)
        try:
            metrics.queue_depth.set(app.state.jobs.queue_depth())
        except StoreUnavailable:
            pass  # the shared job store is down: the last value stays
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    routers = (routes_jobs.router, routes_openai.router, routes_voices.router, routes_realtime.router)
    for router in routers:
        app.include_router(router)
    body_routes.extend(route for route in (*app.router.routes, *(r for router in routers for r in router.routes))
                       if isinstance(route, APIRoute) and route.body_field is not None)
    return app
