"""Streamed speech responses: a bounded hand-off from the generating thread to the event loop (:class:`Pipe`, which
the realtime route's turns use too) and the response that sends it (:class:`StreamedSpeech`), which cannot outlive
its client, a stalled reader, or its deadline.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import Response

from ..core.errors import Cancelled

log = logging.getLogger(__name__)

__all__ = ["WRITE_SLICE_BYTES", "Pipe", "StreamedSpeech"]

#: A stream is written in slices of at most this many bytes, each within ``STREAM_STALL_TIMEOUT_S``: the stall
#: timeout judges the client's progress (16 KiB read in that time), not how long one large piece takes to read.
WRITE_SLICE_BYTES = 16 * 1024


class _Failed:
    """An exception raised by the generating thread, carried to the event loop."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_END = object()


class Pipe:
    """A bounded hand-off from a thread that makes pieces (blocking work) to the event loop that sends them.

    At most ``size`` pieces wait; when the client is slower than generation, the thread pauses instead of piling
    audio up. :meth:`close` cancels the generation: the thread stops at its next piece and closes the iterator.
    :meth:`stop` stops the thread the same way but leaves ``cancel`` to its owner, for a caller that tells a
    cancelled generation from one it merely stopped reading (a realtime turn that finished, or whose client left).
    """

    def __init__(self, produce: Iterator[bytes], cancel: threading.Event, size: int) -> None:
        self._produce = produce
        self._cancel = cancel
        self._room = threading.Semaphore(size)
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue = asyncio.Queue()
        self._stop = threading.Event()
        self._ended = False
        self.worker = self._loop.run_in_executor(None, self._run)

    def _stopped(self) -> bool:
        return self._stop.is_set() or self._cancel.is_set()

    def _put(self, item: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self._cancel.set()

    def _run(self) -> None:
        try:
            for item in self._produce:
                while not self._room.acquire(timeout=0.1):
                    if self._stopped():
                        return
                if self._stopped():
                    return
                self._put(item)
        except BaseException as exc:  # noqa: BLE001 - handed to the event loop
            self._put(_Failed(exc))
        finally:
            close = getattr(self._produce, "close", None)
            if close is not None:
                close()  # runs the generation's cleanup now, on this thread, not at garbage collection
            self._put(_END)

    async def get(self) -> bytes | None:
        """The next piece; ``None`` at the end. Raises what the generation raised."""
        if self._ended:
            return None
        item = await self._queue.get()
        if item is _END:
            self._ended = True
            return None
        if isinstance(item, _Failed):
            self._ended = True
            raise item.exc
        self._room.release()
        return item

    def close(self) -> None:
        """Cancel the generation (``cancel`` is set): the thread stops at its next piece."""
        self._cancel.set()

    def stop(self) -> None:
        """Stop handing pieces over without setting ``cancel``: the thread stops at its next piece and closes the
        iterator, and whether the generation counts as cancelled stays its owner's call."""
        self._stop.set()


class _Stalled(Exception):
    """The client read nothing for the stall timeout."""


class _Expired(Exception):
    """The stream ran past its deadline; the sender stopped at a piece boundary."""


class StreamedSpeech(Response):
    """A streamed speech response that cannot outlive its client, nor ``deadline_s``.

    Pieces pass through a bounded :class:`Pipe`. The response ends, the generation is cancelled and the slot is
    released (``release``) as soon as the client disconnects, when a slice of at most ``WRITE_SLICE_BYTES`` waits
    longer than ``stall_s`` because the client stopped reading (``STREAM_STALL_TIMEOUT_S``), or at ``deadline_s``
    (``SPEECH_TIMEOUT_S``: the stream ends with what ``failed`` makes of the timeout); nothing waits for garbage
    collection.
    """

    def __init__(self, start: Callable[[], Pipe], media_type: str, headers: dict[str, str], stall_s: float,
                 frame: Callable[[bytes], bytes], done: Callable[[], bytes],
                 failed: Callable[[BaseException], bytes | None], release: Callable[[], None],
                 deadline_s: float | None = None, timed_out: Callable[[], BaseException] | None = None) -> None:
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.init_headers(headers)  # no body set: no Content-Length, the body goes out chunked
        self._start = start
        self._stall_s = stall_s
        self._frame = frame
        self._done = done
        self._failed = failed
        self._release = release
        self._deadline_s = deadline_s
        self._timed_out = timed_out
        self._expired = False

    async def __call__(self, scope, receive, send) -> None:
        pipe: Pipe | None = None
        tasks: list[asyncio.Task] = []
        try:
            pipe = self._start()
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            tasks = [asyncio.create_task(self._send_all(pipe, send)),
                     asyncio.create_task(self._until_disconnect(receive))]
            for task in tasks:  # whichever loses is cancelled below; its outcome is read, never left pending
                task.add_done_callback(lambda t: t.cancelled() or t.exception())
            finished, _ = await asyncio.wait(tasks, timeout=self._deadline_s, return_when=asyncio.FIRST_COMPLETED)
            if not finished:  # past SPEECH_TIMEOUT_S: stop generating; the sender stops after the piece it sends
                self._expired = True
                pipe.close()
                finished, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            sender = tasks[0]
            if sender in finished and not sender.cancelled() and isinstance(sender.exception(), _Expired):
                log.warning("speech stream stopped after %g s (SPEECH_TIMEOUT_S)", self._deadline_s)
                exc = self._timed_out() if self._timed_out is not None else TimeoutError()
                last = self._failed(exc)  # SSE: an error event; audio: none, the stream is cut
                if last is not None:
                    try:
                        await self._write(send, last, more=False)
                    except _Stalled:
                        pass
            elif sender in finished and not sender.cancelled() and isinstance(sender.exception(), _Stalled):
                log.warning("stream client read less than %d bytes in %g s; generation cancelled "
                            "(STREAM_STALL_TIMEOUT_S)", WRITE_SLICE_BYTES, self._stall_s)
            elif sender in finished and sender.exception() is not None:
                raise sender.exception()
        finally:
            if pipe is not None:
                pipe.close()
            for task in tasks:
                task.cancel()
            self._release()

    async def _until_disconnect(self, receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    async def _write(self, send, body: bytes, more: bool = True) -> None:
        """Send ``body`` in slices, each within the stall timeout (the client must keep reading, not read fast)."""
        size = len(body)
        for offset in range(0, max(size, 1), WRITE_SLICE_BYTES):
            last = offset + WRITE_SLICE_BYTES >= size
            try:
                async with asyncio.timeout(self._stall_s):
                    await send({"type": "http.response.body", "body": body[offset:offset + WRITE_SLICE_BYTES],
                                "more_body": more or not last})
            except TimeoutError:
                raise _Stalled() from None

    async def _send_all(self, pipe: Pipe, send) -> None:
        async def write(body: bytes, more: bool = True) -> None:
            await self._write(send, body, more)

        while True:
            try:
                piece = await pipe.get()
            except Cancelled:
                if self._expired:
                    raise _Expired() from None
                await write(b"", more=False)
                return
            except Exception as exc:  # noqa: BLE001 - the status line is sent: report in-band, or cut the stream
                last = self._failed(exc)
                if last is not None:
                    await write(last, more=False)
                return  # without a last message the client sees a broken stream, not a short file
            if self._expired:  # whole pieces only: an SSE event is never cut in two
                raise _Expired()
            if piece is None:
                break
            await write(self._frame(piece))
        await write(self._done(), more=False)
