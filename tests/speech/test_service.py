"""The service path on the tiny model: voices, chunking, carry-over, formats."""

import io

import numpy as np
import pytest
import soundfile as sf
import torch

from higgs_worker.engine.prompt import model_inputs
from higgs_worker.engine.codes import with_delay
from higgs_worker.core.errors import RequestError
from higgs_worker.core.schema import SpeechRequest
from higgs_worker.jobs.request import JobRequest
from higgs_worker.jobs.runner import JobRunner


def request(**body):
    body.setdefault("max_new_tokens", 16)
    body.setdefault("seed", 5)
    return SpeechRequest.parse(body)


def test_same_request_and_seed_give_identical_audio(service):
    a = service.synthesize(request(transcript="Hello there.", temperature=1.0))
    b = service.synthesize(request(transcript="Hello there.", temperature=1.0))
    c = service.synthesize(request(transcript="Hello there.", temperature=1.0, seed=6))
    assert a.audio == b.audio and a.frames > 0
    assert a.audio != c.audio


def test_preset_voice_codes_are_in_the_model_inputs(service, spy):
    result = service.synthesize(request(transcript="Clone me.", ref_audio="tenor"))
    prompt, _, _ = spy[0]
    ref_codes = service.engine.encode_reference(service.voices.get("tenor").wave)
    assert torch.equal(prompt.turns[0].codes, ref_codes)
    inputs = model_inputs(service.engine.processor, prompt)
    delayed = with_delay(ref_codes, 8)
    assert torch.equal(inputs["audio_input_ids"][0, : delayed.shape[0]], delayed)
    tokenizer = service.engine.processor.tokenizer
    transcript_ids = tokenizer(service.voices.get("tenor").transcript, add_special_tokens=False)["input_ids"]
    ids = inputs["input_ids"][0].tolist()
    assert any(ids[i:i + len(transcript_ids)] == transcript_ids for i in range(len(ids)))
    audio_slots = (inputs["input_ids"][0] == service.engine.model.config.audio_token_id).sum()
    assert int(audio_slots) == delayed.shape[0] - 7
    assert result.metadata()["usage"]["prompt_tokens"] == len(ids)


def test_long_text_one_generation_per_chunk_and_bounded_buffer(service, spy):
    words = " ".join(f"word{i}" for i in range(50))
    result = service.synthesize(request(transcript=words, chunk_method="word", chunk_max_word_num=10,
                                        generation_chunk_buffer_size=2, ref_audio="alto"))
    assert result.chunks == 5 and len(spy) == 5
    for index, (prompt, seed, _) in enumerate(spy):
        history = prompt.turns[1:]
        assert len(history) == min(index, 2)  # the buffer bound
        assert prompt.turns[0].text.startswith("Twas the night")
        assert seed == 5 + index
        expected = [spy[j][2].codes for j in range(max(0, index - 2), index)]
        assert all(torch.equal(h.codes, e) for h, e in zip(history, expected, strict=True))
        assert prompt.text.split()[0] == f"word{index * 10}"
    total = sum(call[2].codes.shape[0] for call in spy)
    assert result.frames == total
    assert len(result.waveform) == total * 960


def test_a_null_buffer_keeps_every_previous_chunk_within_the_models_context(service, spy, monkeypatch):
    words = " ".join(f"word{i}" for i in range(40))
    body = dict(transcript=words, chunk_method="word", chunk_max_word_num=10, generation_chunk_buffer_size=None)
    service.synthesize(request(**body))
    assert [len(call[0].turns) for call in spy] == [0, 1, 2, 3]  # upstream's default: all the history
    engine = service.engine
    sizes = [engine.prompt_tokens(call[0]) for call in spy]
    spy.clear()
    # a context that holds a chunk with two previous chunks (each up to 16 frames more or less than another) but
    # not with three (a previous chunk costs its ten words' tokens besides its frames): the oldest goes first
    limit = sizes[2] + 16 + 40
    assert sizes[3] + 16 > limit
    monkeypatch.setattr(type(engine), "context_limit", property(lambda self: limit))
    service.synthesize(request(**body))
    kept = [len(call[0].turns) for call in spy]
    assert kept == [0, 1, 2, 2]
    last = spy[3][0]
    assert last.turns[-1].text.split()[0] == "word20"  # the newest previous chunk is the one kept
    assert engine.prompt_tokens(last) + 16 <= limit


