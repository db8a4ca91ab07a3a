"""The HTTP server: RunPod-compatible job routes, OpenAI-compatible speech, realtime speech, voices, health, metrics.

An entry point: it may import every group below it. The modules:

* :mod:`.app`: :func:`~.app.create_app`, the FastAPI app: its routes, middleware, lifespan and error answers.
* :mod:`.serve`: running it: uvicorn within the connection bounds, and ``/ping`` alone on ``PORT_HEALTH``.
* :mod:`.routes_openai`: ``POST /v1/audio/speech`` (whole, streamed audio, SSE) and ``/captioned``.
* :mod:`.routes_realtime`: the WebSocket for voice agents: text streamed in, speech streamed out.
* :mod:`.routes_jobs`: RunPod's ``/run``, ``/runsync``, ``/status``, ``/stream``, ``/cancel``, ``/retry``,
  ``/purge-queue``, and ``/health``.
* :mod:`.routes_voices`: the voice library: list, upload, delete, and a voice's reference audio.
* :mod:`.streaming`: streamed responses: the hand-off from the generating thread, writes that detect a stalled client.
* :mod:`.auth`: API keys (bearer header), checked before a body is read.
* :mod:`.limits`: request bodies within bounds (which routes take one, how large, how many at once, how long).
* :mod:`.connections`: connections within bounds (a deadline for each request head, a cap on open connections).
* :mod:`.security`: security headers on every response.
* :mod:`.docs`: the API description as one local HTML page.
* :mod:`.metrics`: the Prometheus metrics of the server.
"""

from .app import create_app

__all__ = ["create_app"]
