"""Connections within bounds: a deadline for each request head, a cap on open connections, no draining unread bodies.

uvicorn (0.54) has a keep-alive timer but no deadline for a request head (a client may send one header byte a
minute), no hard cap on open connections (``limit_concurrency`` answers 503 but keeps accepting, so a flood of
half-sent requests runs the process out of file descriptors, and then nothing, ``/ping`` included, is accepted),
and keeps reading (and discarding) a body the app answered without reading. :func:`guarded_protocol` makes a
subclass of uvicorn's HTTP protocol class that adds:

- **a head deadline** (``HEADER_TIMEOUT_S``): counted from connecting and from each response; a connection whose
  next request head is not complete by then is closed;
- **a connection cap** (``MAX_CONNECTIONS``, and never above the open-file limit less a reserve): a connection
  beyond it closes the connection that has waited longest without a complete request head (a slow or idle
  client), so a real request still gets in during a flood; when every connection is busy with a request, the new
  one is answered 503 and closed;
- **no draining**: a response sent before its request's body was fully received closes the connection.

Each server gets its own class (its own cap and its own queue of waiting connections).
"""

from __future__ import annotations

import logging
import os
import resource
import time
from typing import Any, ClassVar

log = logging.getLogger(__name__)

__all__ = ["FD_RESERVE", "guarded_protocol", "open_files", "raise_file_limit"]

#: Descriptors kept free for everything that is not a client connection (model files, logs, Redis, S3, webhooks,
#: pipes), beyond those open when the server starts.
FD_RESERVE = 128

_BUSY_TEXT = b"every connection is busy with a request (MAX_CONNECTIONS); retry\n"
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
         b"content-length: %d\r\nretry-after: 2\r\nconnection: close\r\n\r\n%s" % (len(_BUSY_TEXT), _BUSY_TEXT))


def open_files() -> int:
    """Descriptors this process has open now."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 64


def raise_file_limit(wanted: int = 65536) -> int:
    """Raise the soft open-file limit towards the hard one (up to ``wanted``); returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def _file_limit() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 1 << 20 if soft == resource.RLIM_INFINITY else soft


def guarded_protocol(base: type, *, max_connections: int, header_timeout_s: float, reserved_fds: int) -> type:
    """A subclass of uvicorn's protocol class ``base`` with the head deadline, the cap and no draining.

    The cap in force is ``min(max_connections, open-file soft limit - reserved_fds)``, read at each new
    connection, so lowering the limit of a running process (``prlimit``) lowers the cap with it.
    """

    class Guarded(base):  # type: ignore[valid-type, misc]
        #: connections waiting for a request head, oldest first (an entry is stale once its request began)
        waiting: ClassVar[dict[Any, float]] = {}
        cap = max_connections

        def connection_made(self, transport) -> None:
            self._head_timer = None
            self._waiting_cycle = None
            super().connection_made(transport)
            limit = max(1, min(self.cap, _file_limit() - reserved_fds))
            if len(self.connections) > limit and not self._evict_one():
                self.connections.discard(self)
                transport.write(_BUSY)
                transport.close()
                return
            self._await_head()

        def connection_lost(self, exc) -> None:
            self._stop_waiting()
            super().connection_lost(exc)

        def handle_websocket_upgrade(self, *args) -> None:
            self._stop_waiting()  # a WebSocket now: its protocol owns the connection (never evicted as waiting)
            super().handle_websocket_upgrade(*args)

        def on_response_complete(self) -> None:
            unread_body = bool(getattr(self.cycle, "more_body", False)) and not getattr(self, "pipeline", None)
            super().on_response_complete()
            if unread_body and not self.transport.is_closing():
                self.transport.close()  # after the response is written; the rest of the body is never read
                return
            if not self.transport.is_closing():
                self._await_head()

        # -- the head deadline ---------------------------------------------------------------------------------

        def _await_head(self) -> None:
            self._stop_waiting()
            self._waiting_cycle = self.cycle
            self.waiting[self] = time.monotonic()
            self._head_timer = self.loop.call_later(header_timeout_s, self._head_overdue)

        def _stop_waiting(self) -> None:
            if getattr(self, "_head_timer", None) is not None:
                self._head_timer.cancel()
                self._head_timer = None
            self.waiting.pop(self, None)

        def _still_waiting(self) -> bool:
            """No request head completed since the wait began (uvicorn makes a new cycle for each head)."""
            return self.cycle is self._waiting_cycle and not self.transport.is_closing()

        def _head_overdue(self) -> None:
            self._head_timer = None
            self.waiting.pop(self, None)
            if self._still_waiting():
                log.debug("closed a connection that sent no whole request head in %g s (HEADER_TIMEOUT_S)",
                          header_timeout_s)
                self.transport.close()

        def _evict_one(self) -> bool:
            """Close the connection that has waited longest for its request head; False if none waits."""
            while self.waiting:
                oldest = next(iter(self.waiting))
                del self.waiting[oldest]
                if oldest is not self and oldest._still_waiting():
                    if oldest._head_timer is not None:
                        oldest._head_timer.cancel()
                        oldest._head_timer = None
                    oldest.connections.discard(oldest)
                    oldest.transport.close()
                    return True
            return False

    Guarded.__name__ = Guarded.__qualname__ = f"Guarded{base.__name__}"
    Guarded.waiting = {}
    return Guarded
