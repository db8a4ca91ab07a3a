"""Long text, speed, truncation and saved voices through the real server (subprocess) on the tiny model."""

from __future__ import annotations

import base64
import io
import json
import shutil

import av
import httpx
import numpy as np
import pytest

from fixture_voices import write_voices
from servers import Server


def duration(data: bytes, fmt: str) -> float:
    if fmt == "pcm":
        return len(data) / 2 / 24000
    with av.open(io.BytesIO(data)) as box:
        stream = box.streams.audio[0]
        return sum(f.samples for f in box.decode(stream)) / stream.rate


MARKER = {"repo_id": "bosonai/higgs-audio-v2-generation-3B-base", "revision": "main", "commit": "c0ffee" * 6 + "ab"}


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("longform")
    model = root / "tiny"
    shutil.copytree(tiny_model_dir, model)
    (model / "model" / ".higgs-complete.json").write_text(json.dumps(MARKER))  # as fetch-models leaves it
    srv = Server({"MODEL_PATH": str(model / "model"), "TOKENIZER_PATH": str(model / "tokenizer"),
                  "VOICES_DIR": str(write_voices(root / "voices", ["alto"])), "LOG_DIR": str(root / "logs"),
                  "VOLUME_ROOT": str(root / "vol"), "MAX_CHUNKS": "500", "MAX_TEXT_CHARS": "40000"}, root)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def speech(server, **body) -> httpx.Response:
    body = {"model": "tts-1", "voice": "default", "seed": 4, "temperature": 1.0, **body}
    return httpx.post(f"{server.url}/v1/audio/speech", json=body, timeout=600)


def test_an_article_without_chunking_fields_is_split_and_decodes_to_one_file(server):
    sentences = [f"This is sentence number {i} of a long article, and it has about fourteen words." for i in range(200)]
    article = " ".join(sentences)
    assert 2900 < len(article.split()) < 3100
    r = speech(server, input=article, response_format="wav", max_new_tokens=10)
    assert r.status_code == 200, r.text
    chunks = int(r.headers["X-Higgs-Chunks"])
    assert chunks > 300  # 10 frames a chunk leave room for 8 words: whole sentences do not fit, clauses do
    # every chunk's audio in one file: 10 steps give at most 2 frames once the stream start and 7 delay frames go
    seconds = duration(r.content, "wav")
    assert abs(seconds - float(r.headers["X-Audio-Duration"])) < 0.01
    assert 0.5 * chunks * 0.04 <= seconds <= chunks * 2 * 0.04
    assert r.headers["X-Higgs-Truncated"] == "true"  # the tiny model never ends a chunk by itself


def test_a_forced_cut_is_reported_on_every_api(server):
    r = speech(server, input="Cut me short.", response_format="wav", max_new_tokens=5)
    assert r.headers["X-Higgs-Truncated"] == "true"
    job = httpx.post(f"{server.url}/runsync", json={"input": {"transcript": "Cut me short.", "max_new_tokens": 5}},
                     timeout=120).json()
    out = job["output"]
    assert out["truncated"] is True and out["truncated_chunks"] == [0] and out["usage"]["truncated"] is True
    with httpx.stream("POST", f"{server.url}/v1/audio/speech", timeout=120,
                      json={"model": "tts-1", "voice": "default", "input": "Cut me.", "stream_format": "sse",
                            "response_format": "pcm", "max_new_tokens": 5}) as sse:
        events = [json.loads(line[6:]) for line in sse.iter_lines() if line.startswith("data: ")]
    assert events[-1]["type"] == "speech.audio.done" and events[-1]["truncated"] is True
    assert "reached max_new_tokens" in server.output()


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac", "opus", "aac", "pcm"])
def test_speed_scales_the_duration_in_every_format(server, fmt):
    base = {"input": "Speed test sentence.", "response_format": fmt, "max_new_tokens": 50}
    plain = speech(server, **base)
    normal = float(plain.headers["X-Audio-Duration"])  # the audio itself: a lossy file adds its codec's padding
    for speed in (0.5, 2.0):
        r = speech(server, **base, speed=speed)
        assert r.status_code == 200, r.text
        got = duration(r.content, fmt)
        header = float(r.headers["X-Audio-Duration"])
        assert abs(header / normal - 1 / speed) < 0.03 / speed + 0.05 / normal, (fmt, speed, header, normal)
        if fmt == "aac":  # ADTS AAC decodes with the encoder's 1024 priming samples and its last frame padded to
            # 1024 samples: 1024 to 2047 samples more than the audio (whether 0.06 s covered it was luck of length)
            assert 1024 / 24000 - 0.001 < got - header < 2048 / 24000 + 0.001, (speed, got, header)
        else:
            assert abs(header - got) < 0.06, (fmt, speed, got, header)