def test_speaker_chunking_with_two_voices(service, spy):
    dialogue = "[SPEAKER0] I can't believe it!\n[SPEAKER1] Oh, come on.\n[SPEAKER0] Really?"
    result = service.synthesize(request(transcript=dialogue, chunk_method="speaker",
                                        ref_audio="alto,stereo_hall"))
    assert result.chunks == 3
    first = spy[0][0]
    assert [t.text.split()[0] for t in first.turns] == ["[SPEAKER0]", "[SPEAKER1]"]
    assert first.text == "[SPEAKER0] I can't believe it!"


def test_unknown_voice_fails_before_generation(service, spy):
    with pytest.raises(RequestError) as err:
        service.synthesize(request(transcript="hi", ref_audio="nobody"))
    assert err.value.field == "ref_audio" and spy == []


def test_too_many_chunks_refused(service, env, spy):
    service.settings.max_chunks = 2
    with pytest.raises(RequestError, match="MAX_CHUNKS"):
        service.synthesize(request(transcript="a b c d e f", chunk_method="word", chunk_max_word_num=1))
    assert spy == []


def test_result_metadata_and_wav_bytes(service):
    result = service.synthesize(request(transcript="Metadata."))
    wave, rate = sf.read(io.BytesIO(result.audio), dtype="float32")
    assert rate == 24000 and len(wave) == len(result.waveform) == result.frames * 960
    meta = result.metadata()
    assert meta["duration_s"] == pytest.approx(result.frames / 25, abs=1e-3)
    assert meta["seed"] == 5 and meta["sample_rate"] == 24000
    assert np.isfinite(meta["real_time_factor"]) and meta["usage"]["completion_tokens"] >= result.frames


def test_a_url_reference_is_fetched_once_per_request(service):
    wave = (0.2 * np.sin(np.arange(24000) / 7)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, wave, 24000, format="WAV")
    calls = []

    class Fetcher:
        def fetch(self, url):
            calls.append(url)
            return buf.getvalue()

    service.voices.fetcher = Fetcher()
    req = request(transcript="From a URL.", ref_audio="https://voices.example/a.wav", ref_text="Words.")
    service.check(req)
    result = service.synthesize(req)
    assert calls == ["https://voices.example/a.wav"] and result.frames > 0


def test_text_is_planned_once_per_request(service, monkeypatch):
    from higgs_worker.core import text as text_module

    calls = []
    real = text_module.normalize
    monkeypatch.setattr(text_module, "normalize", lambda t: calls.append(t) or real(t))
    req = request(transcript="Planned once.")
    service.check(req)
    service.synthesize(req)
    assert calls == ["Planned once."]


def test_job_errors_are_written_for_users_and_details_go_to_the_log(service, monkeypatch, caplog):
    import logging

    from higgs_worker.engine import EngineHolder, ModelLoadError

    runner = JobRunner(service)
    assert runner.run_job({"transcript": "x", "temperature": -1})["error"].startswith("temperature:")
    real_synthesize = service.synthesize
    monkeypatch.setattr(service, "synthesize", lambda *a, **k: (_ for _ in ()).throw(
        OSError("[Errno 5] /var/lib/secret/weights.safetensors: input/output error")))
    with caplog.at_level(logging.ERROR, logger="higgs_worker.core.errors"):
        error = runner.run_job({"transcript": "Hello."}, job_id="job-1")["error"]
    assert "secret" not in error and "OSError" not in error and error.startswith("internal error (error id ")
    ref = error.split("error id ")[1].split(";")[0]
    logged = [r for r in caplog.records if ref in r.getMessage()]
    assert logged and "/var/lib/secret" in logged[0].getMessage() and "job-1" in logged[0].getMessage()

    broken = ModelLoadError("MODEL_PATH folder /mnt/volume/models/x lacks config.json")
    service.holder = EngineHolder(lambda: (_ for _ in ()).throw(broken))
    monkeypatch.setattr(service, "synthesize", real_synthesize)
    first = runner.run_job({"transcript": "Hello."})["error"]
    second = runner.run_job({"transcript": "Hello again."})["error"]
    assert first == second  # a remembered load failure keeps its one id
    assert first.startswith("model unavailable: the model failed to load (error id ") and "/mnt" not in first


def test_a_parsed_job_runs_as_given(service):
    runner = JobRunner(service)
    parsed = JobRequest.parse({"transcript": "Parsed once.", "max_new_tokens": 16, "seed": 5})
    out = runner.run_job(parsed)
    assert out["audio_base64"] and out["seed"] == 5
    with pytest.raises(RequestError, match="bogus: unknown field"):
        JobRequest.parse({"transcript": "x", "bogus": "y" * 1000})
