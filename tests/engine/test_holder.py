import threading
import time

import pytest

from higgs_worker.engine import EngineHolder


def test_concurrent_first_requests_wait_for_one_load():
    calls = []
    barrier = threading.Barrier(6)

    def factory():
        calls.append(1)
        time.sleep(0.3)
        return object()

    holder = EngineHolder(factory)
    loaded = []
    seen = []

    def first_request():
        barrier.wait()
        loaded.append(holder.get())

    holder.on_load.append(seen.append)
    threads = [threading.Thread(target=first_request) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(set(map(id, loaded))) == 1 and len(seen) == 1
    assert holder.ready and holder.load_s >= 0.3


def test_a_failed_load_is_remembered_not_retried_per_request():
    calls = []

    def factory():
        calls.append(1)
        raise RuntimeError("weights are corrupt")

    holder = EngineHolder(factory)
    for _ in range(3):
        with pytest.raises(RuntimeError, match="corrupt"):
            holder.get()
    assert len(calls) == 1 and str(holder.error) == "weights are corrupt"
