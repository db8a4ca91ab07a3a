"""Running the HTTP server: uvicorn with this worker's bounds on connections, and ``/ping`` alone on a second port
(``PORT_HEALTH``) for load balancers, both in one event loop."""

from __future__ import annotations

import logging

from ..core.settings import Settings
from .app import create_app
from .connections import FD_RESERVE, open_files, raise_file_limit

log = logging.getLogger(__name__)


class PingOnly:
    """ASGI app for ``PORT_HEALTH``: ``GET /ping`` answered by the main app (same state), 404 for anything else."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/ping":
            return await self.app(scope, receive, send)
        if scope["type"] == "http":  # answered unread: the connection closes rather than drain a body
            body = b'{"detail":"only /ping is served on this port (PORT_HEALTH)"}'
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                       (b"connection", b"close")]
            await send({"type": "http.response.start", "status": 404, "headers": headers})
            await send({"type": "http.response.body", "body": body})


async def serve_with_health(main, health) -> None:
    """Run the main server and the ``/ping`` server in one event loop; the main one owns the signals (SIGTERM ends
    both, after the main server's graceful shutdown)."""
    import asyncio
    import contextlib

    health.capture_signals = contextlib.nullcontext  # signals stop the main server; it then stops this one
    task = asyncio.create_task(health.serve())
    try:
        await main.serve()
    finally:
        health.should_exit = True
        await task


#: Connections the ``PORT_HEALTH`` server keeps open at most (its own cap, apart from ``MAX_CONNECTIONS``).
HEALTH_CONNECTIONS = 64


def server_config(app, settings, host: str, port: int, cap: int, reserved_fds: int, **extra):
    """uvicorn's configuration with this worker's bounds on connections (:mod:`.connections`)."""
    import uvicorn
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    from .connections import guarded_protocol

    protocol = guarded_protocol(AutoHTTPProtocol, max_connections=cap, header_timeout_s=settings.header_timeout_s,
                                reserved_fds=reserved_fds)
    return uvicorn.Config(app, host=host, port=port, log_config=None, http=protocol,
                          timeout_keep_alive=max(1, min(5, int(settings.header_timeout_s))), **extra)


def serve(settings: Settings, host: str, port: int) -> int:
    """Serve the app on ``host:port`` (and ``/ping`` alone on ``PORT_HEALTH`` when set) until a signal ends it."""
    import uvicorn

    health_port = settings.port_health
    log.info("serving on http://%s:%d (model %s)", host, port, settings.model_path)
    app = create_app(settings)
    file_limit = raise_file_limit()
    with_health = health_port is not None and health_port != port
    # descriptors for everything but client connections: those open now, a margin, and the health port's share
    reserved = open_files() + FD_RESERVE + (HEALTH_CONNECTIONS if with_health else 0)
    log.info("at most %d connections (MAX_CONNECTIONS, open-file limit %d); request heads within %g s "
             "(HEADER_TIMEOUT_S), bodies within %g s (BODY_TIMEOUT_S)", min(settings.max_connections,
             file_limit - reserved), file_limit, settings.header_timeout_s, settings.body_timeout_s)
    main = uvicorn.Server(server_config(app, settings, host, port, settings.max_connections, reserved,
                                         timeout_graceful_shutdown=60))
    if not with_health:
        main.run()
        return 0
    import asyncio

    log.info("serving /ping also on http://%s:%d (PORT_HEALTH)", host, health_port)
    health = uvicorn.Server(server_config(PingOnly(app), settings, host, health_port, HEALTH_CONNECTIONS,
                                           reserved - HEALTH_CONNECTIONS, lifespan="off", access_log=False))
    asyncio.run(serve_with_health(main, health))
    return 0
