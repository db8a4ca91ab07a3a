"""Bearer-key authentication, checked from the request headers before anything reads the body.

Pure ASGI middleware, placed outside the body limit: a request without a valid key is answered 401 without a
byte of its body being read or parsed (and, when it announced one, the connection is closed, so the body is not
drained either). ``/ping`` and ``/health`` (load balancers), and ``/`` with its assets under
``/static/`` (the studio page, which calls the API with a key the user types) stay public; the API description
(``/docs``, ``/redoc``, ``/openapi.json``) needs a key unless ``PUBLIC_DOCS`` is set.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from .limits import declared_body

OPEN_PATHS = frozenset({"/ping", "/health", "/"})
OPEN_PREFIX = "/static/"
DOC_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})

_REFUSAL = json.dumps({"error": {"message": "missing or invalid API key (Authorization: Bearer <key>)",
                                 "type": "authentication_error", "param": None, "code": None}}).encode()


class RequireKey:
    """Refuses HTTP requests that carry no configured key with 401; lets everything through when none is set.

    Keys are compared as SHA-256 digests (equal length) with :func:`hmac.compare_digest`, against every configured
    key without stopping at a match, so neither the key's content nor which key matched shows in the timing.
    """

    def __init__(self, app, keys: list[str], public_docs: bool = False) -> None:
        self.app = app
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys]
        self._open = OPEN_PATHS | DOC_PATHS if public_docs else OPEN_PATHS

    def allowed(self, headers: list[tuple[bytes, bytes]]) -> bool:
        value = next((v for k, v in headers if k.lower() == b"authorization"), b"")
        scheme, _, token = value.strip().partition(b" ")
        given = hashlib.sha256(token.strip()).digest()
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(given, digest)
        return matched and scheme.lower() == b"bearer" and bool(token.strip())

    async def __call__(self, scope, receive, send) -> None:
        if (scope["type"] != "http" or not self._digests or scope["path"] in self._open
                or scope["path"].startswith(OPEN_PREFIX) or self.allowed(scope.get("headers") or [])):
            return await self.app(scope, receive, send)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(_REFUSAL)).encode()),
                   (b"www-authenticate", b"Bearer")]
        if declared_body(scope.get("headers") or [])[0]:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": _REFUSAL})
