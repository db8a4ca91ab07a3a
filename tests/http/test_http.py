"""The real HTTP server in a subprocess on the tiny model, driven over HTTP (httpx, the openai client)."""

from __future__ import annotations

import base64
import io
import json

import av
import httpx
import numpy as np
import pytest
import soundfile as sf
from openai import AuthenticationError, BadRequestError, OpenAI
from prometheus_client.parser import text_string_to_metric_families

from fixture_voices import write_voices
from servers import Server, wait_until

KEY = "test-key-8b1f0c"
AUTH = {"Authorization": f"Bearer {KEY}"}
EXTRA = {"seed": 3, "max_new_tokens": 40, "temperature": 1.0}


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("http")
    voices = write_voices(root / "voices", ["tenor", "alto"])
    srv = Server({"MODEL_PATH": str(tiny_model_dir / "model"), "TOKENIZER_PATH": str(tiny_model_dir / "tokenizer"),
                  "VOICES_DIR": str(voices), "API_KEYS": f"other-key,{KEY}", "LOG_DIR": str(root / "logs"),
                  "VOLUME_ROOT": str(root / "vol")}, root)
    try:
        srv.wait_ready(headers=AUTH)
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=120) as c:
        yield c


def decode(data: bytes, fmt: str) -> tuple[np.ndarray, int]:
    if fmt == "pcm":
        return np.frombuffer(data, "<i2").astype(np.float32) / 32767, 24000
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        frames = [f.to_ndarray().reshape(-1) for f in container.decode(stream)]
    wave = np.concatenate(frames)
    if wave.dtype.kind == "i":
        wave = wave.astype(np.float32) / 32767
    return wave, rate


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_openai_client_every_format(client, fmt):
    raw = client.audio.speech.with_raw_response.create(model="tts-1", voice="tenor", input="Every format.",
                                                       response_format=fmt, extra_body=EXTRA)
    data = raw.content
    duration = float(raw.headers["x-audio-duration"])
    assert duration > 0
    wave, rate = decode(data, fmt)
    assert rate == (48000 if fmt == "opus" else 24000)
    # lossy files add their codec's padding: AAC up to 2047 samples (1024 priming, the last frame padded)
    assert len(wave) / rate == pytest.approx(duration, abs=2048 / 24000 + 0.001 if fmt in ("mp3", "aac", "opus")
                                             else 0.001)
    if fmt == "wav":
        info = sf.info(io.BytesIO(data))
        assert info.frames == round(duration * 24000) and info.frames % 960 == 0


def test_same_seed_same_audio_and_voice_changes_it(client):
    def make(voice):
        return client.audio.speech.create(model="tts-1", voice=voice, input="Seeded.", response_format="wav",
                                          extra_body=EXTRA).read()
    assert make("tenor") == make("tenor")
    assert make("tenor") != make("alto")


def test_unsupported_values_are_400_naming_the_field(client):
    cases = [({"speed": 4.5}, "speed"), ({"response_format": "ogg"}, "response_format"),
             ({"voice": "nobody"}, "voice"), ({"model": "whisper-1"}, "model"),
             ({"extra_body": {"bogus": 1}}, "bogus"), ({"input": " "}, "input")]
    for override, field in cases:
        args = {"model": "tts-1", "voice": "tenor", "input": "x", **override}
        with pytest.raises(BadRequestError) as err:
            client.audio.speech.create(**args)
        assert field in str(err.value), (override, str(err.value))


