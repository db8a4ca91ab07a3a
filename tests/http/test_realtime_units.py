"""The realtime route's handler on the real speech service (tiny engine), driven through a WebSocket stand-in
whose client stops reading: what a loopback socket cannot show quickly, as the kernel buffers megabytes."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest
from servers import off_the_event_loop

from higgs_worker.core.settings import get_settings
from higgs_worker.http.metrics import Metrics
from higgs_worker.http.routes_realtime import caller_bucket, realtime_speech, session_request


class StalledClient:
    """A WebSocket whose client sends ``events`` and reads the first ``reads`` messages, then nothing more: every
    later send waits forever, as it does once a real client's socket buffers are full."""

    def __init__(self, app, events: list[dict], reads: int, headers: list[tuple[bytes, bytes]] = ()) -> None:
        self.app = app
        self.scope = {"type": "websocket", "headers": list(headers)}
        self.query_params: dict[str, str] = {}
        self._events = [{"type": "websocket.receive", "text": json.dumps(e)} for e in events]
        self.reads = reads
        self.sent: list[dict] = []
        self.closed: tuple[int, str] | None = None
        self.denied = None

    async def accept(self) -> None:
        pass

    async def send_denial_response(self, response) -> None:
        self.denied = response

    async def receive(self) -> dict:
        if self._events:
            return self._events.pop(0)
        await asyncio.Event().wait()  # the client says nothing more, and never leaves

    async def send_text(self, text: str) -> None:
        if len(self.sent) >= self.reads:
            await asyncio.Event().wait()
        self.sent.append(json.loads(text))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if len(self.sent) >= self.reads:
            await asyncio.Event().wait()  # a close frame cannot get through either
        self.closed = (code, reason)


@pytest.fixture()
def app(service, env):
    env(STREAM_STALL_TIMEOUT_S="0.5", REALTIME_MIN_WORDS="2")
    settings = get_settings()
    state = SimpleNamespace(settings=settings, metrics=Metrics(), service=service, speech_inflight=0)
    return SimpleNamespace(state=state)


def test_a_stalled_client_is_cut_off_its_turn_cancelled_and_its_slot_freed(app, service, monkeypatch):
    jobs = []
    real_start = service.engine.start

    def start(*args, **kwargs):
        jobs.append(real_start(*args, **kwargs))
        return jobs[-1]

    monkeypatch.setattr(service.engine, "start", start)
    text = " ".join(f"Sentence {i} is here and it goes on." for i in range(8))
    events = [{"type": "session.update", "session": {"seed": 1, "max_new_tokens": 300, "temperature": 1.0,
                                                     "ras_win_len": 0}},
              {"type": "input_text_buffer.append", "text": text}, {"type": "input_text_buffer.commit"}]
    client = StalledClient(app, events, reads=3)  # session.created, session.updated, committed: then nothing
    off_the_event_loop(lambda: asyncio.run(asyncio.wait_for(realtime_speech(client), 120)))
    assert [e["type"] for e in client.sent] == ["session.created", "session.updated", "input_text_buffer.committed"]
    assert client.closed is None  # the reason could not be sent either: the handler gave up on the client
    assert app.state.speech_inflight == 0 and app.state.realtime_sessions == {}  # the slot is free
    assert jobs and all(job.done.is_set() for job in jobs)  # no generation goes on for a client that is gone
    assert jobs[-1].cancelled or len(jobs) < 8


def test_a_stall_is_reported_when_the_reason_gets_through(app):
    events = [{"type": "input_text_buffer.append", "text": "One two three four. Five six seven."},
              {"type": "input_text_buffer.commit"}]
    client = StalledClient(app, events, reads=2)
    client.close = _close_recording(client)  # the close frame (with its reason) still gets out
    off_the_event_loop(lambda: asyncio.run(asyncio.wait_for(realtime_speech(client), 120)))
    code, reason = client.closed
    assert code == 1008 and "STREAM_STALL_TIMEOUT_S" in reason


def _close_recording(client: StalledClient):
    async def close(code: int = 1000, reason: str = "") -> None:
        client.closed = (code, reason)

    return close


def test_session_settings_name_the_field():
    from higgs_worker.core.errors import RequestError

    for config, field in (({"voice": 5}, "session.voice"), ({"response_format": "flac"}, "session.response_format"),
                          ({"stream_format": "sse"}, "session.stream_format"), ({"model": "x"}, "session.model"),
                          ({"speed": 9}, "session.speed"), ({"unknown": 1}, "session.unknown")):
        with pytest.raises(RequestError) as err:
            session_request(config)
        assert err.value.field == field, config
    assert session_request({"voice": "alloy", "response_format": "opus"}).format == "opus"


def test_the_caller_bucket_is_a_digest_never_the_key():
    keys = ["first-key-123", "second-key-456"]
    ws = SimpleNamespace(scope={"headers": [(b"authorization", b"Bearer second-key-456")]}, query_params={})
    bucket = caller_bucket(ws, keys)
    assert bucket and "second-key" not in bucket
    by_query = SimpleNamespace(scope={"headers": []}, query_params={"token": "second-key-456"})
    assert caller_bucket(by_query, keys) == bucket
    assert caller_bucket(SimpleNamespace(scope={"headers": []}, query_params={"token": "nope"}), keys) is None
    assert caller_bucket(SimpleNamespace(scope={"headers": []}, query_params={}), []) == ""
