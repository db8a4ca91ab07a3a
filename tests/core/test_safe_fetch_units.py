"""The fetch guard's time limit at its exact edge, on a fake clock: a reading equal to the deadline is late.

Only ``higgs_worker.core.safe_fetch``'s own view of the clock is replaced; nothing leaves the process
(``httpx.MockTransport`` answers, and the resolver is a stub).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import httpx
import pytest

from higgs_worker.core import safe_fetch
from higgs_worker.core.safe_fetch import FetchRefused, GuardedFetcher, Watchdog

NOW = 1000.0


@pytest.fixture
def frozen_clock(monkeypatch):
    monkeypatch.setattr(safe_fetch, "time", SimpleNamespace(monotonic=lambda: NOW))


def test_the_watchdog_calls_a_reading_equal_to_the_deadline_late(frozen_clock):
    assert Watchdog(NOW, None).reason() == "deadline"
    assert Watchdog(NOW + 0.001, None).reason() is None


def test_nothing_is_sent_once_no_time_is_left(frozen_clock):
    sent = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, stream=httpx.ByteStream(b"ok"))

    guard = GuardedFetcher(max_bytes=1000, timeout_s=10.0, max_concurrent=1,
                           resolver=lambda host, port: ["93.184.216.34"], transport=httpx.MockTransport(handler))
    watchdog = Watchdog(math.inf, None)  # never started, never late: only the deadline given to _fetch counts
    assert guard._fetch("https://pub.test/a.wav", NOW + 1, watchdog) == b"ok"  # a second left: sent
    assert len(sent) == 1
    with pytest.raises(FetchRefused, match=r"^fetching took longer than 10 s \(REF_AUDIO_URL_TIMEOUT_S\)$"):
        guard._fetch("https://pub.test/a.wav", NOW, watchdog)  # none left: refused before sending
    assert len(sent) == 1
