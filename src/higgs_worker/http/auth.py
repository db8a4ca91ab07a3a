"""Bearer-key authentication (constant-time comparison) for every route but ``/ping`` and ``/health``."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request

OPEN_PATHS = frozenset({"/ping", "/health", "/"})  # "/" is the static try-it page; it calls the API with a key


def require_key(request: Request) -> None:
    keys: list[str] = request.app.state.settings.api_key_list
    if not keys or request.url.path in OPEN_PATHS:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    given = token.strip().encode()
    matches = [hmac.compare_digest(given, key.encode()) for key in keys]  # all compared: no early exit
    ok = scheme.lower() == "bearer" and bool(given) and any(matches)
    if not ok:
        raise HTTPException(status_code=401, detail="missing or invalid API key (Authorization: Bearer <key>)",
                            headers={"WWW-Authenticate": "Bearer"})
