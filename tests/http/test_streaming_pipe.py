"""The bounded hand-off from a generating thread to the event loop (:class:`~higgs_worker.http.streaming.Pipe`), on
plain iterators: what the streamed speech response and the realtime route both rely on."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from higgs_worker.http.streaming import Pipe
from servers import run_coroutine


class Endless:
    """An endless generation of numbered pieces that records how many were asked for and whether it was closed;
    ``asked`` is set once ``watch`` pieces have been asked for."""

    def __init__(self, watch: int = 1) -> None:
        self.pulls = 0
        self.closed = False
        self.watch = watch
        self.asked = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        try:
            while True:
                self.pulls += 1
                if self.pulls >= self.watch:
                    self.asked.set()
                yield str(self.pulls).encode()
        finally:
            self.closed = True


def test_pieces_arrive_in_order_then_the_end_for_good():
    async def main() -> list[bytes | None]:
        pipe = Pipe(iter([b"a", b"b"]), threading.Event(), size=1)
        got = [await pipe.get() for _ in range(4)]
        await pipe.worker
        return got

    assert run_coroutine(main()) == [b"a", b"b", None, None]


def test_a_failure_of_the_generation_is_raised_on_the_event_loop():
    def failing() -> Iterator[bytes]:
        yield b"first"
        raise ValueError("decoder broke")

    async def main() -> bytes | None:
        pipe = Pipe(failing(), threading.Event(), size=2)
        first = await pipe.get()
        with pytest.raises(ValueError, match="decoder broke"):
            await pipe.get()
        assert await pipe.get() is None  # after the failure the pipe is at its end
        return first

    assert run_coroutine(main()) == b"first"


def test_an_unread_pipe_holds_the_thread_at_size_pieces_and_stop_leaves_cancel_unset():
    size = 2
    source, cancel = Endless(watch=size + 1), threading.Event()

    async def main() -> None:
        pipe = Pipe(iter(source), cancel, size=size)
        await asyncio.to_thread(source.asked.wait)  # the piece past the bound has been made; nothing was read
        pipe.stop()
        await pipe.worker
        assert [await pipe.get() for _ in range(size + 1)] == [b"1", b"2", None]

    run_coroutine(main())
    assert source.pulls == size + 1  # the thread waited for room: no piece beyond the one it held
    assert source.closed  # the generation was closed on the thread, not left to garbage collection
    assert not cancel.is_set()  # stopped, not cancelled: that stays the owner's call


def test_close_cancels_the_generation_and_closes_it():
    source, cancel = Endless(), threading.Event()

    async def main() -> None:
        pipe = Pipe(iter(source), cancel, size=1)
        assert await pipe.get() == b"1"
        pipe.close()
        await pipe.worker

    run_coroutine(main())
    assert cancel.is_set() and source.closed
