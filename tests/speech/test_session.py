"""Realtime sessions below the socket: the segmenter, a turn's text, and turns spoken on the real tiny engine."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from higgs_worker.core.errors import RequestError
from higgs_worker.core.schema import SpeechRequest
from higgs_worker.speech.session import Segmenter, SegmentRules, SpeechSession, TextTurn


def feed(segmenter: Segmenter, pieces: list[str], first: bool = True) -> list[str | None]:
    out = []
    for piece in pieces:
        segmenter.append(piece)
        out.append(segmenter.take(first))
        if out[-1] is not None:
            first = False
    return out


# -- the segmenter --------------------------------------------------------------------------------------------

def test_first_segment_starts_at_the_first_clause_once_enough_words_arrived():
    seg = Segmenter(min_words=4, max_words=50)
    got = feed(seg, ["Well, ", "I thi", "nk that", " we sh", "ould, ", "if you agree", ", go home."])
    # "Well," has one word: too few; the clause after "should," has five: speech starts there, mid-sentence
    assert got[:4] == [None, None, None, None]
    assert got[4] == "Well, I think that we should,"
    assert seg.buffer == ""


def test_later_segments_take_every_complete_sentence_and_keep_the_rest():
    seg = Segmenter(min_words=2, max_words=50)
    seg.append("One two three. Four five six! Seven eight, nine")
    assert seg.take(first=False) == "One two three. Four five six!"
    assert seg.take(first=False) == "Seven eight,"  # no sentence end left: the last clause with enough words
    assert seg.take(first=False) is None
    assert seg.take_all() == "nine"


def test_a_boundary_at_the_end_waits_when_more_text_could_change_it():
    seg = Segmenter(min_words=2, max_words=50)
    seg.append("It costs 3.")
    assert seg.take(first=True) is None  # "3." may yet be "3.5"
    seg.append("5 dollars, Dr.")
    assert seg.take(first=True) == "It costs 3.5 dollars,"
    seg.append(" Smith said. Done")
    assert seg.take(first=False) == "Dr. Smith said."  # "Dr." is no sentence end
    seg.append("!")
    assert seg.take(first=True) is None  # one word: below min_words
    assert seg.take_all() == "Done!"


def test_a_run_on_without_boundaries_is_cut_at_the_word_budget():
    seg = Segmenter(min_words=2, max_words=5)
    seg.append("a b c d e f g")
    assert seg.take(first=True) == "a b c d e"
    assert seg.buffer == "f g"


def test_chinese_boundaries_need_no_space():
    seg = Segmenter(min_words=2, max_words=50)
    seg.append("今天天气很好。我们去公园")
    assert seg.take(first=True) == "今天天气很好。"


# -- a turn's text --------------------------------------------------------------------------------------------

def test_turn_text_over_the_limit_is_refused_whole_and_the_turn_goes_on():
    turn = TextTurn(SegmentRules(min_words=2, max_chars=20), threading.Event())
    turn.append("Hello there, ")
    with pytest.raises(RequestError) as err:
        turn.append("this is far too long")
    assert err.value.field == "text" and "REALTIME_MAX_TURN_CHARS" in err.value.message
    turn.append("friend.")
    turn.commit()
    assert list(turn.segments()) == ["Hello there,", "friend."]


def test_idle_text_is_spoken_without_a_boundary_or_a_commit():
    turn = TextTurn(SegmentRules(min_words=4, flush_idle_s=0.05), threading.Event())
    turn.append("no boundary here")
    segments = turn.segments()
    assert next(segments) == "no boundary here."  # handed out after the idle gap; the turn stays open
    assert not turn.committed
    turn.commit()
    assert list(segments) == []


def test_cancel_wakes_a_turn_waiting_for_text():
    cancel = threading.Event()
    turn = TextTurn(SegmentRules(min_words=4), cancel)
    turn.append("only two")
    out: list[list[str]] = []
    reader = threading.Thread(target=lambda: out.append(list(turn.segments())))
    reader.start()
    cancel.set()
    turn.wake()
    reader.join(30)
    assert not reader.is_alive() and out == [[]]


# -- turns on the real engine ---------------------------------------------------------------------------------

def settings_request(**extra) -> SpeechRequest:
    body = {"transcript": "settings only", "seed": 5, "max_new_tokens": 24, "temperature": 1.0, "format": "pcm",
            "ras_win_len": 0, **extra}
    return SpeechRequest.parse(body)


def pcm(data: bytes) -> np.ndarray:
    return np.frombuffer(data, "<i2").astype(np.float32) / 32767


def test_a_turn_fed_mid_word_speaks_segments_with_history_as_one_stream(service, spy):
    session = SpeechSession(service, settings_request(ref_audio="tenor"), SegmentRules(min_words=3))
    for delta in ["The qu", "ick brown f", "ox, jumps ", "over the la", "zy dog. And th", "en it sle", "eps"]:
        turn, _ = session.append(delta)
    session.commit()
    audio = b"".join(turn.encoded())
    summary = turn.summary()
    assert turn.text.spoken == ["The quick brown fox,", "jumps over the lazy dog.", "And then it sleeps."]
    assert summary["segments"] == 3 and summary["text"] == " ".join(turn.text.spoken)
    # each segment after the first carries the earlier segments' audio (the long-form buffer): one voice
    prompts = [call[0] for call in spy]
    assert [p.text for p in prompts] == turn.text.spoken
    generations = [call[2] for call in spy]
    assert [len(p.turns) for p in prompts] == [1, 2, 3]  # the reference voice, then the history
    assert torch.equal(prompts[1].turns[1].codes, generations[0].codes)
    assert torch.equal(prompts[2].turns[2].codes, generations[1].codes)
    # decoded as one stream: equal to one decode of all the codes (no seams at the joins)
    whole = service.engine.decode(torch.cat([g.codes for g in generations]))
    streamed = pcm(audio)
    assert streamed.shape == whole.shape
    assert np.abs(streamed - np.clip(whole, -1, 1)).max() < 1e-3
    assert summary["usage"]["output_tokens"] == sum(g.steps for g in generations)


def test_a_cancelled_turn_stops_within_one_decode_step(service, monkeypatch):
    engine = service.engine
    real_start = engine.start
    jobs = []
    stop_at = 6

    def start(prompt, sampling, seed, cancel=None, on_frame=None):
        def watch(frame):  # runs on the scheduler thread as each frame is made
            on_frame(frame)
            if len(jobs[-1].frames) == stop_at:
                turn.cancel()

        jobs.append(real_start(prompt, sampling, seed, cancel, watch))
        return jobs[-1]

    monkeypatch.setattr(engine, "start", start)
    session = SpeechSession(service, settings_request(max_new_tokens=400, seed=1), SegmentRules(min_words=2))
    turn, _ = session.append("A long sentence that keeps going, and going.")
    session.commit()
    with pytest.raises(Exception) as err:
        b"".join(turn.encoded())
    assert err.type.__name__ == "Cancelled"
    assert len(jobs) == 1 and jobs[0].cancelled
    assert len(jobs[0].frames) <= stop_at + 1  # the cancel took effect at the next decode step