def test_streamed_wav_equals_the_whole_file(http):
    body = {"model": "tts-1", "voice": "tenor", "input": " ".join(f"word{i}" for i in range(9)),
            "response_format": "wav", "chunk_method": "word", **EXTRA}
    whole = http.post("/v1/audio/speech", json=body).content
    pieces = []
    with http.stream("POST", "/v1/audio/speech", json={**body, "stream_format": "audio"}) as resp:
        assert resp.status_code == 200
        pieces = [p for p in resp.iter_bytes() if p]
    streamed = b"".join(pieces)
    assert streamed[4:8] == b"\xff\xff\xff\xff" and streamed[40:44] == b"\xff\xff\xff\xff"
    a = np.frombuffer(streamed[44:], "<i2").astype(int)
    b = np.frombuffer(whole[44:], "<i2").astype(int)
    assert len(a) == len(b) > 0
    assert np.abs(a - b).max() <= 4  # incremental decode within 1e-4 of the whole decode, then int16


def test_streamed_mp3_decodes_as_one_file(client):
    body = {**EXTRA, "chunk_method": "word", "chunk_max_word_num": 3}
    text = "one two three four five six seven"
    whole = client.audio.speech.create(model="tts-1", voice="tenor", input=text, response_format="mp3",
                                       extra_body=body).read()
    with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="tenor", input=text, response_format="mp3",
            extra_body={**body, "stream_format": "audio"}) as resp:
        streamed = b"".join(resp.iter_bytes())
    a, _ = decode(streamed, "mp3")
    b, _ = decode(whole, "mp3")
    assert len(a) == len(b)
    assert np.abs(a - b).max() < 0.02


def test_sse_events_parsed_incrementally(http):
    body = {"model": "tts-1", "voice": "default", "input": "a b c d e f", "response_format": "pcm",
            "stream_format": "sse", "chunk_method": "word", "chunk_max_word_num": 2, **EXTRA}
    deltas, done = [], None
    with http.stream("POST", "/v1/audio/speech", json=body) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            if event["type"] == "speech.audio.delta":
                assert done is None
                deltas.append(base64.b64decode(event["audio"]))
            elif event["type"] == "speech.audio.done":
                done = event
    assert len(deltas) >= 2 and done is not None
    samples = sum(len(d) for d in deltas) // 2
    assert samples / 24000 == pytest.approx(done["duration_s"], abs=1e-3)
    assert done["usage"]["output_tokens"] > 0 and done["usage"]["input_tokens"] > 0
    assert "warnings" not in done and "loudness" not in done  # only when there is something to say


def test_sse_done_carries_the_warnings_and_the_loudness(http):
    """The final SSE event reports what a whole response's metadata reports: an unknown [tag] read as text, and the
    stream's loudness normalisation when asked for."""
    body = {"model": "tts-1", "voice": "default", "input": "Hello [whisper] there.", "response_format": "pcm",
            "stream_format": "sse", "loudness": -16, **EXTRA}
    with http.stream("POST", "/v1/audio/speech", json=body) as resp:
        assert resp.status_code == 200
        events = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: ")]
    done = [e for e in events if e["type"] == "speech.audio.done"]
    assert len(done) == 1, [e["type"] for e in events]
    assert [w.split(" ", 1)[0] for w in done[0]["warnings"]] == ["[whisper]"]
    assert done[0]["warnings"][0].startswith("[whisper] is not a sound tag the model knows")
    assert done[0]["loudness"]["method"] == "stream" and done[0]["loudness"]["target_lufs"] == -16


def test_models_listed(client):
    assert "tts-1" in [m.id for m in client.models.list()]


def test_auth_required_except_ping_and_health(server):
    bad = OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(AuthenticationError):
        bad.audio.speech.create(model="tts-1", voice="tenor", input="x")
    assert httpx.post(f"{server.url}/runsync", json={"input": {"transcript": "x"}}).status_code == 401
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    assert httpx.get(f"{server.url}/ping").status_code == 200
    assert httpx.get(f"{server.url}/health").json()["model"]["state"] == "ready"


