"""Errors that say what to do: a JSON body sent as another type, base64 that is not audio, a voice name in the wrong
case or misspelled, and a 503 while the model is still downloading (with the download's progress).

In-process (``TestClient``) with the model never loaded: every refusal here comes before any generation. The same
503 against a real server fetching from a slow hub is in ``tests/weights/test_fetch.py``.
"""

from __future__ import annotations

import base64
import json

import pytest
from fastapi.testclient import TestClient

from fixture_voices import write_voices
from higgs_worker.core.settings import get_settings
from higgs_worker.http import create_app
from higgs_worker.weights import progress

SPEECH = {"model": "tts-1", "input": "Hello there.", "voice": "alto"}
JOB = {"input": {"transcript": "Hello there.", "ref_audio": "alto"}}
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(40)


@pytest.fixture()
def client(env, tmp_path):
    """The app on a voice folder of ``alto``, ``tenor`` and ``broom_salesman``; the model is never loaded."""
    voices = write_voices(tmp_path / "voices", ["alto", "tenor"])
    for ext in (".wav", ".txt"):
        (voices / f"broom_salesman{ext}").write_bytes((voices / f"tenor{ext}").read_bytes())
    env(VOICES_DIR=str(voices), PRELOAD_MODELS="false")
    with TestClient(create_app(get_settings())) as c:
        yield c


def error(response) -> dict:
    return response.json()["error"]


# -- 1: a JSON route sent a body of another type -----------------------------------------------------------------

@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None],
                         ids=["text-plain", "form", "none"])
@pytest.mark.parametrize(("path", "body"), [("/v1/audio/speech", SPEECH), ("/v1/audio/speech/captioned", SPEECH),
                                            ("/run", JOB), ("/runsync", JOB)])
def test_a_json_route_refuses_another_content_type_saying_which_to_send(client, path, body, content_type):
    """Good JSON sent as ``text/plain`` (or form data, or no type: curl's ``-d`` default is the form type) is refused
    alike on every JSON route, naming the header to send and the type that came."""
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post(path, content=json.dumps(body).encode(), headers=headers)
    assert response.status_code == 415, response.text
    err = error(response)
    assert err["type"] == "invalid_request_error" and err["param"] == "body"
    assert err["message"].startswith("body: must be JSON sent with the header `Content-Type: application/json`")
    assert (repr(content_type) if content_type else "is missing") in err["message"]


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/merge-patch+json"])
def test_json_types_are_read_as_json(client, content_type):
    """Any JSON type is read: the body's own mistakes are what the answer names."""
    response = client.post("/v1/audio/speech", content=b'{"model": "tts-1", "input": "Hi."}',
                           headers={"Content-Type": content_type})
    assert response.status_code == 400 and error(response)["message"] == "voice: Field required"


# -- 2: base64 that is not audio, and a word that is neither a voice nor base64 ------------------------------------

@pytest.mark.parametrize(("data", "looks_like"), [
    (b"hello world", "text"), (b"hello world!", "text"), (PNG, "a PNG image"),
    (b"<!DOCTYPE html><html><body>Not found</body></html>", "HTML"), (b'{"voice": "alto"}', "JSON"),
], ids=["text", "text-name-shaped", "png", "html", "json"])
def test_base64_that_is_not_audio_says_what_it_decodes_to(client, data, looks_like):
    """``aGVsbG8gd29ybGQh`` (base64 of "hello world!") has a voice name's shape: it is refused as what it decodes
    to, not as an unknown voice."""
    encoded = base64.b64encode(data).decode()
    response = client.post("/v1/audio/speech", json={**SPEECH, "voice": "default", "ref_audio": encoded,
                                                     "ref_text": "Hello."})
    assert response.status_code == 400, response.text
    message = error(response)["message"]
    assert message.startswith(f"ref_audio: could not be decoded as audio: it decodes to {len(data)} bytes that are "
                              f"not audio in any known format (they look like {looks_like})")
    assert "unknown voice" not in message and "Traceback" not in message


def test_a_plain_word_is_an_unknown_voice_naming_those_available(client):
    for word in ("nobody", "not a voice!"):
        response = client.post("/v1/audio/speech", json={**SPEECH, "voice": "default", "ref_audio": word,
                                                         "ref_text": "Hello."})
        assert response.status_code == 400
        assert error(response)["message"].startswith(f"ref_audio: unknown voice {word!r}; available: alto, "
                                                     "broom_salesman, tenor")


# -- 3: a voice name in the wrong case or misspelled -------------------------------------------------------------

@pytest.mark.parametrize(("name", "meant"), [("Alto", "alto"), ("BROOM_SALESMAN", "broom_salesman"),
                                             ("atlo", "alto"), ("broom-salesman", "broom_salesman")])
def test_a_near_miss_is_refused_with_the_voice_it_was_meant_as(client, name, meant):
    """Names are case-sensitive (file names on disk): ``Alto`` is refused, suggesting ``alto``, on the OpenAI route,
    in a RunPod job, and by the voice routes alike."""
    speech = client.post("/v1/audio/speech", json={**SPEECH, "voice": name})
    assert speech.status_code == 400
    message = error(speech)["message"]
    assert message.startswith(f"voice: unknown voice {name!r}; did you mean {meant!r}? (")
    assert "available: alto, broom_salesman, tenor" in message
    assert ("case-sensitive" in message) == (name.casefold() == meant)
    job = client.post("/runsync", json={"input": {"transcript": "Hello there.", "ref_audio": name}}).json()
    assert job["status"] == "FAILED" and f"unknown voice {name!r}; did you mean {meant!r}?" in job["error"], job
    for answer in (client.get(f"/v1/audio/voices/{name}/audio"), client.delete(f"/v1/audio/voices/{name}")):
        assert answer.status_code == 404
        assert error(answer)["message"].startswith(f"no voice {name!r}; did you mean {meant!r}?")
    assert client.get(f"/v1/audio/voices/{meant}/audio").status_code == 200  # the suggestion is right


# -- 4: 503 while the model is downloading -----------------------------------------------------------------------

def test_503_while_downloading_names_the_download_and_its_progress(client):
    """While the weights are fetched, speech (whole or streamed) is refused with the download's repo, files, bytes,
    percent, rate and time left; once the fetch is over (the model still loading) it says it is loading."""
    client.app.state.service.holder.loading = True
    now = [100.0]
    fetch = progress.DownloadProgress("org/big-model", files=4, total_bytes=10_000_000, done_bytes=1_000_000,
                                      files_done=1, terminal=False, clock=lambda: now[0])
    with progress.shown(fetch):
        fetch.start_file("model.safetensors", 9_000_000)
        now[0] += 2.0
        fetch.advance(3_000_000)  # 1.5 MB/s; 4 MB of 10 MB; 6 MB left: 4 s
        answers = [client.post("/v1/audio/speech", json={**SPEECH, **extra}) for extra in ({}, {"stream_format": "sse"})]
    for answer in answers:
        assert answer.status_code == 503 and answer.headers["retry-after"] == "5", answer.text
        err = error(answer)
        assert err["type"] == "server_error"
        assert err["message"] == ("the model is still downloading (org/big-model: 1 of 4 files, 4.0 MB of 10.0 MB "
                                  "(40%), 1.5 MB/s, 4 s left); retry when it is done (GET /health shows the "
                                  "progress)")
    loading = client.post("/v1/audio/speech", json=SPEECH)
    assert loading.status_code == 503 and loading.headers["retry-after"] == "5"
    assert error(loading)["type"] == "server_error"
    assert error(loading)["message"].startswith("the model is still loading; retry shortly")
