"""Text hygiene against the real server: a transcript with nothing to speak is refused by name, hidden characters
never reach the model, the reference transcript (`ref_text`, an upload's `transcript`) is cleaned and bounded on
every entry point, lone surrogates are a 400 naming the field, and upload names are unique whatever their case."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from fixture_voices import encoded
from servers import Server

REF_TEXT_LIMIT = 200


@pytest.fixture(scope="module")
def server(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("hygiene")
    srv = Server({"MODEL_PATH": str(tiny_model_dir / "model"), "TOKENIZER_PATH": str(tiny_model_dir / "tokenizer"),
                  "LOG_DIR": str(root / "logs"), "VOLUME_ROOT": str(root / "vol"),
                  "MAX_REF_TEXT_CHARS": str(REF_TEXT_LIMIT)}, root)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.mark.parametrize("junk", ["\x00\x00\x00", "\u200b\u200c\u200d", "\ufeff\x07 \x1b", "\u3164\u3164",
                                  "\u2800 \u2800", "\U000e0068\U000e0069\U000e007f", "\x1b[31m\x1b[0m"])
def test_invisible_only_text_is_refused_on_both_apis(server, junk):
    speech = httpx.post(f"{server.url}/v1/audio/speech", json={"model": "tts-1", "voice": "default", "input": junk},
                        timeout=60)
    assert speech.status_code == 400
    assert speech.json()["error"]["param"] == "input" and "nothing to speak" in speech.json()["error"]["message"]
    job = httpx.post(f"{server.url}/runsync", json={"input": {"transcript": junk}}, timeout=60).json()
    assert job["status"] == "FAILED" and "transcript" in job["error"] and "nothing to speak" in job["error"]


def test_hidden_characters_do_not_reach_the_model(server):
    """The same text with and without zero-width and control characters gives the same audio (same seed)."""
    body = {"model": "tts-1", "voice": "default", "response_format": "pcm", "seed": 9, "max_new_tokens": 20,
            "temperature": 1.0}
    plain = httpx.post(f"{server.url}/v1/audio/speech", json={**body, "input": "Hidden words."}, timeout=120)
    hidden = httpx.post(f"{server.url}/v1/audio/speech", json={**body, "input": "Hid\u200bden\x00 wo\u00adrds.\ufeff"},
                        timeout=120)
    assert plain.status_code == hidden.status_code == 200
    assert plain.content == hidden.content and len(plain.content) > 0


def post_json(server, path: str, body: dict) -> httpx.Response:
    """``body`` as JSON with every non-ASCII character escaped: how a client sends a lone surrogate (``"\\ud800"``),
    which no UTF-8 encoder would write."""
    return httpx.post(f"{server.url}{path}", content=json.dumps(body).encode("ascii"),
                      headers={"content-type": "application/json"}, timeout=120)


REF_AUDIO = base64.b64encode(encoded("wav", 1.0)).decode("ascii")
OPENAI = {"model": "tts-1", "voice": "default", "max_new_tokens": 20}


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/audio/speech", {**OPENAI, "input": "hi \ud800 there"}, "input"),
    ("/v1/audio/speech", {**OPENAI, "input": "hi", "instructions": "a room\udfff"}, "instructions"),
    ("/v1/audio/speech", {**OPENAI, "input": "hi", "ref_audio": REF_AUDIO, "ref_text": "\ud800"}, "ref_text"),
    ("/v1/audio/speech", {**OPENAI, "input": "hi", "voice": {"\ud800": "x"}}, "voice"),
    ("/v1/audio/speech/captioned", {**OPENAI, "input": "\udc00"}, "input"),
    ("/v1/audio/speech", {**OPENAI, "input": "hi", "extra\ud800": 1}, "body"),  # no field to name: not echoed
])
def test_a_lone_surrogate_is_a_400_naming_the_field_on_the_openai_routes(server, path, body, field):
    r = post_json(server, path, body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == field and "lone UTF-16 surrogate" in error["message"]


@pytest.mark.parametrize(("job", "field"), [({"transcript": "hi \ud800"}, "transcript"),
                                            ({"transcript": "hi", "ref_audio": REF_AUDIO, "ref_text": "a\ud800"},
                                             "ref_text"),
                                            ({"transcript": "hi", "scene_prompt": "\udfff"}, "scene_prompt"),
                                            ({"transcript": "hi", "s3_key": "a\ud800.wav"}, "s3_key")])
def test_a_lone_surrogate_fails_a_job_at_once_naming_the_field(server, job, field):
    for path in ("/runsync", "/run"):
        r = post_json(server, path, {"input": {**job, "max_new_tokens": 20}})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["status"] == "FAILED" and out["error"].startswith(f"{field}: ") and "surrogate" in out["error"]


def test_a_key_without_any_bucket_fails_the_job_even_when_the_audio_fits_inline(server):
    out = post_json(server, "/runsync", {"input": {"transcript": "Small.", "s3_key": "mine/x.wav",
                                                   "max_new_tokens": 20}}).json()
    assert out["status"] == "FAILED" and out["error"] == "s3_key: needs `s3_bucket` (or S3_BUCKET configured)"


def test_ref_text_is_bounded_and_refused_when_empty_on_both_apis(server):
    long = "x" * (REF_TEXT_LIMIT + 1)
    for ref_text, needle in [(long, f"the limit is {REF_TEXT_LIMIT} (MAX_REF_TEXT_CHARS)"),
                             ("\x00\u202e\u3164\u2800\U000e0041", "nothing to say")]:
        speech = post_json(server, "/v1/audio/speech", {**OPENAI, "input": "hi", "ref_audio": REF_AUDIO,
                                                        "ref_text": ref_text})
        assert speech.status_code == 400 and speech.json()["error"]["param"] == "ref_text"
        assert needle in speech.json()["error"]["message"]
        job = post_json(server, "/runsync", {"input": {"transcript": "hi", "ref_audio": REF_AUDIO,
                                                       "ref_text": ref_text, "max_new_tokens": 20}}).json()
        assert job["status"] == "FAILED" and job["error"].startswith("ref_text: ") and needle in job["error"]


def test_hidden_characters_in_ref_text_do_not_reach_the_model(server):
    """A cloned voice with its transcript plain, and with NUL, bidi overrides, zero-width characters and a terminal
    escape hidden in it: the same audio (same seed), on the OpenAI route and as a job."""
    body = {**OPENAI, "input": "Same words.", "response_format": "wav", "seed": 5, "temperature": 1.0,
            "ref_audio": REF_AUDIO}
    plain = post_json(server, "/v1/audio/speech", {**body, "ref_text": "The reference says this."})
    hidden = post_json(server, "/v1/audio/speech",
                       {**body, "ref_text": "The \x1b[31mref\u200berence\x00 says \u202ethis.\u2066"})
    assert plain.status_code == hidden.status_code == 200
    assert plain.content == hidden.content and len(plain.content) > 44
    job = {"transcript": "Same words.", "seed": 5, "temperature": 1.0, "max_new_tokens": 20, "ref_audio": REF_AUDIO}
    jobs = [post_json(server, "/runsync", {"input": {**job, "ref_text": ref_text}}).json()
            for ref_text in ("The reference says this.", "\u2800The refer\u00adence says\x07 this.\x1b[0m")]
    assert [j["status"] for j in jobs] == ["COMPLETED", "COMPLETED"]
    assert jobs[0]["output"]["audio_base64"] == jobs[1]["output"]["audio_base64"]


def upload(server, name: str, transcript: str) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/audio/voices", files={"audio": ("voice.wav", encoded("wav", 1.0))},
                      data={"name": name, "transcript": transcript}, timeout=60)


def test_an_uploaded_voice_transcript_is_cleaned_and_bounded(server):
    r = upload(server, "hygiene_clean", "Hel\x00lo \u202eworld\x1b[31m in red\x1b[0m\u200b.")
    assert r.status_code == 201 and r.json()["transcript"] == "Hello world in red."
    listed = {v["name"]: v for v in httpx.get(f"{server.url}/v1/audio/voices", timeout=30).json()["data"]}
    assert listed["hygiene_clean"]["transcript"] == "Hello world in red."
    for name, transcript, needle in [("hygiene_blank", "\u3164\u2800\U000e0041\x1b[0m", "nothing to say"),
                                     ("hygiene_long", "y" * (REF_TEXT_LIMIT + 1), "(MAX_REF_TEXT_CHARS)")]:
        r = upload(server, name, transcript)
        assert r.status_code == 400 and r.json()["error"]["param"] == "transcript"
        assert needle in r.json()["error"]["message"]
    names = {v["name"] for v in httpx.get(f"{server.url}/v1/audio/voices", timeout=30).json()["data"]}
    assert "hygiene_blank" not in names and "hygiene_long" not in names


def test_an_upload_may_not_imitate_a_voice_by_case(server):
    assert upload(server, "Hygiene_Alto", "The original.").status_code == 201
    r = upload(server, "hygiene_alto", "An imitation.")
    assert r.status_code == 409 and r.json()["error"]["param"] == "name"
    assert "'hygiene_alto'" in r.json()["error"]["message"] and "'Hygiene_Alto'" in r.json()["error"]["message"]
    names = [v["name"] for v in httpx.get(f"{server.url}/v1/audio/voices", timeout=30).json()["data"]]
    assert names.count("Hygiene_Alto") == 1 and "hygiene_alto" not in names