def test_runsync_with_the_guide_payload(http):
    payload = {"input": {"transcript": "Hello, this is a test of the Higgs Audio model.",
                         "ref_audio": "alto", "scene_prompt": "Audio is recorded from a quiet room.",
                         "temperature": 0.7, "top_p": 0.95, "max_new_tokens": 40, "seed": 9}}
    job = http.post("/runsync", json=payload).json()
    assert job["status"] == "COMPLETED", job
    out = job["output"]
    wave, rate = sf.read(io.BytesIO(base64.b64decode(out["audio_base64"])))
    assert rate == out["sample_rate"] == 24000
    assert len(wave) / rate == pytest.approx(out["duration_s"], abs=1e-3)
    assert set(out["timings"]) >= {"queue", "model_load", "generate", "encode"}


def test_runsync_bad_input_fails_with_a_message(http):
    job = http.post("/runsync", json={"input": {"transcript": "x", "temperature": -1}}).json()
    assert job["status"] == "FAILED" and "temperature" in job["error"]
    assert http.post("/runsync", json={"transcript": "no envelope"}).status_code == 400


def test_run_status_completed(http):
    job_id = http.post("/run", json={"input": {"transcript": "Queued.", **EXTRA}}).json()["id"]
    final = wait_until(lambda: (s := http.get(f"/status/{job_id}").json())["status"] in
                       ("COMPLETED", "FAILED") and s, what="the job to finish")
    assert final["status"] == "COMPLETED" and final["output"]["audio_base64"]
    assert http.get("/status/local-nope").status_code == 404


def test_cancel_a_long_job_frees_the_engine(http):
    long_input = {"transcript": " ".join(f"w{i}" for i in range(60)), "chunk_method": "word",
                  "chunk_max_word_num": 1, "max_new_tokens": 400, "temperature": 1.0, "seed": 1}
    job_id = http.post("/run", json={"input": long_input}).json()["id"]

    def started():
        state = http.get(f"/status/{job_id}").json()
        assert state["status"] in ("IN_QUEUE", "IN_PROGRESS"), state
        return state["status"] == "IN_PROGRESS"

    wait_until(started, what="the job to start")
    assert http.post(f"/cancel/{job_id}").json()["status"] == "CANCELLED"
    assert http.get(f"/status/{job_id}").json()["status"] == "CANCELLED"
    after = http.post("/runsync", json={"input": {"transcript": "Next.", **EXTRA}}).json()
    assert after["status"] == "COMPLETED"


def test_stream_job_pieces(http):
    job_id = http.post("/run", json={"input": {"transcript": "a b c d e f", "chunk_method": "word",
                                               "chunk_max_word_num": 2, "stream": True, "format": "pcm",
                                               **EXTRA}}).json()["id"]
    pieces = []

    def finished():
        got = http.get(f"/stream/{job_id}").json()
        pieces.extend(p["output"] for p in got["stream"])
        return got["status"] in ("COMPLETED", "FAILED") and got

    final = wait_until(finished, what="the streamed job")
    pieces.extend(p["output"] for p in http.get(f"/stream/{job_id}").json()["stream"])
    assert final["status"] == "COMPLETED"
    assert [p["chunk_index"] for p in pieces] == list(range(len(pieces))) and len(pieces) >= 2
    audio = b"".join(base64.b64decode(p["audio_base64"]) for p in pieces)
    status = http.get(f"/status/{job_id}").json()
    assert len(audio) // 2 / 24000 == pytest.approx(status["output"]["duration_s"], abs=1e-3)


