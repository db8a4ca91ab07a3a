"""Speech checks, word times and captions through the real server, with the tiny Whisper through the real loader.

Random weights hear nonsense: every checked chunk is retried to ``max_attempts`` and the result says it did not
pass. Word times and captions are checked for shape: monotonic, inside the audio, parseable.
"""

from __future__ import annotations

import base64
import io
import json

import httpx
import pytest
import soundfile as sf
import srt
import webvtt

from servers import Server


@pytest.fixture(scope="module")
def server(tiny_model_dir, s3, tmp_path_factory):
    root = tmp_path_factory.mktemp("checks")
    srv = Server({"MODEL_PATH": str(tiny_model_dir / "model"), "TOKENIZER_PATH": str(tiny_model_dir / "tokenizer"),
                  "ASR": "on", "ASR_PATH": str(tiny_model_dir / "asr"), "LOG_DIR": str(root / "logs"),
                  "VOLUME_ROOT": str(root / "vol"), **s3.env(), "S3_ALLOWED_BUCKETS": "audio-out"}, root)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def post(server, path, body, **kw):
    return httpx.post(f"{server.url}{path}", json=body, timeout=300, **kw)


BODY = {"model": "tts-1", "voice": "default", "seed": 2, "temperature": 1.0, "max_new_tokens": 40}


def test_verify_retries_every_chunk_to_max_attempts_and_says_it_did_not_pass(server):
    r = post(server, "/v1/audio/speech", {**BODY, "input": "First sentence here. Second one follows.",
                                          "chunk_method": "sentence", "chunk_max_word_num": 3, "response_format": "wav",
                                          "verify": {"max_attempts": 2, "max_wer": 0.1}})
    assert r.status_code == 200, r.text
    quality = r.headers["X-Higgs-Quality"]
    assert quality.startswith("failed; chunks=2; attempts=4")
    job = post(server, "/runsync", {"input": {"transcript": "Checked by a job.", "max_new_tokens": 40, "seed": 2,
                                              "verify": True}}).json()
    checked = job["output"]["quality"]
    assert checked["passed"] is False and checked["attempts"] == 3  # VERIFY_MAX_ATTEMPTS
    chunk = checked["chunks"][0]
    assert chunk["text"] == "Checked by a job." and len(chunk["history"]) == 3
    assert len({a["seed"] for a in chunk["history"]}) == 3 and chunk["wer"] > 0.1
    assert job["output"]["usage"]["completion_tokens"] >= 3 * 40 - 10  # every attempt is paid for
    metrics = httpx.get(f"{server.url}/metrics").text
    assert "higgs_asr_attempts_per_chunk_count" in metrics


def test_word_times_and_captions_on_the_captioned_route(server):
    r = post(server, "/v1/audio/speech/captioned", {**BODY, "input": "Words with times.", "response_format": "wav",
                                                    "captions": "vtt", "max_new_tokens": 120})
    assert r.status_code == 200, r.text
    out = r.json()
    wave, rate = sf.read(io.BytesIO(base64.b64decode(out["audio_base64"])))
    seconds = len(wave) / rate
    words = out["words"]
    assert words, "the tiny Whisper hears (nonsense) words in this seed's audio"
    starts = [w["start"] for w in words]
    assert starts == sorted(starts) and all(0 <= w["start"] <= w["end"] <= seconds + 0.02 for w in words)
    assert out["captions"]["format"] == "vtt"
    cues = webvtt.from_string(out["captions"]["text"]).captions
    assert cues and cues[0].text.split()[0] == words[0]["word"]
    assert all(len(line) <= 42 for cue in cues for line in cue.text.splitlines())


def test_captions_and_words_beside_the_audio_in_s3(server, s3):
    job = post(server, "/runsync", {"input": {"transcript": "Captions in the bucket.", "max_new_tokens": 120,
                                              "seed": 3, "timestamps": "word", "captions": "srt",
                                              "s3_bucket": "audio-out", "s3_key": "checks/take.wav"}}).json()
    out = job["output"]
    assert out["s3"]["key"] == "checks/take.wav"
    assert out["s3"]["captions"]["key"] == "checks/take.srt" and out["s3"]["words"]["key"] == "checks/take.words.json"
    stored = s3.client().get_object(Bucket="audio-out", Key="checks/take.srt")["Body"].read().decode()
    assert stored == out["captions"]["text"]
    list(srt.parse(stored, ignore_errors=False))  # a real SRT parser accepts it
    words = json.loads(httpx.get(out["s3"]["words"]["presigned_url"]).content)
    assert words == out["words"]


def test_sse_sends_the_words_before_done(server):
    with httpx.stream("POST", f"{server.url}/v1/audio/speech", timeout=300,
                      json={**BODY, "input": "Streamed words.", "stream_format": "sse", "response_format": "pcm",
                            "timestamps": "word"}) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    kinds = [e["type"] for e in events]
    assert kinds[-2:] == ["speech.audio.words", "speech.audio.done"] and kinds.count("speech.audio.delta") >= 1
    assert isinstance(events[-2]["words"], list)


def test_verify_while_streaming_sends_each_chunk_once_checked(server):
    body = {**BODY, "input": "One two three. Four five six.", "chunk_method": "sentence", "chunk_max_word_num": 3,
            "stream_format": "sse", "response_format": "pcm", "verify": {"max_attempts": 2}}
    with httpx.stream("POST", f"{server.url}/v1/audio/speech", json=body, timeout=300) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    done = events[-1]
    assert done["type"] == "speech.audio.done" and len(done["quality"]["chunks"]) == 2
    pcm = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
    assert abs(len(pcm) / 2 / 24000 - done["duration_s"]) < 0.01


def test_checks_are_refused_by_name_when_the_server_has_no_recognition(tiny_model_dir, tmp_path):
    srv = Server({"MODEL_PATH": str(tiny_model_dir / "model"), "TOKENIZER_PATH": str(tiny_model_dir / "tokenizer"),
                  "ASR": "off", "LOG_DIR": str(tmp_path / "logs"), "VOLUME_ROOT": str(tmp_path / "vol")}, tmp_path)
    try:
        srv.wait_ready()
        r = post(srv, "/v1/audio/speech", {**BODY, "input": "x", "captions": "srt"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "captions" and "ASR" in r.text
    finally:
        srv.stop()
