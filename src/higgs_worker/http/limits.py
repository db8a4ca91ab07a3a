"""Request bodies within bounds: which routes take one, how large, how many at once, and for how long.

:class:`BodyGate` is pure ASGI middleware, inside the key check (a request without a valid key never reaches it).
For each request that announces a body (``Content-Length`` above 0, or ``Transfer-Encoding``):

- a route that takes no body (``/ping``, ``/health``, ``/``, ``/static/…``, ``/status/…``, unknown paths …)
  answers 413 without reading a byte, and the connection is closed rather than left to drain the body;
- a body over ``MAX_BODY_BYTES`` by its declared length is 413 before reading;
- at most ``MAX_CONCURRENT_BODIES`` bodies are being received at once, and the bodies held at once (from
  admission until their request is answered) add up to at most ``MAX_BODY_BYTES_IN_FLIGHT``: the declared length
  is reserved before reading (a chunked body reserves as it arrives); a body that does not fit is 503 with
  ``Retry-After`` before a byte is read;
- the whole body must arrive within ``BODY_TIMEOUT_S`` (408 beyond).

Every refusal names its setting and closes the connection, so an unread body is never drained.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["BodyBudget", "BodyGate", "refusal"]


def refusal(status: int, message: str, param: str | None = "body", close: bool = True,
            extra: list[tuple[bytes, bytes]] | None = None) -> tuple[dict, dict]:
    """The two ASGI messages of a JSON error answer in OpenAI's shape (``Connection: close`` unless told)."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    body = json.dumps({"error": {"message": message, "type": kind, "param": param, "code": None}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    headers += extra or []
    return ({"type": "http.response.start", "status": status, "headers": headers},
            {"type": "http.response.body", "body": body})


def declared_body(headers: list[tuple[bytes, bytes]]) -> tuple[bool, int | None]:
    """Whether the request announces a body, and its declared length (``None`` for chunked or unreadable)."""
    length: int | None = None
    chunked = False
    for name, value in headers:
        name = name.lower()
        if name == b"content-length":
            text = value.strip()
            length = int(text) if text.isdigit() else None
            if length is None:
                return True, None
        elif name == b"transfer-encoding":
            chunked = True
    if chunked:
        return True, None
    return bool(length), length


@dataclass
class BodyBudget:
    """What bodies hold now: how many are being received, and how many bytes are reserved."""

    max_bodies: int
    max_bytes: int
    receiving: int = 0
    reserved: int = 0

    def admit(self, size: int) -> str | None:
        """Take a receiving slot and ``size`` bytes; the setting that refuses it, or None."""
        if self.receiving >= self.max_bodies:
            return f"{self.receiving} request bodies are being received; the limit is {self.max_bodies} " \
                   "(MAX_CONCURRENT_BODIES)"
        if self.reserved + size > self.max_bytes:
            return f"request bodies hold {self.reserved} bytes; this one would pass {self.max_bytes} " \
                   "(MAX_BODY_BYTES_IN_FLIGHT)"
        self.receiving += 1
        self.reserved += size
        return None

    def grow(self, more: int) -> bool:
        if self.reserved + more > self.max_bytes:
            return False
        self.reserved += more
        return True


class _Refused(Exception):
    def __init__(self, status: int, message: str, retry: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retry = retry


class BodyGate:
    """Admits, bounds and reads request bodies (see the module's description); hands the app the whole body."""

    def __init__(self, app, *, limit: int, timeout_s: float, budget: BodyBudget,
                 takes_body: Callable[[dict], bool]) -> None:
        self.app = app
        self.limit = limit
        self.timeout_s = timeout_s
        self.budget = budget
        self.takes_body = takes_body

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        announced, length = declared_body(scope.get("headers") or [])
        if not announced:
            return await self.app(scope, receive, send)
        if not self.takes_body(scope):
            return await self._answer(send, 413, f"this route ({scope['method']} {scope['path']}) takes no "
                                                 "request body")
        if length is not None and length > self.limit:
            return await self._answer(send, 413, f"request body is over {self.limit} bytes (MAX_BODY_BYTES)")
        reserved = length or 0
        why = self.budget.admit(reserved)
        if why is not None:
            return await self._answer(send, 503, why, retry=True)
        receiving = True
        try:
            try:
                async with asyncio.timeout(self.timeout_s):
                    body, reserved = await self._read(receive, reserved)
            except TimeoutError:
                raise _Refused(408, f"the request body did not arrive within {self.timeout_s:g} s "
                                    "(BODY_TIMEOUT_S)") from None
            finally:
                self.budget.receiving -= 1
                receiving = False
            if body is None:
                return  # the client went away
            pending: list[bytes] = [body]
            del body

            async def replay():
                if pending:
                    return {"type": "http.request", "body": pending.pop(), "more_body": False}
                return await receive()  # later calls: disconnect detection

            await self.app(scope, replay, send)
        except _Refused as refused:
            await self._answer(send, refused.status, str(refused), retry=refused.retry)
        finally:
            if receiving:
                self.budget.receiving -= 1
            self.budget.reserved -= reserved

    async def _read(self, receive, reserved: int) -> tuple[bytes | None, int]:
        """The whole body (None if the client left), and the bytes now reserved for it."""
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None, reserved
            piece = message.get("body", b"")
            total += len(piece)
            if total > self.limit:
                raise _Refused(413, f"request body is over {self.limit} bytes (MAX_BODY_BYTES)")
            if total > reserved:  # chunked: reserve as it arrives
                if not self.budget.grow(total - reserved):
                    raise _Refused(503, f"request bodies would hold more than {self.budget.max_bytes} bytes "
                                        "(MAX_BODY_BYTES_IN_FLIGHT)", retry=True)
                reserved = total
            chunks.append(piece)
            if not message.get("more_body", False):
                body = b"".join(chunks)
                chunks.clear()
                return body, reserved

    @staticmethod
    async def _answer(send, status: int, message: str, retry: bool = False) -> None:
        start, body = refusal(status, f"body: {message}", extra=[(b"retry-after", b"2")] if retry else None)
        await send(start)
        await send(body)