def test_voice_upload_round_trip(http, client):
    buf = io.BytesIO()
    t = np.arange(44100 * 2) / 44100
    sf.write(buf, np.stack([np.sin(2 * np.pi * 200 * t), np.sin(2 * np.pi * 300 * t)], 1) * 0.3, 44100,
             format="FLAC")
    files = {"audio": ("me.flac", buf.getvalue(), "audio/flac")}
    made = http.post("/v1/audio/voices", files=files, data={"name": "my_voice", "transcript": "My words."})
    assert made.status_code == 201 and made.json()["duration_s"] == pytest.approx(2.0, abs=0.01)
    again = http.post("/v1/audio/voices", files=files, data={"name": "my_voice", "transcript": "x"})
    assert again.status_code == 409
    listed = {v["name"]: v for v in http.get("/v1/audio/voices").json()["data"]}
    assert listed["my_voice"]["kind"] == "upload" and listed["tenor"]["kind"] == "preset"
    assert listed["my_voice"]["transcript"] == "My words."
    audio = client.audio.speech.create(model="tts-1", voice="my_voice", input="Uploaded.", response_format="wav",
                                       extra_body=EXTRA).read()
    assert sf.info(io.BytesIO(audio)).frames > 0
    assert http.delete("/v1/audio/voices/tenor").status_code == 400
    assert http.delete("/v1/audio/voices/my_voice").status_code == 200
    assert http.delete("/v1/audio/voices/my_voice").status_code == 404
    bad = http.post("/v1/audio/voices", files={"audio": ("x.wav", b"junk" * 100, "audio/wav")},
                    data={"name": "junk", "transcript": "x"})
    assert bad.status_code == 400 and "audio" in bad.json()["error"]["message"]


def test_metrics_parse_and_count(http, client):
    def count():
        text = http.get("/metrics").text
        families = {f.name: f for f in text_string_to_metric_families(text)}
        return sum(s.value for s in families["higgs_http_requests"].samples
                   if s.name.endswith("_total") and s.labels["route"] == "/v1/audio/speech"
                   and s.labels["status"] == "200"), families

    before, _ = count()
    client.audio.speech.create(model="tts-1", voice="tenor", input="Count me.", response_format="wav",
                               extra_body=EXTRA)
    after, families = count()
    assert after == before + 1
    assert any(s.value > 0 for s in families["higgs_generated_audio_seconds"].samples)
    assert "higgs_queue_depth" in families and "higgs_model_load_seconds" in families
    batch_counts = [s.value for s in families["higgs_batch_size"].samples if s.name.endswith("_count")]
    assert batch_counts and batch_counts[0] > 0  # every decode step records its batch size


def test_openapi_docs(http):
    assert http.get("/docs").status_code == 200
    paths = http.get("/openapi.json").json()["paths"]
    assert {"/run", "/runsync", "/v1/audio/speech", "/v1/audio/voices"} <= set(paths)


def test_client_disconnect_cancels_its_generation(server, http):
    body = {"model": "tts-1", "voice": "default", "input": " ".join(f"w{i}" for i in range(30)),
            "response_format": "pcm", "stream_format": "audio", "chunk_method": "word", "chunk_max_word_num": 1,
            "max_new_tokens": 1000, "temperature": 1.0, "seed": 2}
    with http.stream("POST", "/v1/audio/speech", json=body) as resp:
        assert resp.status_code == 200
        next(resp.iter_bytes())  # audio is flowing: now go away
    assert http.get("/health").json()["model"]["state"] == "ready"
    wait_until(lambda: http.get("/health").json()["model"]["decoding"] == 0, 20, "the generation to stop")


def test_try_it_page_is_served_without_a_key(server):
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200 and "v1/audio/speech" in page.text and "<audio" in page.text


def test_concurrent_http_requests_share_decode_steps(http):
    from concurrent.futures import ThreadPoolExecutor

    def families():
        return {f.name: f for f in text_string_to_metric_families(http.get("/metrics").text)}

    def multi_row_steps(fams):
        samples = {(s.name, s.labels.get("le")): s.value for s in fams["higgs_batch_size"].samples}
        return samples[("higgs_batch_size_count", None)] - samples[("higgs_batch_size_bucket", "1.0")]

    before = multi_row_steps(families())
    body = {"model": "tts-1", "voice": "default", "response_format": "wav", "max_new_tokens": 60,
            "temperature": 1.0, "ras_win_len": 0}
    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(lambda i: http.post("/v1/audio/speech", json={**body, "input": f"Row {i}.",
                                                                              "seed": i}).status_code, range(6)))
    assert codes == [200] * 6
    assert multi_row_steps(families()) > before  # some steps decoded several requests at once
