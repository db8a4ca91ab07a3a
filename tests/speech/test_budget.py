"""One request's share of the model's context: reference audio refused by name, history trimmed to the bound."""

from __future__ import annotations

import numpy as np
import pytest

from higgs_worker.core.errors import RequestError
from higgs_worker.core.schema import SpeechRequest
from higgs_worker.speech.budget import check_references
from higgs_worker.voices import Reference


def voice(seconds: float) -> Reference:
    return Reference("long", "A long reference.", np.zeros(int(seconds * 24000), dtype=np.float32))


def test_eight_long_voices_are_refused_before_the_model_runs():
    """The probe's request: eight voices of 59.5 s (a 12,697-token prompt that grew every row's cache eightfold)."""
    with pytest.raises(RequestError) as err:
        check_references([voice(59.5)] * 8, 6144)
    assert err.value.field == "ref_audio" and "MAX_PROMPT_TOKENS" in err.value.message and "6144" in err.value.message
    check_references([voice(59.5)] * 4, 6144)  # four fit


def test_a_request_over_the_bound_gets_a_400_naming_the_setting(service):
    service.settings.max_prompt_tokens = 60  # below the fixture voices' length with their markup
    with pytest.raises(RequestError) as err:
        service.check(SpeechRequest.parse({"transcript": "Hi.", "ref_audio": "alto,tenor"}))
    assert err.value.field == "ref_audio" and "MAX_PROMPT_TOKENS" in err.value.message


def test_history_is_trimmed_to_the_prompt_bound(service, spy):
    words = " ".join(f"word{i}" for i in range(40))
    body = {"transcript": words, "chunk_method": "word", "chunk_max_word_num": 10, "max_new_tokens": 16, "seed": 5,
            "generation_chunk_buffer_size": None}
    service.synthesize(SpeechRequest.parse(body))
    sizes = [service.engine.prompt_tokens(call[0]) for call in spy]
    spy.clear()
    service.settings.max_prompt_tokens = sizes[1] + 40  # room for one previous chunk, not two
    service.synthesize(SpeechRequest.parse(body))
    kept = [len(call[0].turns) for call in spy]
    assert kept == [0, 1, 1, 1]
    assert all(service.engine.prompt_tokens(call[0]) <= sizes[1] + 40 for call in spy)


def test_a_chunks_frames_follow_its_text_unless_the_request_names_max_new_tokens(service, spy, monkeypatch):
    from higgs_worker.speech.budget import MIN_CHUNK_FRAMES

    budgets = []
    real_start = service.engine.start
    monkeypatch.setattr(service.engine, "start", lambda prompt, sampling, *a: (
        budgets.append(sampling.max_new_tokens), real_start(prompt, sampling, *a))[1])
    words = " ".join(["word"] * 60)
    service.synthesize(SpeechRequest.parse({"transcript": "Hi.", "seed": 1}))
    service.synthesize(SpeechRequest.parse({"transcript": words + ".", "seed": 1, "chunk_method": "none"}))
    service.synthesize(SpeechRequest.parse({"transcript": "Hi.", "seed": 1, "max_new_tokens": 600}))
    assert budgets == [MIN_CHUNK_FRAMES, 25 * 2 + 30 * 60, 600]  # the floor; 2 s + 1.2 s a word; asked for


def test_a_runaway_chunk_stops_at_its_texts_budget_and_says_truncated(service, monkeypatch):
    from higgs_worker.speech.budget import MIN_CHUNK_FRAMES

    # a model that never ends its audio: the scheduler no longer sees the end code
    monkeypatch.setattr(service.engine.scheduler, "stream_eos", -1)
    result = service.synthesize(SpeechRequest.parse({"transcript": "Hi.", "seed": 3}))
    meta = result.metadata()
    assert meta["truncated"] is True and meta["usage"]["completion_tokens"] == MIN_CHUNK_FRAMES  # not 2048


@pytest.mark.parametrize(("ratio", "attempts"), [(1.0, 1), (3.0, 3)])
def test_speech_checks_buy_at_most_their_frame_budget(service, monkeypatch, ratio, attempts):
    """verify with 8 attempts once bought 11 times the frames; now retries stop at VERIFY_MAX_FRAMES_RATIO times
    what the chunks may take once, and the report says the budget was spent."""
    from types import SimpleNamespace

    from higgs_worker.asr.types import Transcript

    service._recognizer = SimpleNamespace(transcribe=lambda wave, language=None, **kw: Transcript("nothing alike", []))
    monkeypatch.setattr(service, "_check_asr", lambda request: None)
    monkeypatch.setattr(service.engine.scheduler, "stream_eos", -1)  # every attempt runs to its 40 frames
    service.settings.verify_max_frames_ratio = ratio
    result = service.synthesize(SpeechRequest.parse({"transcript": "Hello there.", "max_new_tokens": 40, "seed": 2,
                                                     "verify": {"max_attempts": 8}}))
    chunk = result.metadata()["quality"]["chunks"][0]
    assert chunk["attempts"] == attempts and chunk["budget_spent"] is True
    assert result.metadata()["usage"]["completion_tokens"] == 40 * attempts <= ratio * 40
