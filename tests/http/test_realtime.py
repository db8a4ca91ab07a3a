"""``WS /v1/realtime/speech`` on the real server (a subprocess on the tiny model), driven with the ``websockets``
client: text deltas in, speech out, turns, barge-in, bad events, limits, stalled and vanished clients."""

from __future__ import annotations

import base64
import json
import socket
import time

import numpy as np
import pytest
from fixture_voices import write_voices
from servers import Server, wait_until
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

KEY = "rt-key-51c0a9"
OTHER = "rt-other-7e2d"
SETTINGS = {"voice": "tenor", "seed": 3, "max_new_tokens": 40, "temperature": 1.0, "ras_win_len": 0}
LONG = " ".join(f"Sentence number {i} goes on for a little while." for i in range(12))


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("realtime")
    voices = write_voices(root / "voices", ["tenor", "alto"])
    srv = Server({"MODEL_PATH": str(tiny_model_dir / "model"), "TOKENIZER_PATH": str(tiny_model_dir / "tokenizer"),
                  "VOICES_DIR": str(voices), "API_KEYS": f"{OTHER},{KEY}", "LOG_DIR": str(root / "logs"),
                  "VOLUME_ROOT": str(root / "vol"), "REALTIME_MAX_SESSIONS_PER_KEY": "2",
                  "REALTIME_MAX_TURN_CHARS": "600", "REALTIME_MIN_WORDS": "3", "STREAM_STALL_TIMEOUT_S": "3",
                  "REALTIME_IDLE_TIMEOUT_S": "12"}, root)
    try:
        srv.wait_ready(headers={"Authorization": f"Bearer {KEY}"})
        yield srv
    finally:
        srv.stop()


class Session:
    """A realtime session over the ``websockets`` sync client; every receive is bounded, so nothing hangs."""

    def __init__(self, server, key: str = KEY, query: str = "", headers: bool = True, **options) -> None:
        url = server.url.replace("http://", "ws://") + "/v1/realtime/speech" + query
        extra = {"Authorization": f"Bearer {key}"} if headers else {}
        self.ws = connect(url, additional_headers=extra, open_timeout=60, **options)
        self.events: list[dict] = []

    def send(self, kind: str, **fields) -> None:
        self.ws.send(json.dumps({"type": kind, **fields}))

    def recv(self, timeout: float = 120) -> dict:
        event = json.loads(self.ws.recv(timeout))
        self.events.append(event)
        return event

    def until(self, kind: str, timeout: float = 120) -> list[dict]:
        """Events up to and including the first of ``kind``."""
        got = []
        while True:
            got.append(self.recv(timeout))
            if got[-1]["type"] == kind:
                return got

    def configure(self, **settings) -> dict:
        self.send("session.update", session=settings)
        return self.until("session.updated")[-1]

    def close(self) -> None:
        self.ws.close()


def audio_of(events: list[dict], response_id: str | None = None) -> bytes:
    return b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta"
                    and (response_id is None or e["response_id"] == response_id))


def test_text_split_mid_word_two_turns_and_audio_before_the_text_ends(server):
    s = Session(server)
    created = s.recv()
    assert created["type"] == "session.created" and created["session"]["response_format"] == "pcm"
    assert created["session"]["sample_rate"] == 24000
    updated = s.configure(**SETTINGS)
    assert updated["session"]["voice"] == "tenor"
    for delta in ["The qu", "ick brown f", "ox jum", "ps, and"]:
        s.send("input_text_buffer.append", text=delta)
    first = s.until("speech.audio.delta")[-1]  # speech starts at the clause; the turn's text is not complete
    turn = first["response_id"]
    for delta in [" then it lea", "ps over the la", "zy dog."]:
        s.send("input_text_buffer.append", text=delta)
    s.send("input_text_buffer.commit")
    events = s.until("speech.audio.done")
    done = events[-1]
    assert any(e["type"] == "input_text_buffer.committed" and e["response_id"] == turn for e in events)
    assert done["response_id"] == turn and done["status"] == "completed"
    assert done["text"] == "The quick brown fox jumps, and then it leaps over the lazy dog."
    assert done["segments"] == 2 and done["usage"]["output_tokens"] > 0
    pcm = np.frombuffer(audio_of([first, *events], turn), "<i2")
    assert len(pcm) / 24000 == pytest.approx(done["duration_s"], abs=1e-3) and len(pcm) > 0
    # the socket stays open for the next turn, which gets its own id
    s.send("input_text_buffer.append", text="A second turn, short and sweet.")
    s.send("input_text_buffer.commit")
    second = s.until("speech.audio.done")
    assert second[-1]["status"] == "completed" and second[-1]["response_id"] != turn
    assert audio_of(second, second[-1]["response_id"])
    s.close()


