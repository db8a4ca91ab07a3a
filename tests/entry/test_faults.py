"""Injected faults: out-of-memory during a batch, a model that fails to load, SIGTERM mid-job."""

from __future__ import annotations

import json
import re
import signal
import threading

import httpx
import pytest
import torch

from higgs_worker.engine import Prompt, Sampling
from higgs_worker.core.errors import EngineError
from servers import Server, wait_until

GREEDY = Sampling(temperature=0.0, ras_win_len=0, max_new_tokens=30)


@pytest.fixture()
def oom_when(engine, monkeypatch):
    """Make the decode step raise out-of-memory whenever ``predicate(rows)`` holds."""
    scheduler = engine.scheduler
    real = scheduler._forward
    state = {"predicate": lambda rows: False}

    def forward(frames, position_ids, mask):
        if state["predicate"](frames.shape[0]):
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real(frames, position_ids, mask)

    monkeypatch.setattr(scheduler, "_forward", forward)
    yield state
    scheduler.split = 0


def test_oom_in_a_batch_retries_in_smaller_batches(engine, oom_when):
    prompts = [Prompt(text=f"Request {i} under memory pressure.") for i in range(6)]
    alone = [engine.generate(p, GREEDY, seed=0).codes for p in prompts]
    before = engine.scheduler.oom_events
    oom_when["predicate"] = lambda rows: rows > 2
    jobs = [engine.start(p, GREEDY, seed=0) for p in prompts]
    together = [engine.finish(j).codes for j in jobs]
    assert engine.scheduler.oom_events > before
    for a, b in zip(alone, together, strict=True):
        assert torch.equal(a, b)


def test_oom_even_alone_fails_with_a_clear_error_and_keeps_serving(engine, oom_when):
    oom_when["predicate"] = lambda rows: True
    with pytest.raises(EngineError, match="out of accelerator memory"):
        engine.generate(Prompt(text="Too big."), GREEDY, seed=0)
    oom_when["predicate"] = lambda rows: False
    assert engine.generate(Prompt(text="Fine again."), GREEDY, seed=0).codes.shape[0] > 0


@pytest.mark.parametrize("fault", ["broken config", "missing tokenizer folder"])
def test_model_load_failure_is_reported_without_crashing_or_showing_paths(tmp_path, fault):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text('{"model_type": "higgs_audio_v2", "broken": ')
    (tmp_path / "model" / "tokenizer_config.json").write_text("{}")
    tokenizer = tmp_path / "tokenizer"
    if fault == "broken config":
        tokenizer.mkdir()
        (tokenizer / "config.json").write_text("{}")
    else:
        tokenizer = tmp_path / "no-such-tokenizer"  # the loader's message names this folder
    server = Server({"MODEL_PATH": str(tmp_path / "model"), "TOKENIZER_PATH": str(tokenizer),
                     "LOG_DIR": str(tmp_path / "logs"), "VOLUME_ROOT": str(tmp_path / "v")}, tmp_path)
    try:
        def failed():
            try:
                return httpx.get(f"{server.url}/ping", timeout=2).status_code == 503
            except httpx.HTTPError:
                return False

        wait_until(failed, 180, "/ping to report the failed load", )
        ping = httpx.get(f"{server.url}/ping").json()
        health = httpx.get(f"{server.url}/health").json()
        assert health["model"]["state"] == "failed" and "failed to load" in health["model"]["error"]
        job = httpx.post(f"{server.url}/runsync", json={"input": {"transcript": "hi"}}, timeout=60).json()
        assert job["status"] == "FAILED" and "model unavailable" in job["error"]
        speech = httpx.post(f"{server.url}/v1/audio/speech",
                            json={"model": "tts-1", "input": "hi", "voice": "default"}, timeout=60)
        assert speech.status_code == 503 and "model unavailable" in speech.json()["error"]["message"]
        assert server.proc.poll() is None  # still up: no crash loop
        public = [json.dumps(ping), json.dumps(health), job["error"], speech.json()["error"]["message"]]
        for text in public:  # a generic reason and an error id, never a path or the loader's own words
            assert str(tmp_path) not in text and "/" not in text.split("error id")[0], text
        ref = re.search(r"error id ([0-9a-f]+)", health["model"]["error"]).group(1)
        assert all(ref in text for text in public)  # one failure, one id, however often it is reported
        detail = next(line for line in server.output().splitlines() if f"error {ref}" in line)
        assert "ModelLoadError" in detail
        if fault == "missing tokenizer folder":
            assert str(tokenizer) in detail  # the operator gets the path, in the log
    finally:
        server.stop()


def test_sigterm_mid_job_finishes_it_then_exits(tiny_model_dir, tmp_path):
    server = Server({"MODEL_PATH": str(tiny_model_dir / "model"), "TOKENIZER_PATH": str(tiny_model_dir / "tokenizer"),
                     "LOG_DIR": str(tmp_path / "logs"), "VOLUME_ROOT": str(tmp_path / "v")}, tmp_path)
    server.wait_ready()
    job_input = {"transcript": " ".join(f"w{i}" for i in range(12)), "chunk_method": "word", "chunk_max_word_num": 1,
                 "max_new_tokens": 120, "temperature": 1.0, "seed": 3}
    result: dict = {}

    def call():
        result["job"] = httpx.post(f"{server.url}/runsync", json={"input": job_input}, timeout=300).json()

    caller = threading.Thread(target=call)
    caller.start()
    wait_until(lambda: httpx.get(f"{server.url}/health").json()["jobs"]["inProgress"] == 1, 60, "the job to start")
    server.proc.send_signal(signal.SIGTERM)
    caller.join(timeout=300)
    code = server.proc.wait(timeout=120)  # it exits by itself once the job is done
    server.stop()
    assert result["job"]["status"] == "COMPLETED", result
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after its graceful shutdown
    out = server.output()
    assert out.index("Shutting down") < out.index("POST /runsync") < out.index("Finished server process")
