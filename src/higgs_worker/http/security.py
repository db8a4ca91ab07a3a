"""Security headers on every response: no framing, no MIME sniffing, no referrer, and a content security policy.

Pages (``text/html``: the studio at ``/``, the API description at ``/docs``) may load scripts, styles and media
from this server only (``blob:`` for audio the page made itself, ``data:`` for the empty icon), never inline
script, and may not be framed (``frame-ancestors 'none'`` and ``X-Frame-Options: DENY``). Every other response
(JSON, audio, assets) gets ``default-src 'none'``: opened on its own it can run nothing.
"""

from __future__ import annotations

__all__ = ["OTHER_POLICY", "PAGE_POLICY", "SecurityHeaders"]

PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
               "media-src 'self' blob: data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
OTHER_POLICY = "default-src 'none'; frame-ancestors 'none'"

_COMMON = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
           (b"referrer-policy", b"no-referrer")]


class SecurityHeaders:
    """Pure ASGI middleware adding the headers above to each response start (headers a route set are kept)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {name.lower() for name, _ in headers}
                html = any(name.lower() == b"content-type" and value.lower().startswith(b"text/html")
                           for name, value in headers)
                policy = PAGE_POLICY if html else OTHER_POLICY
                for name, value in [*_COMMON, (b"content-security-policy", policy.encode())]:
                    if name not in present:
                        headers.append((name, value))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
