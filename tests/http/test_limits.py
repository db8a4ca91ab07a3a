"""HTTP limits in-process (FastAPI's TestClient around the real app and the tiny engine)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf


def test_body_over_the_limit_is_413_naming_it(client_for):
    client = client_for(max_body_bytes=2048)
    response = client.post("/v1/audio/speech", json={"model": "tts-1", "voice": "default", "input": "x" * 5000})
    assert response.status_code == 413 and "MAX_BODY_BYTES" in response.json()["error"]["message"]
    chunked = client.post("/runsync", content=iter([b'{"input": {"transcript": "', b"y" * 4096, b'"}}']),
                          headers={"content-type": "application/json"})
    assert chunked.status_code == 413
    assert client.get("/health").status_code == 200  # still serving


def test_too_many_open_jobs_is_429(client_for):
    client = client_for(max_concurrent_jobs=1)
    long = {"transcript": " ".join(["word"] * 20), "chunk_method": "word", "chunk_max_word_num": 1,
            "max_new_tokens": 200, "temperature": 1.0, "seed": 1}
    first = client.post("/run", json={"input": long}).json()
    second = client.post("/run", json={"input": long})
    assert second.status_code == 429 and "MAX_CONCURRENT_JOBS" in second.json()["error"]["message"]
    assert second.headers["retry-after"]
    assert client.post(f"/cancel/{first['id']}").json()["status"] in ("CANCELLED", "COMPLETED")


def test_voice_upload_over_the_limit(client_for):
    client = client_for(max_ref_audio_bytes=20_000)
    buf = io.BytesIO()
    sf.write(buf, np.zeros(48000, dtype=np.float32), 24000, format="WAV")
    response = client.post("/v1/audio/voices", files={"audio": ("a.wav", buf.getvalue(), "audio/wav")},
                           data={"name": "toolarge", "transcript": "x"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "audio" and "MAX_REF_AUDIO_BYTES" in response.json()["error"]["message"]


def test_cors_only_when_configured(client_for):
    closed = client_for()
    assert "access-control-allow-origin" not in closed.options(
        "/v1/models", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}).headers
    opened = client_for(cors_origins="https://app.example")
    preflight = opened.options("/v1/models", headers={"Origin": "https://app.example",
                                                      "Access-Control-Request-Method": "GET"})
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"


@pytest.mark.parametrize(("body", "field", "meant"), [
    ({"model": "tts-1", "voice": "default", "text": "Hi."}, "text", "`input`"),
    ({"model": "tts-1", "voice": "default", "input": "Hi.", "format": "mp3"}, "format", "`response_format`"),
])
def test_common_mix_ups_on_the_openai_route_say_what_was_meant(client_for, body, field, meant):
    response = client_for().post("/v1/audio/speech", json=body)
    error = response.json()["error"]
    assert response.status_code == 400 and error["param"] == field
    assert f"did you mean {meant}" in error["message"]


def test_openai_names_sent_to_runsync_say_which_names_it_takes(client_for):
    response = client_for().post("/runsync", json={"input": {"input": "Hi.", "voice": "alto"}})
    out = response.json()
    assert "did you mean `transcript`" in str(out) and "/v1/audio/speech" in str(out)
