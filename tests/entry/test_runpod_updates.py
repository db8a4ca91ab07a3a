"""The RunPod handler's progress updates on their own: one post at a time, only the newest kept while one is in
flight, a stuck post never holds the result back, and nothing is sent after the end or a cancel."""

from __future__ import annotations

import asyncio

from higgs_worker.runpod_handler import _Updates
from servers import run_coroutine


class Plane:
    """A control plane whose posts wait until released; records what was posted, and when posts overlapped."""

    def __init__(self) -> None:
        self.posted: list[int] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.release = asyncio.Event()
        self.started = asyncio.Event()

    async def post(self, job, progress) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.started.set()
        try:
            await self.release.wait()
            self.posted.append(progress["n"])
        finally:
            self.in_flight -= 1


def test_one_post_at_a_time_and_only_the_newest_waits():
    async def main() -> Plane:
        plane = Plane()
        updates = _Updates({"id": "j"}, plane.post, asyncio.get_running_loop())
        await asyncio.to_thread(updates.tell, {"n": 1})  # told from another thread, as the job's thread does
        await plane.started.wait()
        for n in (2, 3, 4):
            await asyncio.to_thread(updates.tell, {"n": n})
        plane.release.set()
        await asyncio.sleep(0)
        while updates.sender is not None and not updates.sender.done():
            await asyncio.sleep(0.01)
        await updates.drain()
        return plane

    plane = run_coroutine(main())
    assert plane.posted == [1, 4] and plane.most_in_flight == 1


def test_a_stuck_post_is_given_up_and_nothing_follows_the_drain():
    async def main() -> tuple[Plane, _Updates]:
        plane = Plane()
        updates = _Updates({"id": "j"}, plane.post, asyncio.get_running_loop())
        updates.POST_TIMEOUT_S = 0.2
        updates.tell({"n": 1})
        await plane.started.wait()
        await updates.drain()  # returns although the post never ends
        updates.tell({"n": 2})  # after the end: dropped
        await asyncio.sleep(0)
        return plane, updates

    plane, updates = run_coroutine(main())
    assert plane.posted == [] and plane.in_flight == 0 and updates.waiting is None and updates.sender.done()


def test_a_cancel_sends_nothing_more():
    async def main() -> Plane:
        plane = Plane()
        updates = _Updates({"id": "j"}, plane.post, asyncio.get_running_loop())
        updates.tell({"n": 1})
        await plane.started.wait()
        updates.tell({"n": 2})
        await asyncio.sleep(0)
        updates.close()
        plane.release.set()
        updates.tell({"n": 3})
        await asyncio.sleep(0.05)
        return plane

    assert run_coroutine(main()).posted == []