def test_a_turns_done_event_carries_its_tag_warnings_and_loudness(server):
    s = Session(server)
    s.recv()
    s.configure(**SETTINGS, loudness=-18)
    s.send("input_text_buffer.append", text="Plain words first.")
    s.send("input_text_buffer.commit")
    plain = s.until("speech.audio.done")[-1]
    assert "warnings" not in plain and plain["loudness"]["target_lufs"] == -18
    s.send("input_text_buffer.append", text="Then [mumbles] a tag the model does not know.")
    s.send("input_text_buffer.commit")
    tagged = s.until("speech.audio.done")[-1]
    assert len(tagged["warnings"]) == 1 and tagged["warnings"][0].startswith("[mumbles] is not a sound tag")
    s.close()


def test_wav_turns_are_each_one_stream(server):
    s = Session(server)
    s.recv()
    s.configure(**SETTINGS, response_format="wav")
    s.send("input_text_buffer.append", text="Wave format, one header per turn.")
    s.send("input_text_buffer.commit")
    events = s.until("speech.audio.done")
    data = audio_of(events)
    assert data[:4] == b"RIFF" and data.count(b"RIFF") == 1
    s.close()


def test_cancel_mid_turn_stops_its_audio_and_the_session_goes_on(server):
    s = Session(server)
    s.recv()
    s.configure(**{**SETTINGS, "max_new_tokens": 400})
    s.send("input_text_buffer.append", text=LONG)
    first = s.until("speech.audio.delta")[-1]
    s.send("response.cancel")
    events = s.until("speech.audio.done")
    done = events[-1]
    assert done["response_id"] == first["response_id"] and done["status"] == "cancelled"
    assert done["segments"] < 12  # it did not go on to speak the rest
    # the next text opens a new turn, which speaks to its end
    s.configure(max_new_tokens=40)
    s.send("input_text_buffer.append", text="After the interruption, a short answer.")
    s.send("input_text_buffer.commit")
    after = s.until("speech.audio.done")
    assert after[-1]["status"] == "completed" and after[-1]["response_id"] != first["response_id"]
    assert not [e for e in after if e.get("response_id") == first["response_id"]]  # nothing more of the old turn
    s.close()


def test_bad_events_are_errors_naming_the_field_and_the_socket_stays_open(server):
    s = Session(server)
    s.recv()

    def error_for(raw) -> dict:
        s.ws.send(raw)
        event = s.recv()
        assert event["type"] == "error", event
        return event["error"]

    unknown = error_for(json.dumps({"type": "input_audio_buffer.append", "event_id": "e1"}))
    assert (unknown["param"], unknown["event_id"], unknown["code"]) == ("type", "e1", "invalid_event")
    assert "unknown event type 'input_audio_buffer.append'" in unknown["message"]
    assert error_for("not json")["param"] == "event"
    assert error_for(b"\x00\x01")["param"] == "type"
    assert error_for(json.dumps({"type": "input_text_buffer.append", "text": 5}))["param"] == "text"
    bad_voice = error_for(json.dumps({"type": "session.update", "session": {"voice": "nobody"}}))
    assert bad_voice["param"] == "session.voice" and "unknown voice 'nobody'" in bad_voice["message"]
    assert error_for(json.dumps({"type": "session.update", "session": {"response_format": "mp3"}}))["param"] == \
        "session.response_format"
    assert error_for(json.dumps({"type": "session.update", "session": {"temperature": 9}}))["param"] == \
        "session.temperature"
    assert error_for(json.dumps({"type": "session.update", "session": {"verify": True}}))["param"] == \
        "session.verify"
    too_long = error_for(json.dumps({"type": "input_text_buffer.append", "text": "x" * 601}))
    assert too_long["param"] == "text" and "REALTIME_MAX_TURN_CHARS" in too_long["message"]
    assert error_for(json.dumps({"type": "input_text_buffer.commit"}))["param"] == "text"  # nothing to commit
    # after all that the session still speaks, with the settings from before the refused updates
    s.configure(**SETTINGS)
    s.send("input_text_buffer.append", text="Still here and speaking.")
    s.send("input_text_buffer.commit")
    done = s.until("speech.audio.done")[-1]
    assert done["status"] == "completed"
    s.close()