def test_speed_in_streams_and_jobs(server):
    body = {"model": "tts-1", "voice": "default", "input": "Streamed speed.", "seed": 4, "temperature": 1.0,
            "max_new_tokens": 50, "response_format": "pcm", "stream_format": "audio"}
    lengths = {}
    for speed in (1.0, 0.5, 2.0):
        with httpx.stream("POST", f"{server.url}/v1/audio/speech", json={**body, "speed": speed}, timeout=120) as r:
            lengths[speed] = len(b"".join(r.iter_bytes()))
    assert abs(lengths[0.5] / lengths[1.0] - 2.0) < 0.06 and abs(lengths[2.0] / lengths[1.0] - 0.5) < 0.03
    jobs = {speed: httpx.post(f"{server.url}/runsync", timeout=120, json={"input": {
        "transcript": "Streamed speed.", "seed": 4, "max_new_tokens": 50, "speed": speed}}).json()["output"]
        for speed in (1.0, 2.0)}
    assert abs(jobs[2.0]["duration_s"] / jobs[1.0]["duration_s"] - 0.5) < 0.03
    assert jobs[2.0]["frames"] == jobs[1.0]["frames"]  # the same generation, played faster


def test_speed_out_of_range_names_the_field(server):
    r = speech(server, input="x", speed=4.5)
    assert r.status_code == 400 and r.json()["error"]["param"] == "speed"


def test_save_voice_round_trip_on_both_apis(server):
    r = speech(server, input="A voice worth keeping.", response_format="wav", max_new_tokens=30,
               save_voice="kept_http", speed=2.0)
    assert r.status_code == 200 and r.headers["X-Higgs-Saved-Voice"] == "kept_http"
    voices = {v["name"]: v for v in httpx.get(f"{server.url}/v1/audio/voices").json()["data"]}
    assert voices["kept_http"]["transcript"] == "A voice worth keeping."
    stretched = float(r.headers["X-Audio-Duration"])
    assert abs(voices["kept_http"]["duration_s"] - 2 * stretched) < 0.06  # saved at its natural pace, unstretched
    again = speech(server, input="x", save_voice="kept_http")
    assert again.status_code == 400 and again.json()["error"]["param"] == "save_voice"
    job = httpx.post(f"{server.url}/runsync", json={"input": {"transcript": "Kept by a job.", "max_new_tokens": 20,
                                                              "save_voice": "kept_job"}}, timeout=120).json()
    assert job["output"]["saved_voice"] == "kept_job"
    reuse = speech(server, input="Now in the kept voice.", voice="kept_job", response_format="wav", max_new_tokens=10)
    assert reuse.status_code == 200
    wave = np.frombuffer(base64.b64decode(job["output"]["audio_base64"])[44:], "<i2")
    assert len(wave) > 0


def test_the_loaded_commit_is_shown_on_health_models_and_the_log(server):
    health = httpx.get(f"{server.url}/health", timeout=30).json()
    assert health["model"]["source"]["commit"] == MARKER["commit"]
    models = httpx.get(f"{server.url}/v1/models", timeout=30).json()["data"]
    assert all(m["higgs_model"]["commit"] == MARKER["commit"] for m in models)
    assert f"{MARKER['repo_id']}@{MARKER['commit']}" in server.output()