def test_openai_voice_names_are_accepted(server):
    s = Session(server)
    s.recv()
    assert s.configure(voice="alloy", seed=2, max_new_tokens=30)["session"]["voice"] == "alloy"
    s.send("input_text_buffer.append", text="Alloy speaks.")
    s.send("input_text_buffer.commit")
    assert s.until("speech.audio.done")[-1]["status"] == "completed"
    s.close()


def test_auth_header_or_query_token_and_the_token_is_never_logged(server):
    with pytest.raises(InvalidStatus) as refused:
        Session(server, headers=False)
    assert refused.value.response.status_code == 401
    with pytest.raises(InvalidStatus):
        Session(server, key="wrong-key")
    s = Session(server, headers=False, query=f"?token={KEY}")
    assert s.recv()["type"] == "session.created"
    s.close()
    assert KEY not in server.output()


def test_sessions_per_key_are_limited_with_the_setting_named(server):
    held = [Session(server, key=OTHER) for _ in range(2)]
    for h in held:
        h.recv()
    extra = Session(server, key=OTHER)
    event = extra.recv()
    assert event["type"] == "error" and event["error"]["code"] == "session_limit"
    assert "REALTIME_MAX_SESSIONS_PER_KEY" in event["error"]["message"]
    with pytest.raises(ConnectionClosed) as closed:
        extra.recv()
    assert closed.value.rcvd.code == 1008 and "REALTIME_MAX_SESSIONS_PER_KEY" in closed.value.rcvd.reason
    other_key = Session(server)  # another key has its own allowance
    assert other_key.recv()["type"] == "session.created"
    for s in (*held, other_key):
        s.close()


def admitted(server, key: str) -> bool:
    """Whether a new session for ``key`` is admitted now."""
    probe = Session(server, key=key)
    try:
        return probe.recv()["type"] == "session.created"
    finally:
        probe.close()


def test_a_vanished_client_frees_its_slot(server):
    filler = Session(server, key=OTHER)
    filler.recv()
    gone = Session(server, key=OTHER)
    gone.recv()
    gone.configure(**{**SETTINGS, "max_new_tokens": 400})
    gone.send("input_text_buffer.append", text=LONG)
    gone.until("speech.audio.delta")
    assert not admitted(server, OTHER)  # two of two are open
    gone.ws.socket.shutdown(socket.SHUT_RDWR)  # the client vanishes mid-turn, without a close frame
    gone.ws.socket.close()
    wait_until(lambda: admitted(server, OTHER), timeout=60, what="the vanished session's slot to be freed")
    filler.close()


def test_an_idle_session_is_closed_with_the_setting_named(server):
    s = Session(server, key=OTHER)
    s.recv()
    with pytest.raises(ConnectionClosed) as closed:
        s.recv(timeout=120)  # the client sends nothing
    assert closed.value.rcvd.code == 1000 and "REALTIME_IDLE_TIMEOUT_S" in closed.value.rcvd.reason


def test_a_session_outlives_the_request_head_deadline(server):
    s = Session(server)
    s.recv()
    started = time.monotonic()
    while time.monotonic() - started < 11:  # past HEADER_TIMEOUT_S (10 s), with an event each second
        s.send("input_text_buffer.clear")
        assert s.recv(timeout=30)["type"] == "input_text_buffer.cleared"
        time.sleep(1)
    s.configure(**SETTINGS)
    s.send("input_text_buffer.append", text="Still speaking after a while.")
    s.send("input_text_buffer.commit")
    assert s.until("speech.audio.done")[-1]["status"] == "completed"
    s.close()
